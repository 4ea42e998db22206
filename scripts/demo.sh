#!/usr/bin/env bash
# The main demo: Fashion-MNIST training by 16 in-process workers on a simulated racks:4,4 cluster, BSP
# ring and hierarchical vs gossip vs DS-Sync, under no contention, a contended rack uplink and a capped
# NIC (examples/train_fmnist.cpp). Writes the table, a CSV, an SVG plot and a Chrome trace to
# demo-output/. A few minutes on 2 cores.
#   DSSYNC_SKIP_DEPS=1         do not run scripts/install-deps.sh
#   DSSYNC_BUILD_ROOT=<dir>    where build-demo/ is created (default: repository root)
#   DSSYNC_DEMO_ARGS="..."     arguments for train_fmnist instead of the defaults (e.g. "--model mlp")
#   DSSYNC_DEMO=quickstart     run the small quickstart example instead
set -euo pipefail
exec </dev/null

cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${DSSYNC_BUILD_ROOT:-$ROOT}/build-demo"  # its own tree: scripts/test.sh's build/ keeps its tests
OUT="$ROOT/demo-output"

if [[ "${DSSYNC_SKIP_DEPS:-0}" != 1 ]]; then
  bash "$ROOT/scripts/install-deps.sh"
fi

echo "== configuring $BUILD (Release)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DDSSYNC_BUILD_TESTS=OFF -DDSSYNC_BUILD_BENCH=OFF -DDSSYNC_BUILD_EXAMPLES=ON >/dev/null

if [[ "${DSSYNC_DEMO:-}" == quickstart ]]; then
  echo "== building quickstart"
  cmake --build "$BUILD" --target quickstart --parallel "${DSSYNC_JOBS:-2}"
  echo "== running quickstart"
  exec "$BUILD/examples/quickstart"
fi

echo "== building train_fmnist"
cmake --build "$BUILD" --target train_fmnist --parallel "${DSSYNC_JOBS:-2}"
mkdir -p "$OUT"
echo "== running train_fmnist (progress on stderr)"
# shellcheck disable=SC2086
"$BUILD/examples/train_fmnist" --csv "$OUT/train_fmnist.csv" --svg "$OUT/train_fmnist.svg" \
  --trace "$OUT/train_fmnist.trace.json" ${DSSYNC_DEMO_ARGS:-} | tee "$OUT/train_fmnist.txt"
echo
echo "== the plot (accuracy against simulated time): $OUT/train_fmnist.svg"
echo "   table: $OUT/train_fmnist.txt, data: $OUT/train_fmnist.csv,"
echo "   timeline before/after DS-Sync's first group adjustment: $OUT/train_fmnist.trace.json (chrome://tracing)"
