//! Streaming 8-connected component labelling of a binary nuclei mask.
//!
//! A gigapixel slide's mask never fits in memory, so the tracker is fed rows top to
//! bottom (in bands of any height) and keeps only the previous row's foreground runs
//! plus the components that are still open. Each row is run-length encoded, its runs
//! are joined to the touching runs of the previous row with union-find, and a component
//! is finished as soon as none of its runs continue into the current row. Memory is
//! therefore proportional to the width plus the open components, never to the height.
//!
//! Connectivity is 8-neighbourhood, as `skimage.measure.label`'s default for 2-D.
//!
//! # Coordinates
//! Image coordinates, y down. Pixel `(x, y)` covers the square `[x, x+1] × [y, y+1]`;
//! bounding boxes, centroids and polygon vertices all live in that continuous frame,
//! so a polygon's edges run exactly along its pixels' outer edges and a centroid is
//! the mean of pixel *centres* (index + 0.5).
//!
//! # Pixels
//! When asked ([`TrackerOptions::pixels`]), a finished component comes with its pixels
//! ([`Pixels`]: its runs, sorted by row, plus the per-pixel values pushed with the rows
//! when [`TrackerOptions::values`] is set), so that it can be outlined, split into nuclei
//! and measured once it is complete. Pixels are only kept for components up to
//! `max_kept_area` pixels; larger ones (e.g. a broken model marking a whole slide as
//! foreground) drop theirs, which bounds the memory by the open components times that
//! area.
//!
//! # Polygons
//! [`exterior_ring`] traces the exterior boundary of one 8-connected set of runs along
//! pixel edges:
//! * closed ring (first vertex == last) of pixel-corner vertices, one per turn (no
//!   collinear vertices), starting at the top-left corner of the top-left pixel;
//! * orientation: the shoelace signed area computed on the raw `(x, y)` numbers is
//!   positive (= counter-clockwise when the numbers are read in a y-up plane, which is
//!   what RFC 7946 asks of exterior rings; on screen, with y down, it looks clockwise);
//! * diagonal contacts: where two pixels of the component touch only at a corner the
//!   ring passes through that corner and keeps both pixels inside (the boundary stays
//!   on the same background region), so one 8-connected component gives one ring that
//!   may touch itself at such corners, and its shoelace area equals its pixel count
//!   when it has no holes;
//! * holes are ignored: only the exterior ring is produced, so the ring's area is the
//!   component's area plus the area of its holes.

use serde::Serialize;

/// What the tracker collects besides counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerOptions {
    /// Hand each finished component's pixels over ([`Component::pixels`]).
    pub pixels: bool,
    /// With `pixels`, also keep the values pushed with the rows, pixel by pixel.
    pub values: bool,
    /// Components with more pixels than this keep no pixels.
    pub max_kept_area: u64,
    /// Components with fewer pixels than this are dropped (counted in `dropped_small`).
    pub min_area: u64,
}

/// Axis-aligned bounding box in pixel-corner coordinates, half-open: the component's
/// pixels have `x0 <= x < x1` and `y0 <= y < y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BBox {
    pub x0: u32,
    pub y0: u64,
    pub x1: u32,
    pub y1: u64,
}

/// A finished connected component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Number of pixels.
    pub area: u64,
    pub bbox: BBox,
    /// Mean of the pixel centres `(x + 0.5, y + 0.5)`.
    pub centroid: (f64, f64),
    /// Its pixels; `None` when pixels are off or it has more than `max_kept_area`.
    pub pixels: Option<Pixels>,
}

/// Values measured at each foreground pixel besides the mask, in raster order: the values
/// of rows hold one entry per nonzero mask pixel, so their memory follows the nuclei, not
/// the slide's width.
#[derive(Debug, Clone, Copy)]
pub struct RowValues<'a> {
    /// The model's nucleus score, quantised (see [`super::pixel_values`]).
    pub score: &'a [u8],
    /// Hematoxylin optical density, quantised (see [`super::pixel_values`]).
    pub hematoxylin: &'a [u16],
}

impl<'a> RowValues<'a> {
    /// The first `n` values, which no longer belong to `self`.
    fn take_front(&mut self, n: u32) -> Self {
        let n = n as usize;
        let (score, score_rest) = self.score.split_at(n);
        let (hematoxylin, hematoxylin_rest) = self.hematoxylin.split_at(n);
        self.score = score_rest;
        self.hematoxylin = hematoxylin_rest;
        RowValues { score, hematoxylin }
    }
}

/// A foreground run `[x0, x1)` of row `y`; its pixels' values start at `at` in the value
/// lists of the [`Pixels`] it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub y: u64,
    pub x0: u32,
    pub x1: u32,
    pub at: usize,
}

impl Run {
    pub fn len(&self) -> usize {
        (self.x1 - self.x0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.x1 == self.x0
    }
}

/// The pixels of an object as runs sorted by `(y, x0)`, with their values (empty when
/// values are off).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pixels {
    pub runs: Vec<Run>,
    pub score: Vec<u8>,
    pub hematoxylin: Vec<u16>,
}

impl Pixels {
    pub fn has_values(&self) -> bool {
        !self.score.is_empty()
    }
}

/// Totals over the whole mask.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComponentStats {
    /// Components with at least `min_area` pixels.
    pub count: u64,
    /// All foreground pixels, including those of dropped components.
    pub foreground_pixels: u64,
    /// Components smaller than `min_area`.
    pub dropped_small: u64,
    /// Counted components that came without pixels because they exceeded
    /// `max_kept_area` (always 0 when pixels are off): no outline, split or measurements.
    pub too_large: u64,
    /// Mean area of the counted components (0 when there are none).
    pub mean_area: f64,
}

