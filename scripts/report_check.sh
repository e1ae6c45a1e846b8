#!/usr/bin/env bash
# The cohort report page as a person sees it (issue 29; too slow for the test suite, about
# a minute on 2 cores). Runs `cohort` on 50 synthetic slides of which 5 are corrupt (one
# named `<img src=x onerror=alert(1)>.svs`), then checks report.html: under 2 MB, nothing
# fetched from the network, all 50 slides listed with the failures first, the hostile name
# shown as text. With Debian's `chromium` installed it also takes a headless screenshot of
# the page, opened offline from disk, to look at. docs/usage.md records the last run.
#
# Usage: scripts/report_check.sh [WORK_DIR]   (default: a new temporary folder, kept)
#        MODEL=RUN_DIR scripts/report_check.sh   segments with a trained model instead of
#                                                the threshold baseline
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$repo/target/release/slidestream
[ -x "$bin" ] || (cd "$repo" && cargo build --release)
work=${1:-$(mktemp -d)}
slides=$work/slides out=$work/out
mkdir -p "$slides" "$work/truth"

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

echo "45 synthetic slides and 5 corrupt ones in $slides"
for i in $(seq -w 1 45); do
    "$bin" -q synth --width 1200 --height 800 --tile 256 --seed "$i" \
        --out "$slides/slide$i.tif" --mask "$work/truth/slide$i.mask.tif"
done
printf 'not a slide' > "$slides/<img src=x onerror=alert(1)>.svs"
: > "$slides/empty.svs"
head -c 4096 /dev/urandom > "$slides/noise.ndpi"
head -c "$(($(stat -c %s "$slides/slide01.tif") / 2))" "$slides/slide01.tif" > "$slides/truncated.tif"
printf 'II*\0garbage' > "$slides/bad-header.tif"

model=(--baseline threshold)
[ -n "${MODEL:-}" ] && model=(--model "$MODEL")
rc=0
"$bin" -q cohort "$slides" "${model[@]}" --out-dir "$out" > "$work/cohort.txt" \
    2> "$work/cohort.log" || rc=$?
[ "$rc" = 3 ] || fail "cohort exited $rc, expected 3 (some slides failed; see $work/cohort.log)"

page=$out/report.html
size=$(stat -c %s "$page")
# The rows' statuses in page order, one letter each: f(ailed), d(one), …
order=$(sed -n 's/^<tr class="\(.\).*/\1/p' "$page" | tr -d '\n')
[ "$size" -lt $((2 * 1024 * 1024)) ] || fail "report.html is $size bytes (limit 2 MB)"
[ "${#order}" = 50 ] || fail "report.html lists ${#order} slides, not 50"
[ "$order" = "fffff$(printf 'd%.0s' $(seq 45))" ] || fail "not the 5 failed slides first: $order"
grep -qF '&lt;img src=x onerror=alert(1)&gt;' "$page" || fail "the hostile name is missing"
! grep -qF '<img src=x' "$page" || fail "the hostile name is markup in the page"
! grep -qE 'https?://' "$page" || fail "the page refers to the network"
echo "report.html: $size bytes, ${#order} slides, the 5 failed ones first, hostile name escaped"

if command -v chromium > /dev/null; then
    profile=$(mktemp -d)
    # Offline: no network features, and the page is a file.
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --screenshot="$work/report.png" --window-size=1400,1000 \
        "file://$page" > "$work/chromium.log" 2>&1
    rm -rf "$profile"
    [ -s "$work/report.png" ] || fail "chromium wrote no screenshot (see $work/chromium.log)"
    echo "screenshot: $work/report.png (look at it)"
else
    echo "chromium is not installed (apt-get install chromium): no screenshot"
fi
echo "page: $page"
