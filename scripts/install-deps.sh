#!/usr/bin/env bash
# Installs dssync's build/test dependencies on Debian 12 (bookworm).
# Idempotent: only packages that are not installed are fetched; apt-get update
# runs only when something is missing. Must run as root (or with passwordless
# sudo). Never reads stdin.
set -euo pipefail
exec </dev/null

PACKAGES=(
  build-essential
  cmake
  g++
  clang-14
  libclang-rt-14-dev
  libboost-dev
  libboost-graph-dev
  libboost-mpi-dev
  libboost-program-options-dev
  libeigen3-dev
  doctest-dev
  libopenmpi-dev
  openmpi-bin
  libthrust-dev
  nlohmann-json3-dev
  zlib1g-dev
  dataset-fashion-mnist
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: dpkg-query not found; this script supports Debian/Ubuntu only" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "install-deps: missing packages (${missing[*]}) and not running as root" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t dssync-install-deps.XXXXXX.log)"
trap 'rm -f "$log"' EXIT

run_logged() {
  if ! "$@" >>"$log" 2>&1; then
    echo "install-deps: command failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

run_logged "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
run_logged "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}"

echo "install-deps: installed ${#missing[@]} missing package(s): ${missing[*]}"