/// A foreground run `[x0, x1)` within one row.
#[derive(Debug, Clone, Copy)]
struct Span {
    x0: u32,
    x1: u32,
}

/// Accumulators of a component that still has runs in the latest row.
#[derive(Debug)]
struct Open {
    area: u64,
    // Integer sums keep centroids exact however large the slide is.
    sum_x: u128,
    sum_y: u128,
    bbox: BBox,
    last_row: u64,
    /// `None` when pixels are off or the component outgrew `max_kept_area`.
    pixels: Option<Pixels>,
    closed: bool,
}

/// Streaming 8-connected component labeller; see the module docs.
#[derive(Debug)]
pub struct ComponentTracker {
    width: u32,
    options: TrackerOptions,
    /// Index of the next row to be pushed.
    row: u64,
    slots: Vec<Open>,
    /// Union-find parents, indexed like `slots`.
    parent: Vec<u32>,
    free: Vec<u32>,
    /// Slots merged away or closed during the current row. They may still be
    /// referenced by the previous row's labels, so they are recycled only once the
    /// row is done.
    released: Vec<u32>,
    prev_spans: Vec<Span>,
    prev_labels: Vec<u32>,
    cur_spans: Vec<Span>,
    cur_labels: Vec<u32>,
    stored_runs: usize,
    finished: Vec<Component>,
    stats: ComponentStats,
    counted_area: u128,
}

impl ComponentTracker {
    /// A tracker for rows of `width` pixels.
    ///
    /// # Panics
    /// If `width` is 0.
    pub fn new(width: u32, options: TrackerOptions) -> Self {
        assert!(width > 0, "mask width must be positive");
        Self {
            width,
            options,
            row: 0,
            slots: Vec::new(),
            parent: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            prev_spans: Vec::new(),
            prev_labels: Vec::new(),
            cur_spans: Vec::new(),
            cur_labels: Vec::new(),
            stored_runs: 0,
            finished: Vec::new(),
            stats: ComponentStats::default(),
            counted_area: 0,
        }
    }

    /// Feeds whole rows (row-major, `width` bytes each, nonzero = foreground), with the
    /// values of their foreground pixels when the tracker keeps values.
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of the width, or `values` is missing (or does not
    /// hold one entry per foreground pixel) while the tracker keeps values.
    pub fn push_rows(&mut self, rows: &[u8], values: Option<RowValues<'_>>) {
        let width = self.width as usize;
        assert!(
            rows.len() % width == 0,
            "{} bytes is not a whole number of {width}-pixel rows",
            rows.len()
        );
        let keeps_values = self.options.pixels && self.options.values;
        let values = values.filter(|_| keeps_values);
        if keeps_values {
            let v = values.expect("the tracker keeps values: push them with the rows");
            let foreground = rows.iter().filter(|&&m| m != 0).count();
            assert!(
                v.score.len() == foreground && v.hematoxylin.len() == foreground,
                "values do not cover the rows' {foreground} foreground pixels"
            );
        }
        // Runs take their values from the front, row after row, in raster order.
        let mut rest = values;
        for row in rows.chunks_exact(width) {
            self.push_row(row, &mut rest);
        }
    }

    /// Components finished so far (in the order they finished) that were not drained
    /// yet. Drain after each band: undrained components accumulate.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, Component> {
        self.finished.drain(..)
    }

