#!/usr/bin/env bash
# GPU numbers for the trainers (issues 4 and 23) on a lent device machine, which has PyTorch's CUDA
# libtorch but no Rust toolchain, no OpenSlide and no ../shared. Two halves:
#
#   benches/device_tables.sh stage
#       here: builds the release binary and the train_steps bench, strips them, and puts them
#       with libopenslide and MoNuSeg (masks and instance maps) into .device-stage/
#       (git-ignored, ~59 MiB: the device tool carries 64 MiB). The images travel as
#       lossless WebP (41 MB instead of 67 MB of TIFF) with an MD5 of each image's pixels.
#   benches/device_tables.sh run BUDGET_S STEP...
#       on the device machine (carry .device-stage): decodes the images back (Pillow), checks
#       every MD5, then runs the STEPs within BUDGET_S seconds and leaves everything it trained
#       in $OUT/results.tar.gz. STEPs:
#         bench        doctor + `train_steps 200` (steps/s, phase breakdown, layout)
#         solo         one contrastive run alone on the GPU (seed 0, 300 epochs): steps/s with
#                      validation, time to best epoch
#         contrastive  the 10-seed × 300-epoch table, 5 jobs of 2 seeds sharing the GPU
#         hematoxylin  the same for --method hematoxylin
#         self-training  the default method (issue 23: ≤ 60 s a seed on the H100), seeds 0-2
#                      one after another, each timed, then scored by `eval` on the GPU
#       A step cut off by the budget stops cleanly at an epoch boundary. To go on, copy the
#       last results.tar.gz to .device-stage/ and run the same steps again: finished seeds
#       are kept, unfinished ones resume.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=$repo/.device-stage

stage_files() {
    set -e
    local monuseg=${MONUSEG:-$repo/../shared/data/monuseg-train}
    local target=${CARGO_TARGET_DIR:-$repo/target}/release # cargo builds there when set
    cd "$repo"
    cargo build --release --bin slidestream --bench train_steps
    mkdir -p "$stage/bin" "$stage/lib" "$stage/monuseg/webp"
    cp "$target/slidestream" "$stage/bin/"
    cp "$(ls -t "$target"/deps/train_steps-* | grep -v '\.d$' | head -1)" "$stage/bin/train_steps"
    strip "$stage"/bin/*
    cp -L .deps/openslide/lib/libopenslide.so.1 "$stage/lib/"
    cp -r "$monuseg/masks" "$monuseg/instances" "$stage/monuseg/"
    : >"$stage/monuseg/md5.txt"
    local image stem raw
    raw=$(mktemp --suffix .raw)
    for image in "$monuseg"/images/*.tif; do
        stem=$(basename "$image" .tif)
        vips copy "$image" "$stage/monuseg/webp/$stem.webp[lossless,effort=6]"
        vips rawsave "$image" "$raw"
        echo "$(md5sum <"$raw" | cut -d' ' -f1) $stem" >>"$stage/monuseg/md5.txt"
    done
    rm -f "$raw"
    du -sh "$stage"
}

# Decodes the staged WebP images to PNG under $1 and checks each one's pixels.
unpack_monuseg() {
    python3 - "$stage/monuseg" "$1" <<'PY'
import hashlib, os, shutil, sys
import numpy as np
from PIL import Image
src, dst = sys.argv[1:]
os.makedirs(f"{dst}/images", exist_ok=True)
for labels in ("masks", "instances"):
    shutil.copytree(f"{src}/{labels}", f"{dst}/{labels}", dirs_exist_ok=True)
for line in open(f"{src}/md5.txt"):
    md5, stem = line.split()
    pixels = np.asarray(Image.open(f"{src}/webp/{stem}.webp").convert("RGB"))
    if hashlib.md5(pixels.tobytes()).hexdigest() != md5:
        sys.exit(f"{stem}: decoded pixels differ from the original image")
    Image.fromarray(pixels).save(f"{dst}/images/{stem}.png", compress_level=1)
print(f"{dst}: images decoded, pixels identical to the originals")
PY
}

run_steps() {
    local budget=$1 t0=$SECONDS
    shift
    local torch_lib
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH=$stage/lib:$torch_lib
    local ss=$stage/bin/slidestream data=/tmp/monuseg-train runs=/tmp/runs
    left() { echo $((budget - (SECONDS - t0))); }
    save() { tar czf "$OUT/results.tar.gz" -C / "${runs#/}"; }
    mkdir -p $runs
    if [ -f "$stage/results.tar.gz" ]; then tar xzf "$stage/results.tar.gz" -C /; fi
    unpack_monuseg $data || exit 1
    # Ten seeds of $1 as 5 jobs of 2 (one GPU shared), then the table of all ten.
    table() {
        local method=$1 first
        for first in 0 2 4 6 8; do
            OMP_NUM_THREADS=3 timeout -s INT $(($(left) - 40)) $ss -q train --data $data \
                --mpp 0.25 --method "$method" --device cuda --seed $first --seeds 2 --resume \
                --out $runs/$method >$runs/$method-$first.log 2>&1 &
        done
        wait
        # Trains nothing when all ten are finished; otherwise stops at once.
        timeout 30 $ss -q train --data $data --mpp 0.25 --method "$method" --device cuda --seeds 10 \
            --resume --out $runs/$method 2>&1 | tail -15
    }
    for step in "$@"; do
        # Each step stops itself 20–40 s before the budget ends; under a minute it cannot run.
        if [ "$(left)" -lt 60 ]; then
            echo "$step: skipped, under 60 s of the budget left" >&2
            continue
        fi
        case $step in
        bench)
            nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
            $ss doctor
            "$stage/bin/train_steps" 200
            ;;
        solo)
            timeout -s INT $(($(left) - 20)) $ss train --data $data --mpp 0.25 --device cuda --seed 0 \
                --resume --out $runs/solo-contrastive 2>&1 | tail -3
            ;;
        contrastive | hematoxylin) table "$step" ;;
        self-training)
            local seed start
            for seed in 0 1 2; do
                start=$SECONDS
                timeout -s INT $(($(left) - 20)) $ss -q train --data $data --mpp 0.25 \
                    --device cuda --seed $seed --resume --out $runs/st-$seed 2>&1 | tail -2
                echo "self-training seed $seed: $((SECONDS - start)) s wall, validation included"
                # The means: pixel scores, then the objects of the 13 instance maps.
                $ss -q eval --model $runs/st-$seed --data $data --mpp 0.25 --device cuda 2>&1 |
                    sed -n '2,4p;7,9p'
            done
            ;;
        *) echo "unknown step $step (bench, solo, contrastive, hematoxylin, self-training)" >&2 ;;
        esac
        save
    done
    echo "done after $((SECONDS - t0)) s"
}

case ${1:-} in
stage) stage_files ;;
run) shift && run_steps "$@" ;;
*)
    sed -n '2,23p' "$0"
    exit 2
    ;;
esac
