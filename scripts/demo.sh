#!/usr/bin/env bash
# Sets up (idempotent, see setup.sh), builds, and runs the demo end to end with embedded
# defaults: a synthetic H&E slide and the real CMU-1-Small-Region.svs go through
# `info` and `tissue`, then a short label-free training run streams tissue crops from
# both. Outputs land in ./out/demo (override with DEMO_OUT=...).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/setup.sh"
setup_all
cd "$repo"
cargo build --release --bin slidestream
bin="$repo/target/release/slidestream"
out=${DEMO_OUT:-$repo/out/demo}
mkdir -p "$out"

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

step "doctor"
"$bin" doctor

step "synthesise a 6144x4096 H&E-like slide with known nuclei"
"$bin" synth --out "$out/synthetic.tif" --width 6144 --height 4096 --seed 7

real=$(sample_slide)
for slide in "$out/synthetic.tif" "$real"; do
    name=$(basename "$slide"); name=${name%.*}
    step "info $name"
    "$bin" info "$slide"
    step "tissue $name"
    "$bin" tissue "$slide" --out "$out/$name.tissue.png"
done

step "train (short): label-free contrastive learning on tissue crops of both slides"
rm -rf "$out/run"
"$bin" train --data "$out/synthetic.tif" "$real" --epochs 3 --epoch-crops 20 --device auto \
    --out "$out/run"

step "done: outputs in $out (model in $out/run)"
ls -l "$out"