    /// Components that still have runs in the latest row.
    pub fn open_components(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Runs held for open components (bounded by the number of open components times
    /// `max_kept_area`).
    pub fn stored_runs(&self) -> usize {
        self.stored_runs
    }

    /// Ends the mask: closes every open component and returns the totals together with
    /// every component not drained yet (including the ones closed here).
    pub fn finish(mut self) -> (ComponentStats, Vec<Component>) {
        let labels = std::mem::take(&mut self.prev_labels);
        for &label in &labels {
            if !self.slots[label as usize].closed {
                self.close(label);
            }
        }
        let mut stats = self.stats;
        if stats.count > 0 {
            stats.mean_area = self.counted_area as f64 / stats.count as f64;
        }
        (stats, self.finished)
    }

    /// Adds one row; its runs take their values off the front of `values`.
    fn push_row(&mut self, row: &[u8], values: &mut Option<RowValues<'_>>) {
        let y = self.row;
        self.row += 1;
        let mut spans = std::mem::take(&mut self.cur_spans);
        let mut labels = std::mem::take(&mut self.cur_labels);
        find_spans(row, &mut spans);
        labels.clear();

        // Both span lists are sorted, so one forward pointer over the previous row
        // finds every touching run. 8-connectivity: [a, b) touches [s, e) of the next
        // row when a <= e and b >= s.
        let mut first = 0;
        for &span in &spans {
            while first < self.prev_spans.len() && self.prev_spans[first].x1 < span.x0 {
                first += 1;
            }
            let mut label = None;
            let mut k = first;
            while k < self.prev_spans.len() && self.prev_spans[k].x0 <= span.x1 {
                let root = find(&mut self.parent, self.prev_labels[k]);
                label = Some(match label {
                    None => root,
                    Some(l) => self.union(l, root),
                });
                k += 1;
            }
            let label = label.unwrap_or_else(|| self.new_slot(y));
            let span_values = values.as_mut().map(|v| v.take_front(span.x1 - span.x0));
            self.add_span(label, y, span, span_values);
            labels.push(label);
        }
        // Later runs of this row may have merged the roots of earlier ones.
        for label in &mut labels {
            *label = find(&mut self.parent, *label);
        }

        // A previous-row component that no current run reached is complete. It was not
        // merged this row (only current runs merge), so its label is still its root.
        let prev_labels = std::mem::take(&mut self.prev_labels);
        for &label in &prev_labels {
            let root = find(&mut self.parent, label);
            let open = &self.slots[root as usize];
            if open.last_row < y && !open.closed {
                self.close(root);
            }
        }
        self.free.append(&mut self.released);

        self.prev_labels = labels;
        self.cur_labels = prev_labels;
        self.cur_spans = std::mem::replace(&mut self.prev_spans, spans);
    }

    fn new_slot(&mut self, y: u64) -> u32 {
        let open = Open {
            area: 0,
            sum_x: 0,
            sum_y: 0,
            bbox: BBox {
                x0: u32::MAX,
                y0: y,
                x1: 0,
                y1: y + 1,
            },
            last_row: y,
            pixels: self.options.pixels.then(Pixels::default),
            closed: false,
        };
        match self.free.pop() {
            Some(label) => {
                self.slots[label as usize] = open;
                self.parent[label as usize] = label;
                label
            }
            None => {
                let label =
                    u32::try_from(self.slots.len()).expect("fewer than 2^32 open components");
                self.slots.push(open);
                self.parent.push(label);
                label
            }
        }
    }

    /// Adds `span` of row `y` to component `label`, with the values of its pixels.
    fn add_span(&mut self, label: u32, y: u64, span: Span, values: Option<RowValues<'_>>) {
        let open = &mut self.slots[label as usize];
        let len = u64::from(span.x1 - span.x0);
        self.stats.foreground_pixels += len;
        open.area += len;
        // Sum of x0..x1-1; the product is always even.
        open.sum_x += (u128::from(span.x0) + u128::from(span.x1) - 1) * u128::from(len) / 2;
        open.sum_y += u128::from(y) * u128::from(len);
        open.bbox.x0 = open.bbox.x0.min(span.x0);
        open.bbox.x1 = open.bbox.x1.max(span.x1);
        open.bbox.y1 = y + 1;
        open.last_row = y;
        if open.area > self.options.max_kept_area {
            if let Some(pixels) = open.pixels.take() {
                self.stored_runs -= pixels.runs.len();
            }
        } else if let Some(pixels) = &mut open.pixels {
            pixels.runs.push(Run {
                y,
                x0: span.x0,
                x1: span.x1,
                at: pixels.score.len(),
            });
            if let Some(values) = values {
                pixels.score.extend_from_slice(values.score);
                pixels.hematoxylin.extend_from_slice(values.hematoxylin);
            }
            self.stored_runs += 1;
        }
    }

    /// Merges two roots and returns the surviving one.
    fn union(&mut self, a: u32, b: u32) -> u32 {
        if a == b {
            return a;
        }
        // Keep the larger one so the smaller run list is the one that gets copied.
        let (keep, gone) = if self.slots[a as usize].area >= self.slots[b as usize].area {
            (a, b)
        } else {
            (b, a)
        };
        let other = &mut self.slots[gone as usize];
        let (area, sum_x, sum_y, bbox, last_row) = (
            other.area,
            other.sum_x,
            other.sum_y,
            other.bbox,
            other.last_row,
        );
        let other_pixels = other.pixels.take();

        let open = &mut self.slots[keep as usize];
        open.area += area;
        open.sum_x += sum_x;
        open.sum_y += sum_y;
        open.bbox.x0 = open.bbox.x0.min(bbox.x0);
        open.bbox.y0 = open.bbox.y0.min(bbox.y0);
        open.bbox.x1 = open.bbox.x1.max(bbox.x1);
        open.bbox.y1 = open.bbox.y1.max(bbox.y1);
        open.last_row = open.last_row.max(last_row);
        match (&mut open.pixels, other_pixels) {
            (Some(pixels), Some(more)) if open.area <= self.options.max_kept_area => {
                // The appended values move behind this component's own.
                let shift = pixels.score.len();
                pixels.runs.extend(more.runs.iter().map(|r| Run {
                    at: r.at + shift,
                    ..*r
                }));
                pixels.score.extend_from_slice(&more.score);
                pixels.hematoxylin.extend_from_slice(&more.hematoxylin);
            }
            (pixels, more) => {
                let dropped =
                    pixels.take().map_or(0, |p| p.runs.len()) + more.map_or(0, |p| p.runs.len());
                self.stored_runs -= dropped;
            }
        }
        self.parent[gone as usize] = keep;
        self.released.push(gone);
        keep
    }

    /// Finishes a component: counts it and queues it (with its pixels) for draining.
    fn close(&mut self, label: u32) {
        let open = &mut self.slots[label as usize];
        open.closed = true;
        let pixels = open.pixels.take();
        let (area, bbox) = (open.area, open.bbox);
        let centroid = (
            open.sum_x as f64 / area as f64 + 0.5,
            open.sum_y as f64 / area as f64 + 0.5,
        );
        self.released.push(label);
        self.stored_runs -= pixels.as_ref().map_or(0, |p| p.runs.len());
        if area < self.options.min_area {
            self.stats.dropped_small += 1;
            return;
        }
        self.stats.count += 1;
        self.counted_area += u128::from(area);
        let pixels = pixels.map(|mut pixels| {
            // Merges append runs out of order; sorting nearly sorted input is cheap.
            pixels.runs.sort_unstable_by_key(|r| (r.y, r.x0));
            pixels
        });
        if self.options.pixels && pixels.is_none() {
            self.stats.too_large += 1;
        }
        self.finished.push(Component {
            area,
            bbox,
            centroid,
            pixels,
        });
    }
}

/// Union-find root with path halving.
fn find(parent: &mut [u32], mut label: u32) -> u32 {
    while parent[label as usize] != label {
        let grandparent = parent[parent[label as usize] as usize];
        parent[label as usize] = grandparent;
        label = grandparent;
    }
    label
}

/// Run-length encodes one row. Masks are mostly background, so zeros are skipped a
/// word (8 pixels) at a time, and so are long foreground stretches.
fn find_spans(row: &[u8], spans: &mut Vec<Span>) {
    spans.clear();
    let mut x = 0;
    while x < row.len() {
        x = next_foreground(row, x);
        if x == row.len() {
            break;
        }
        let start = x;
        x = next_background(row, x);
        // The width is a u32, so every position fits.
        spans.push(Span {
            x0: start as u32,
            x1: x as u32,
        });
    }
}

fn word(row: &[u8], x: usize) -> u64 {
    u64::from_le_bytes(row[x..x + 8].try_into().expect("8-byte slice"))
}

/// First index `>= x` holding a nonzero byte, or `row.len()`.
fn next_foreground(row: &[u8], mut x: usize) -> usize {
    while x + 8 <= row.len() {
        let w = word(row, x);
        if w != 0 {
            // Little-endian: the lowest set bit belongs to the first nonzero byte.
            return x + (w.trailing_zeros() / 8) as usize;
        }
        x += 8;
    }
    while x < row.len() && row[x] == 0 {
        x += 1;
    }
    x
}

/// First index `>= x` holding a zero byte, or `row.len()`.
fn next_background(row: &[u8], mut x: usize) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while x + 8 <= row.len() {
        let w = word(row, x);
        // Classic has-zero-byte test; its lowest set bit marks the first zero byte
        // exactly (borrows only propagate upwards from a zero byte).
        let zeros = w.wrapping_sub(LOW) & !w & HIGH;
        if zeros != 0 {
            return x + (zeros.trailing_zeros() / 8) as usize;
        }
        x += 8;
    }
    while x < row.len() && row[x] != 0 {
        x += 1;
    }
    x
}

/// A pixel-corner vertex `(x, y)`.
pub type Vertex = (u32, u64);

/// The exterior ring of one 8-connected set of runs sorted by `(y, x0)` (see the module
/// docs).
///
/// Crack following: walk along pixel edges with the component on the right-hand side
/// (y down, i.e. on screen), looking at the two pixels ahead at each corner: turn left if
/// the ahead-left one is foreground, go straight if only the ahead-right one is, turn
/// right otherwise. Trying left first is what joins diagonal neighbours (8-connectivity).
/// Clockwise on screen is counter-clockwise in the y-up reading, and only turns emit
/// vertices, so no collinear ones appear.
///
/// # Panics
/// If `runs` is empty.
pub fn exterior_ring(runs: &[Run]) -> Vec<Vertex> {
    debug_assert!(runs
        .windows(2)
        .all(|w| (w[0].y, w[0].x0) < (w[1].y, w[1].x0)));
    let y0 = runs[0].y;
    // `row_start[i]..row_start[i + 1]` are the runs of the `i`-th row.
    let mut row_start = Vec::with_capacity((runs[runs.len() - 1].y - y0) as usize + 2);
    for (k, r) in runs.iter().enumerate() {
        while row_start.len() as u64 <= r.y - y0 {
            row_start.push(k);
        }
    }
    row_start.push(runs.len());
    let rows = row_start.len() as i64 - 1;
    // Is pixel (x, y0 + y) part of the component?
    let foreground = |x: i64, y: i64| {
        if y < 0 || y >= rows {
            return false;
        }
        let row = &runs[row_start[y as usize]..row_start[y as usize + 1]];
        let k = row.partition_point(|r| i64::from(r.x1) <= x);
        k < row.len() && i64::from(row[k].x0) <= x
    };

    // The top-left corner of the top-left pixel is a plain corner on the exterior
    // boundary, passed exactly once: start and stop there, heading +x.
    let start = (i64::from(runs[0].x0), 0);
    let (mut x, mut y) = start;
    let mut dir = (1i64, 0i64);
    let mut ring = vec![(runs[0].x0, y0)];
    loop {
        x += dir.0;
        y += dir.1;
        if (x, y) == start {
            break;
        }
        let left = (dir.1, -dir.0);
        let right = (-dir.1, dir.0);
        // The pixel whose centre is half a step along `a` and half along `b`.
        let pixel = |a: (i64, i64), b: (i64, i64)| {
            foreground(x + (a.0 + b.0 - 1) / 2, y + (a.1 + b.1 - 1) / 2)
        };
        let turn = if pixel(dir, left) {
            left
        } else if pixel(dir, right) {
            dir
        } else {
            right
        };
        if turn != dir {
            // Coordinates stay within the component's bbox: never negative.
            ring.push((x as u32, y0 + y as u64));
            dir = turn;
        }
    }
    ring.push(ring[0]);
    ring
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::pixel_values::CoreValues;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::time::{Duration, Instant};

    fn options(pixels: bool) -> TrackerOptions {
        TrackerOptions {
            pixels,
            values: false,
            max_kept_area: u64::MAX,
            min_area: 0,
        }
    }

    /// The exterior ring of a component that kept its pixels.
    fn ring_of(c: &Component) -> Vec<Vertex> {
        exterior_ring(&c.pixels.as_ref().expect("pixels").runs)
    }

    /// Brute-force 8-connected flood fill; each component's pixels as `(x, y)`.
    fn reference_components(mask: &[u8], w: usize, h: usize) -> Vec<Vec<(usize, usize)>> {
        let mut seen = vec![false; mask.len()];
        let mut out = Vec::new();
        for start in 0..mask.len() {
            if mask[start] == 0 || seen[start] {
                continue;
            }
            seen[start] = true;
            let mut stack = vec![start];
            let mut pixels = Vec::new();
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                pixels.push((x, y));
                for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        let j = ny * w + nx;
                        if mask[j] != 0 && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            out.push(pixels);
        }
        out
    }

    /// Comparable summary: area, bbox and exact centroid bits.
    type Summary = (u64, (u32, u64, u32, u64), (u64, u64));

    fn summarize(pixels: &[(usize, usize)]) -> Summary {
        let area = pixels.len() as u64;
        let sx: u128 = pixels.iter().map(|p| p.0 as u128).sum();
        let sy: u128 = pixels.iter().map(|p| p.1 as u128).sum();
        let bbox = (
            pixels.iter().map(|p| p.0).min().unwrap() as u32,
            pixels.iter().map(|p| p.1).min().unwrap() as u64,
            pixels.iter().map(|p| p.0).max().unwrap() as u32 + 1,
            pixels.iter().map(|p| p.1).max().unwrap() as u64 + 1,
        );
        let cx = sx as f64 / area as f64 + 0.5;
        let cy = sy as f64 / area as f64 + 0.5;
        (area, bbox, (cx.to_bits(), cy.to_bits()))
    }

    fn summary_of(c: &Component) -> Summary {
        let b = c.bbox;
        (
            c.area,
            (b.x0, b.y0, b.x1, b.y1),
            (c.centroid.0.to_bits(), c.centroid.1.to_bits()),
        )
    }

    /// Pushes the mask in bands of `band` rows (0 = random heights), draining after
    /// each band.
    fn run_tracker(
        mask: &[u8],
        w: usize,
        band: usize,
        opts: TrackerOptions,
        rng: &mut ChaCha8Rng,
    ) -> (ComponentStats, Vec<Component>) {
        let h = mask.len() / w;
        let mut tracker = ComponentTracker::new(w as u32, opts);
        let mut got = Vec::new();
        let mut y = 0;
        while y < h {
            let rows = if band == 0 {
                rng.random_range(1..=h)
            } else {
                band
            };
            let end = (y + rows).min(h);
            tracker.push_rows(&mask[y * w..end * w], None);
            got.extend(tracker.drain_finished());
            y = end;
        }
        let (stats, rest) = tracker.finish();
        got.extend(rest);
        (stats, got)
    }

    fn random_mask(rng: &mut ChaCha8Rng, w: usize, h: usize) -> Vec<u8> {
        let value: u8 = rng.random_range(1..=255);
        let mut mask = vec![0u8; w * h];
        match rng.random_range(0..4) {
            // Salt-and-pepper of varying density: many merges and diagonal contacts.
            0 => {
                let p = rng.random_range(0.05..0.75);
                for m in &mut mask {
                    if rng.random_bool(p) {
                        *m = value;
                    }
                }
            }
            // Overlapping discs, like nuclei.
            1 => {
                for _ in 0..rng.random_range(1..12) {
                    let (cx, cy) = (rng.random_range(0..w) as i64, rng.random_range(0..h) as i64);
                    let r = rng.random_range(0..8) as i64;
                    for y in (cy - r).max(0)..(cy + r + 1).min(h as i64) {
                        for x in (cx - r).max(0)..(cx + r + 1).min(w as i64) {
                            if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                                mask[y as usize * w + x as usize] = value;
                            }
                        }
                    }
                }
            }
            // Random walks: thin, winding, diagonal shapes that merge late.
            2 => {
                for _ in 0..rng.random_range(1..6) {
                    let (mut x, mut y) =
                        (rng.random_range(0..w) as i64, rng.random_range(0..h) as i64);
                    for _ in 0..rng.random_range(1..200) {
                        mask[y as usize * w + x as usize] = value;
                        x = (x + rng.random_range(-1..=1)).clamp(0, w as i64 - 1);
                        y = (y + rng.random_range(-1..=1)).clamp(0, h as i64 - 1);
                    }
                }
            }
            // Rectangles, some with holes punched in.
            _ => {
                for _ in 0..rng.random_range(1..8) {
                    let (x0, y0) = (rng.random_range(0..w), rng.random_range(0..h));
                    let (x1, y1) = (rng.random_range(x0..w) + 1, rng.random_range(y0..h) + 1);
                    for y in y0..y1 {
                        mask[y * w + x0..y * w + x1].fill(value);
                    }
                    for _ in 0..rng.random_range(0..4) {
                        mask[rng.random_range(y0..y1) * w + rng.random_range(x0..x1)] = 0;
                    }
                }
            }
        }
        mask
    }

