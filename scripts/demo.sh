#!/usr/bin/env bash
# Sets up (idempotent, see setup.sh), builds, and runs the demo end to end with embedded
# defaults: a synthetic H&E slide and the real CMU-1-Small-Region.svs go through
# `info` and `tissue`, a short label-free training run streams tissue crops from both,
# and `segment` writes the nuclei masks of both slides (with summary, QC overlay and
# GeoJSON). Outputs land in ./out/demo (override with DEMO_OUT=...).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/setup.sh"
setup_all
cd "$repo"
cargo build --release --bin slidestream
bin="${CARGO_TARGET_DIR:-$repo/target}/release/slidestream" # cargo builds there when set
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

step "train (short): label-free self-training on tissue crops of both slides"
rm -rf "$out/run"
"$bin" train --data "$out/synthetic.tif" "$real" --epochs 20 --epoch-crops 30 --device auto \
    --out "$out/run"

step "segment the real slide with the model (pyramidal TIFF mask, overlay, GeoJSON)"
"$bin" segment "$real" --model "$out/run" --geojson --out "$out/cmu.nuclei.tif"

step "segment the synthetic slide with the threshold baseline (no model, seconds)"
"$bin" segment "$out/synthetic.tif" --baseline threshold --out "$out/synthetic.nuclei.tif"

step "done: outputs in $out"
ls -l "$out"
printf '\nmask:    %s\noverlay: %s\nsummary: %s\n' "$out/cmu.nuclei.tif" \
    "$out/cmu.nuclei.overlay.png" "$out/cmu.nuclei.json"
