#!/usr/bin/env bash
# Builds and runs the quickstart example (8 in-process workers).
#   DSSYNC_SKIP_DEPS=1         do not run scripts/install-deps.sh
#   DSSYNC_BUILD_ROOT=<dir>    where build/ is created (default: repository root)
set -euo pipefail
exec </dev/null

cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${DSSYNC_BUILD_ROOT:-$ROOT}/build"

if [[ "${DSSYNC_SKIP_DEPS:-0}" != 1 ]]; then
  bash "$ROOT/scripts/install-deps.sh"
fi

echo "== configuring $BUILD (Release)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DDSSYNC_BUILD_TESTS=OFF -DDSSYNC_BUILD_BENCH=OFF -DDSSYNC_BUILD_EXAMPLES=ON >/dev/null

echo "== building quickstart"
cmake --build "$BUILD" --target quickstart --parallel "${DSSYNC_JOBS:-2}"

echo "== running quickstart"
exec "$BUILD/examples/quickstart"