    fn shoelace2(ring: &[(u32, u64)]) -> i128 {
        ring.windows(2)
            .map(|p| {
                let (x0, y0, x1, y1) = (
                    p[0].0 as i128,
                    p[0].1 as i128,
                    p[1].0 as i128,
                    p[1].1 as i128,
                );
                x0 * y1 - x1 * y0
            })
            .sum()
    }

    /// Crossing-number test for a pixel centre; pixel centres never lie on the ring.
    fn inside(ring: &[(u32, u64)], x: f64, y: f64) -> bool {
        let mut crossings = false;
        for p in ring.windows(2) {
            let (ax, ay, bx, by) = (p[0].0 as f64, p[0].1 as f64, p[1].0 as f64, p[1].1 as f64);
            if (ay > y) != (by > y) && x < ax + (y - ay) / (by - ay) * (bx - ax) {
                crossings = !crossings;
            }
        }
        crossings
    }

    /// The component plus its holes (background not 4-connected to the outside).
    fn filled(pixels: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let (x0, y0) = (
            pixels.iter().map(|p| p.0).min().unwrap(),
            pixels.iter().map(|p| p.1).min().unwrap(),
        );
        let (x1, y1) = (
            pixels.iter().map(|p| p.0).max().unwrap(),
            pixels.iter().map(|p| p.1).max().unwrap(),
        );
        // Local grid with a one-pixel margin so the outside is connected.
        let (w, h) = (x1 - x0 + 3, y1 - y0 + 3);
        let mut grid = vec![0u8; w * h]; // 0 unknown, 1 component, 2 outside
        for &(x, y) in pixels {
            grid[(y - y0 + 1) * w + (x - x0 + 1)] = 1;
        }
        let mut stack = vec![0usize];
        grid[0] = 2;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if grid[j] == 0 {
                    grid[j] = 2;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        (0..w * h)
            .filter(|&i| grid[i] != 2)
            .map(|i| (i % w + x0 - 1, i / w + y0 - 1))
            .collect()
    }

    fn check_polygon(c: &Component, pixels: &[(usize, usize)]) {
        let ring = &ring_of(c);
        assert!(ring.len() >= 5, "{ring:?}");
        assert_eq!(ring.first(), ring.last());
        let n = ring.len() - 1;
        for i in 0..n {
            let (p, q, r) = (ring[(i + n - 1) % n], ring[i], ring[i + 1]);
            assert!(q.0 == r.0 || q.1 == r.1, "edge not axis-aligned: {ring:?}");
            let collinear = (p.0 == q.0 && q.0 == r.0) || (p.1 == q.1 && q.1 == r.1);
            assert!(!collinear, "collinear vertex {q:?} in {ring:?}");
        }
        let full = filled(pixels);
        assert_eq!(shoelace2(ring), 2 * full.len() as i128, "{ring:?}");
        let b = c.bbox;
        let full: std::collections::HashSet<_> = full.into_iter().collect();
        for y in b.y0..b.y1 {
            for x in b.x0..b.x1 {
                let expect = full.contains(&(x as usize, y as usize));
                assert_eq!(
                    inside(ring, x as f64 + 0.5, y as f64 + 0.5),
                    expect,
                    "pixel ({x},{y}) in {ring:?}"
                );
            }
        }
    }

    fn check_against_reference(mask: &[u8], w: usize, band: usize, rng: &mut ChaCha8Rng) {
        let h = mask.len() / w;
        let reference = reference_components(mask, w, h);
        let (stats, got) = run_tracker(mask, w, band, options(true), rng);
        assert_eq!(stats.count as usize, reference.len());
        assert_eq!(got.len(), reference.len());
        assert_eq!(
            stats.foreground_pixels,
            mask.iter().filter(|&&m| m != 0).count() as u64
        );
        let mut want: Vec<(Summary, usize)> = reference
            .iter()
            .enumerate()
            .map(|(i, p)| (summarize(p), i))
            .collect();
        let mut have: Vec<(Summary, usize)> = got
            .iter()
            .enumerate()
            .map(|(i, c)| (summary_of(c), i))
            .collect();
        want.sort_unstable();
        have.sort_unstable();
        for (w, h) in want.iter().zip(&have) {
            assert_eq!(w.0, h.0);
            check_polygon(&got[h.1], &reference[w.1]);
        }
    }

    #[test]
    fn random_masks_match_reference_labeler() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..400 {
            let w = rng.random_range(1..48);
            let h = rng.random_range(1..48);
            let mask = random_mask(&mut rng, w, h);
            for band in [1, 7, h, 0] {
                check_against_reference(&mask, w, band, &mut rng);
            }
        }
    }

