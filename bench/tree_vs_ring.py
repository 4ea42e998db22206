#!/usr/bin/env python3
"""Trees against rings in the simulator, on every NVLink-connected GPU subset of a DGX-1 (issue 11).

For each subset it runs dssync-sim twice per collective, on the same simulated DGX-1 (NVLink and PCIe):
  broadcast from rank 0: `--policy tree --link-class nvlink` (trees packed on NVLink) against
                         `--policy chain` (the pipelined chain root, root+1, ...);
  allreduce:             `--policy tree --link-class nvlink` (reduce then broadcast on the trees) against
                         `--policy ring` (rank order; NCCL's NVLink ring search is not modelled).
It prints one row per subset (the simulated times and the speed-up, ring time / tree time), the
maximum and median per collective, and writes an SVG of the sorted speed-ups.

  python3 bench/tree_vs_ring.py [--sim build/tools/dssync-sim] [--bytes 64M] [--svg tree_vs_ring.svg]
"""
import argparse
import itertools
import json
import statistics
import subprocess
import sys

# DGX-1 (V100) NVLink lanes (ALGORITHMS.md): double links, then single links.
LANES = {(0, 3): 2, (0, 4): 2, (1, 2): 2, (1, 5): 2, (2, 3): 2, (4, 7): 2, (5, 6): 2, (6, 7): 2,
         (0, 1): 1, (0, 2): 1, (1, 3): 1, (2, 6): 1, (3, 7): 1, (4, 5): 1, (4, 6): 1, (5, 7): 1}


def nvlink_connected(gpus):
    seen, stack = {gpus[0]}, [gpus[0]]
    while stack:
        a = stack.pop()
        for b in gpus:
            if b not in seen and ((a, b) in LANES or (b, a) in LANES):
                seen.add(b)
                stack.append(b)
    return len(seen) == len(gpus)


def sim_time(sim, args):
    out = subprocess.run([sim] + args + ["--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("tree_vs_ring: dssync-sim " + " ".join(args) + " failed: " + out.stderr.strip())
    return json.loads(out.stdout)["time_s"]


def svg(path, series):
    w, h, pad = 640, 360, 50
    top = max(max(v) for v in series.values())
    colors = {"broadcast": "#1f77b4", "allreduce": "#d62728"}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" text-anchor="middle">trees / ring-chain speed-up on DGX-1 GPU subsets (simulated)</text>' % (w // 2)]
    def y(v):
        return h - pad - (h - 2 * pad) * v / top
    out.append('<line x1="%d" y1="%g" x2="%d" y2="%g" stroke="gray" stroke-dasharray="4"/>' % (pad, y(1), w - pad, y(1)))
    for t in range(0, int(top) + 1):
        out.append('<text x="%d" y="%g" text-anchor="end">%dx</text>' % (pad - 5, y(t) + 4, t))
    for i, (name, vals) in enumerate(series.items()):
        v = sorted(vals)
        pts = " ".join("%g,%g" % (pad + (w - 2 * pad) * k / max(len(v) - 1, 1), y(x)) for k, x in enumerate(v))
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (colors.get(name, "black"), pts))
        out.append('<text x="%d" y="%d" fill="%s">%s (max %.2fx, median %.2fx)</text>' % (
            pad + 10, pad + 15 * i, colors.get(name, "black"), name, max(v), statistics.median(v)))
    out.append('<text x="%d" y="%d" text-anchor="middle">subsets, sorted by speed-up</text>' % (w // 2, h - 15))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="build/tools/dssync-sim")
    ap.add_argument("--bytes", default="64M")
    ap.add_argument("--svg", default="")
    a = ap.parse_args()
    series = {"broadcast": [], "allreduce": []}
    print("%-22s %12s %12s %8s %12s %12s %8s" % ("subset", "chain(ms)", "tree(ms)", "bcast x", "ring(ms)", "tree(ms)", "allred x"))
    for k in range(2, 9):
        for g in itertools.combinations(range(8), k):
            if not nvlink_connected(list(g)):
                continue
            spec = "dgx1:" + ",".join(map(str, g))
            base = ["--topology", spec, "--bytes", a.bytes]
            chain = sim_time(a.sim, base + ["--policy", "chain", "--collective", "broadcast"])
            tb = sim_time(a.sim, base + ["--policy", "tree", "--collective", "broadcast", "--link-class", "nvlink"])
            ring = sim_time(a.sim, base + ["--policy", "ring"])
            ta = sim_time(a.sim, base + ["--policy", "tree", "--link-class", "nvlink"])
            series["broadcast"].append(chain / tb)
            series["allreduce"].append(ring / ta)
            print("%-22s %12.3f %12.3f %8.2f %12.3f %12.3f %8.2f" % (spec, chain * 1e3, tb * 1e3, chain / tb, ring * 1e3, ta * 1e3, ring / ta))
    for name, v in series.items():
        print("# %s: %d subsets, speed-up max %.2fx, median %.2fx, min %.2fx" % (name, len(v), max(v), statistics.median(v), min(v)))
    if a.svg:
        svg(a.svg, series)
        print("# plot written to " + a.svg)


if __name__ == "__main__":
    main()
