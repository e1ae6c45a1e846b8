#!/usr/bin/env bash
# Sets up (idempotent, see setup.sh) and runs the whole test suite. This is the README's
# test command and what CI runs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
# Release profile: the suite decodes and generates images, and the demo shares the build.
cargo test --release "$@"
# Benchmarks are not run here (they are long) but must keep compiling.
cargo bench --no-run --quiet