    #[test]
    fn late_merges_count_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Comb: 20 teeth from the top, joined only by the last row.
        let (w, h) = (40, 60);
        let mut comb = vec![0u8; w * h];
        for y in 0..h {
            for x in (0..w).step_by(2) {
                comb[y * w + x] = 1;
            }
        }
        comb[(h - 1) * w..].fill(1);
        // U joined by a single diagonal contact at the bottom.
        let mut u = vec![0u8; 9 * 30];
        for y in 0..29 {
            u[y * 9 + 1] = 1;
            u[y * 9 + 7] = 1;
        }
        u[29 * 9 + 2..29 * 9 + 7].fill(1);
        // Square spiral, one pixel wide with one-pixel gaps: its two ends meet far
        // below where they start.
        let n = 41;
        let mut spiral = vec![0u8; n * n];
        let (mut lo, mut hi) = (0usize, n - 1);
        while lo + 2 <= hi {
            for x in lo..=hi {
                spiral[lo * n + x] = 1;
            }
            for y in lo..=hi {
                spiral[y * n + hi] = 1;
            }
            for x in lo + 2..=hi {
                spiral[hi * n + x] = 1;
            }
            for y in lo + 2..=hi {
                spiral[y * n + lo + 2] = 1;
            }
            lo += 2;
            hi -= 2;
        }
        for (mask, w) in [(&comb, w), (&u, 9), (&spiral, n)] {
            for band in [1, 7, mask.len() / w, 0] {
                let (stats, got) = run_tracker(mask, w, band, options(true), &mut rng);
                assert_eq!(stats.count, 1);
                let area = mask.iter().filter(|&&m| m != 0).count() as u64;
                assert_eq!(got[0].area, area);
                check_against_reference(mask, w, band, &mut rng);
            }
        }
    }

    #[test]
    fn diagonal_contact_connects_and_ring_passes_through_the_corner() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (_, got) = run_tracker(&[1, 0, 0, 1], 2, 1, options(true), &mut rng);
        assert_eq!(got.len(), 1);
        assert_eq!(
            ring_of(&got[0]),
            [
                (0, 0),
                (1, 0),
                (1, 1),
                (2, 1),
                (2, 2),
                (1, 2),
                (1, 1),
                (0, 1),
                (0, 0)
            ]
        );
        let (_, got) = run_tracker(&[0, 1, 1, 0], 2, 1, options(true), &mut rng);
        assert_eq!(got.len(), 1);
        assert_eq!(
            ring_of(&got[0]),
            [
                (1, 0),
                (2, 0),
                (2, 1),
                (1, 1),
                (1, 2),
                (0, 2),
                (0, 1),
                (1, 1),
                (1, 0)
            ]
        );
    }

    #[test]
    fn polygons_of_simple_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ring = |mask: &[u8], w: usize| {
            let (_, got) =
                run_tracker(mask, w, 1, options(true), &mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!(got.len(), 1);
            ring_of(&got[0])
        };
        // Single pixel at (3, 2).
        let mut px = vec![0u8; 6 * 4];
        px[2 * 6 + 3] = 255;
        assert_eq!(ring(&px, 6), [(3, 2), (4, 2), (4, 3), (3, 3), (3, 2)]);
        // 3×2 rectangle at (1, 1).
        let mut rect = vec![0u8; 5 * 4];
        for y in 1..3 {
            rect[y * 5 + 1..y * 5 + 4].fill(1);
        }
        assert_eq!(ring(&rect, 5), [(1, 1), (4, 1), (4, 3), (1, 3), (1, 1)]);
        // L: a 1×3 bar with a foot to the right on the last row.
        #[rustfmt::skip]
        let l = [
            1, 0, 0,
            1, 0, 0,
            1, 1, 1,
        ];
        assert_eq!(
            ring(&l, 3),
            [(0, 0), (1, 0), (1, 2), (3, 2), (3, 3), (0, 3), (0, 0)]
        );
        // Mirrored L (foot to the left, bar on the right): starts at the bar's top.
        #[rustfmt::skip]
        let j = [
            0, 0, 1,
            1, 1, 1,
        ];
        assert_eq!(
            ring(&j, 3),
            [(2, 0), (3, 0), (3, 2), (0, 2), (0, 1), (2, 1), (2, 0)]
        );
        // A ring with a hole: only the exterior is traced.
        #[rustfmt::skip]
        let o = [
            1, 1, 1,
            1, 0, 1,
            1, 1, 1,
        ];
        assert_eq!(ring(&o, 3), [(0, 0), (3, 0), (3, 3), (0, 3), (0, 0)]);
        let (_, got) = run_tracker(&o, 3, 1, options(true), &mut rng);
        assert_eq!(got[0].area, 8);
    }

    #[test]
    fn min_area_and_max_kept_area() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // Components of area 1, 2, 4 and 9.
        #[rustfmt::skip]
        let mask = [
            1, 0, 1, 1, 0, 1, 1, 1,
            0, 0, 0, 0, 0, 1, 1, 1,
            1, 1, 0, 0, 0, 1, 1, 1,
            1, 1, 0, 0, 0, 0, 0, 0,
        ];
        let opts = TrackerOptions {
            pixels: true,
            values: false,
            max_kept_area: 4,
            min_area: 2,
        };
        for band in [1, 3, 4] {
            let (stats, got) = run_tracker(&mask, 8, band, opts, &mut rng);
            assert_eq!(
                stats,
                ComponentStats {
                    count: 3,
                    foreground_pixels: 16,
                    dropped_small: 1,
                    too_large: 1,
                    mean_area: 5.0,
                }
            );
            let mut areas: Vec<_> = got.iter().map(|c| (c.area, c.pixels.is_some())).collect();
            areas.sort_unstable();
            assert_eq!(areas, [(2, true), (4, true), (9, false)]);
        }
        let (stats, got) = run_tracker(&mask, 8, 2, options(false), &mut rng);
        assert_eq!(stats.too_large, 0);
        assert!(got.iter().all(|c| c.pixels.is_none()));
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["count"], 4);
    }

    #[test]
    fn values_follow_their_pixels_through_late_merges() {
        // A comb whose teeth join only in the last row, pushed in uneven bands: every
        // run's values must still be its own pixels' (score = x, hematoxylin = y).
        let (w, h) = (22usize, 9usize);
        let mut comb = vec![0u8; w * h];
        for y in 0..h {
            for x in (0..w).step_by(4) {
                comb[y * w + x..y * w + x + 2].fill(1);
            }
        }
        comb[(h - 1) * w..].fill(1);
        let mut tracker = ComponentTracker::new(
            w as u32,
            TrackerOptions {
                values: true,
                ..options(true)
            },
        );
        for (y0, y1) in [(0, 3), (3, 4), (4, h)] {
            let rows = &comb[y0 * w..y1 * w];
            let values = CoreValues::coordinates(rows, w, y0);
            tracker.push_rows(
                rows,
                Some(RowValues {
                    score: &values.score,
                    hematoxylin: &values.hematoxylin,
                }),
            );
        }
        let (stats, found) = tracker.finish();
        assert_eq!(stats.count, 1);
        let pixels = found[0].pixels.as_ref().unwrap();
        assert_eq!(pixels.score.len() as u64, found[0].area);
        assert!(pixels
            .runs
            .windows(2)
            .all(|r| (r[0].y, r[0].x0) < (r[1].y, r[1].x0)));
        for run in &pixels.runs {
            for (i, x) in (run.x0..run.x1).enumerate() {
                assert_eq!(pixels.score[run.at + i], x as u8, "{run:?}");
                assert_eq!(pixels.hematoxylin[run.at + i], run.y as u16, "{run:?}");
            }
        }
    }

    #[test]
    fn components_are_drainable_as_soon_as_they_finish() {
        let mut tracker = ComponentTracker::new(4, options(true));
        tracker.push_rows(&[1, 1, 0, 0, 0, 0, 0, 0], None);
        let done: Vec<_> = tracker.drain_finished().collect();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].area, 2);
        assert_eq!(done[0].centroid, (1.0, 0.5));
        assert_eq!(tracker.open_components(), 0);
        tracker.push_rows(&[0, 0, 0, 1], None);
        assert_eq!(tracker.drain_finished().count(), 0);
        assert_eq!(tracker.open_components(), 1);
        let (stats, rest) = tracker.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            rest[0].bbox,
            BBox {
                x0: 3,
                y0: 2,
                x1: 4,
                y1: 3
            }
        );
        assert_eq!(stats.count, 2);
    }

    #[test]
    fn span_finder_matches_naive_scan() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut spans = Vec::new();
        for _ in 0..2000 {
            let len = rng.random_range(1..70);
            let p = rng.random_range(0.0..1.0);
            let row: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(p) {
                        rng.random_range(1..=255)
                    } else {
                        0
                    }
                })
                .collect();
            find_spans(&row, &mut spans);
            let mut naive = Vec::new();
            let mut x = 0;
            while x < len {
                if row[x] != 0 {
                    let s = x;
                    while x < len && row[x] != 0 {
                        x += 1;
                    }
                    naive.push((s as u32, x as u32));
                } else {
                    x += 1;
                }
            }
            let got: Vec<_> = spans.iter().map(|s| (s.x0, s.x1)).collect();
            assert_eq!(got, naive, "{row:?}");
        }
    }

    #[test]
    fn memory_stays_bounded_on_a_tall_striped_mask() {
        const W: usize = 10_000;
        const H: usize = 20_000;
        const BAND: usize = 100;
        let opts = TrackerOptions {
            pixels: true,
            values: false,
            max_kept_area: 1000,
            min_area: 0,
        };
        let mut tracker = ComponentTracker::new(W as u32, opts);
        let mut band = vec![0u8; W * BAND];
        let mut drained = 0u64;
        for y0 in (0..H).step_by(BAND) {
            for (i, row) in band.chunks_exact_mut(W).enumerate() {
                let y = y0 + i;
                row.fill(0);
                // 3-px stripes every 64 px, cut every 64 rows, plus one stripe
                // spanning the whole height (far above max_kept_area).
                if y % 64 != 0 {
                    for x in (0..W - 8).step_by(64) {
                        row[x..x + 3].fill(1);
                    }
                }
                row[W - 4..].fill(1);
            }
            tracker.push_rows(&band, None);
            drained += tracker.drain_finished().count() as u64;
            assert!(tracker.open_components() <= W / 64 + 2);
            // Each open stripe holds at most 63 rows of runs; the tall one none.
            assert!(tracker.stored_runs() <= (W / 64 + 1) * 63);
        }
        let (stats, rest) = tracker.finish();
        // H is not a multiple of 64: the last stripes and the tall one end with the mask.
        assert_eq!(rest.len(), W / 64 + 2);
        assert_eq!(stats.count, drained + rest.len() as u64);
        assert_eq!(stats.too_large, 1);
        assert_eq!(stats.count, (W as u64 / 64 + 1) * (H as u64 / 64 + 1) + 1);
    }

    /// Throughput on a 16384² nuclei-like mask; run with
    /// `cargo test --release -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput() {
        const N: usize = 16_384;
        const BAND: usize = 256;
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        // ~12% foreground: discs of radius 3..10 px at random positions.
        let mut discs: Vec<(i64, i64, i64)> = (0..400_000)
            .map(|_| {
                (
                    rng.random_range(0..N as i64),
                    rng.random_range(0..N as i64),
                    rng.random_range(3..10),
                )
            })
            .collect();
        discs.sort_unstable_by_key(|d| d.1 - d.2);
        for pixels in [false, true] {
            let mut tracker = ComponentTracker::new(N as u32, options(pixels));
            let mut band = vec![0u8; N * BAND];
            let mut elapsed = Duration::ZERO;
            let mut fg = 0u64;
            let mut next = 0;
            let mut active: Vec<(i64, i64, i64)> = Vec::new();
            for y0 in (0..N as i64).step_by(BAND) {
                band.fill(0);
                let y1 = y0 + BAND as i64;
                while next < discs.len() && discs[next].1 - discs[next].2 < y1 {
                    active.push(discs[next]);
                    next += 1;
                }
                active.retain(|d| d.1 + d.2 >= y0);
                for &(cx, cy, r) in &active {
                    for y in (cy - r).max(y0)..(cy + r + 1).min(y1) {
                        let dx = ((r * r - (y - cy).pow(2)) as f64).sqrt() as i64;
                        let (a, b) = ((cx - dx).max(0) as usize, ((cx + dx + 1) as usize).min(N));
                        band[(y - y0) as usize * N + a..(y - y0) as usize * N + b].fill(255);
                    }
                }
                fg += band.iter().filter(|&&v| v != 0).count() as u64;
                let start = Instant::now();
                tracker.push_rows(&band, None);
                tracker.drain_finished().for_each(drop);
                elapsed += start.elapsed();
            }
            let start = Instant::now();
            let (stats, _) = tracker.finish();
            elapsed += start.elapsed();
            println!(
                "pixels={pixels}: {} components, {:.1}% foreground, {:.3} s, {:.0} Mpx/s",
                stats.count,
                100.0 * fg as f64 / (N * N) as f64,
                elapsed.as_secs_f64(),
                (N * N) as f64 / elapsed.as_secs_f64() / 1e6
            );
        }
    }
}
