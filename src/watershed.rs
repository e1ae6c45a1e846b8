//! Splitting touching nuclei: marker-controlled watershed on the distance transform.
//!
//! A binary nuclei mask merges nuclei that touch into one connected component. Nuclei are
//! roughly convex, so inside such a blob the distance to the background has one peak per
//! nucleus and a saddle at every neck where two nuclei meet. [`separate`] turns a mask
//! into objects in these steps, each hand-written and each exact or deterministic:
//!
//! 1. **Distance transform** ([`distance_transform`]): the exact Euclidean distance of
//!    every foreground pixel to the nearest background pixel (Felzenszwalb & Huttenlocher
//!    2012, two separable passes, O(n)); as `scipy.ndimage.distance_transform_edt`, pixels
//!    beyond the image border are not background.
//! 2. **Smoothing** ([`gaussian_smooth`], `src/gaussian.rs`): a small Gaussian (σ =
//!    [`SeparationParams::sigma_px`]) removes the ridges and single-pixel peaks that a
//!    jagged outline leaves in the distance map (as `skimage.filters.gaussian`: edges
//!    repeat the nearest pixel, kernel truncated at 4σ).
//! 3. **Markers** ([`h_maxima`]): the regional maxima of the smoothed map that stand at
//!    least `h` ([`SeparationParams::h_px`]) above every saddle joining them to a higher
//!    part of their component (the h-maxima transform: morphological reconstruction by
//!    dilation of `f − h` under `f`, Vincent's 1993 hybrid algorithm, restricted to the
//!    mask). Two nuclei whose neck is at least `h` narrower (in inscribed radius) than
//!    the smaller of them get one marker each; a shallower dent does not split. Each
//!    8-connected set of marker pixels is one marker.
//! 4. **Flooding** ([`flood`]): a priority-flood watershed of the negated smoothed map
//!    from the markers, restricted to the mask, 8-connected: the unlabelled neighbour of
//!    the most central labelled pixel is labelled next, ties broken by the order in which
//!    pixels were queued (first queued, first served), so the result is fully
//!    deterministic. Every mask pixel gets a label: a component that no marker reaches
//!    (none does with the markers of step 3, since the top of every component is an
//!    h-maximum) becomes an object of its own.
//! 5. **Large objects** ([`SeparationParams::large_area_px`], about three nuclei) are
//!    flooded once more, each on its own, from its h-maxima at the shallower depth
//!    [`SeparationParams::large_h_px`]: nuclei pressed together along a wide front leave
//!    only a shallow neck, and a blob that large is rarely one nucleus.
//! 6. **Concave cuts** (`watershed/concave_cuts.rs`): objects of at least twice
//!    [`SeparationParams::cut_min_part_px`] pixels are cut along a straight line between
//!    two dents of their outline at least [`SeparationParams::cut_depth_px`] deep, where
//!    that leaves two solid parts of at least that many pixels each (and the parts again,
//!    a few levels down): nuclei pressed together along a front almost as wide as they are
//!    leave no dip in the distance map for the steps above, but a notch at each end of
//!    the front.
//! 7. **Specks** are dropped: objects under [`SeparationParams::min_area_px`] pixels go
//!    to 0, and the rest are renumbered `1..=count` in the raster order of their first
//!    pixel.
//!
//! Steps 1–4 and 7 are scikit-image's classic recipe (`distance_transform_edt`,
//! `filters.gaussian`, `morphology.h_maxima`, `segmentation.watershed(-d, markers,
//! mask=mask)`), steps 5 and 6 our additions; two
//! deliberate differences, both measured to change MoNuSeg's scores by less than 0.001:
//! the h-maxima are computed inside the mask only (skimage's, computed over the whole
//! smoothed image, can miss a small nucleus next to a big one because the smoothed
//! distance leaks into the gap between them), and flooding is 8-connected (as the
//! components of [`label_components`]) where skimage's default is
//! 4-connected, so a diagonal tail is never left unlabelled.
//!
//! **Scale.** Sizes are in pixels of the mask. The defaults are chosen on MoNuSeg at
//! 0.25 µm/px ([`MONUSEG_MPP`]); [`SeparationParams::at_mpp`] converts them for another
//! resolution (lengths scale with 1/mpp, areas with 1/mpp²). On the 13 MoNuSeg training
//! images with true instance maps, the true binary masks score AJI 0.596 as 8-connected
//! components and 0.919 after this separation (0.912 without the concave cuts; `cargo
//! bench --bench instances`).

use crate::gaussian::gaussian_smooth;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

mod concave_cuts;

/// Resolution the default parameters are chosen at: MoNuSeg's 40× images, µm per pixel.
pub const MONUSEG_MPP: f64 = 0.25;

/// Parameters of [`separate`], in pixels of the mask (see [`SeparationParams::at_mpp`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeparationParams {
    /// σ of the Gaussian smoothing of the distance map, px; 0 = no smoothing. Default 1 px
    /// = 0.25 µm at 0.25 µm/px: enough to flatten the one-pixel ridges of a jagged outline
    /// (without it the true MoNuSeg masks score AJI 0.856 instead of 0.909 at h = 1 px:
    /// outlines split into extra markers), far below a nucleus radius (~3 µm).
    pub sigma_px: f32,
    /// How far a peak of the smoothed distance map must stand above the saddle that joins
    /// it to a higher peak to get a marker of its own, px (> 0). Default 0.5 px = 0.125 µm
    /// at 0.25 µm/px: a neck whose inscribed radius is 0.125 µm less than the smaller
    /// nucleus's separates them. Larger values split less. On the 13 MoNuSeg instance maps
    /// 0.5 px against 1 px: AJI +0.003 on the true masks (F1 −0.003), +0.015 on the
    /// smoothed stain cut and +0.016 on the shipped model's masks (F1 +0.005, both halves
    /// of the images gaining); merged touching nuclei cost AJI more than the few pale
    /// nuclei a shallower dent splits (docs/benchmarks.md#nuclei-as-objects).
    pub h_px: f32,
    /// Objects of fewer pixels are dropped (set to 0). Default 96 px = 6 µm² at
    /// 0.25 µm/px (a disk 2.8 µm across), about the area of the smallest 1 % of true
    /// MoNuSeg nuclei (~5.8 µm²; a typical one is ~31 µm²). What it removes is mostly the
    /// fragments a learned or cut mask leaves on stroma and debris: on the 13 MoNuSeg
    /// instance maps the shipped model's object F1 goes from 0.562 at 30 px to 0.585 (at
    /// h = 1 px), while the true masks, split, lose 0.005 (0.969 → 0.964). It was set from the true
    /// nuclei's sizes, not from that F1, which keeps rising to 12 µm² at the true masks'
    /// expense (docs/benchmarks.md#nuclei-as-objects).
    pub min_area_px: u32,
    /// Objects of more pixels than this are split once more at the shallower depth
    /// [`Self::large_h_px`]. Default 1440 px = 90 µm² at 0.25 µm/px, about three typical
    /// MoNuSeg nuclei (~31 µm²): a blob that large is almost always nuclei that touch along
    /// a wide front, whose neck is too shallow for `h_px`, while a dent that shallow in a
    /// nucleus-sized object is mostly a ragged outline. On the 13 MoNuSeg instance maps it
    /// lifts the shipped seeds' AJI by 0.010–0.013 and the smoothed stain cut's by 0.007,
    /// and moves the true masks' scores by at most 0.001
    /// (docs/benchmarks.md#nuclei-as-objects).
    pub large_area_px: u32,
    /// The marker depth for objects above [`Self::large_area_px`], px (> 0; at most
    /// `h_px` to have any effect). Default 0.2 px = 0.05 µm at 0.25 µm/px.
    pub large_h_px: f32,
    /// How deep a dent of an object's outline (the distance of its deepest point from the
    /// convex hull's edge across it) must be for a concave cut to end there, px (> 0).
    /// Default 3 px = 0.75 µm at 0.25 µm/px: deeper than the pixel steps of a ragged
    /// outline, shallower than the notch where two pressed nuclei meet (4 px instead
    /// moved AJI by 0.002 on the 13 MoNuSeg instance maps). Absent from settings written
    /// before the cuts: the default.
    #[serde(default = "default_cut_depth_px")]
    pub cut_depth_px: f32,
    /// Both parts of a concave cut must have at least this many pixels, and only objects of
    /// twice as many are tried. Default 300 px = 18.75 µm² at 0.25 µm/px, about 60 % of a
    /// typical MoNuSeg nucleus (~31 µm²): smaller parts are mostly lobes of one nucleus;
    /// `u32::MAX` turns the cuts off. Absent from settings written before the cuts: the
    /// default.
    #[serde(default = "default_cut_min_part_px")]
    pub cut_min_part_px: u32,
}

/// [`SeparationParams::cut_depth_px`]'s default (at [`MONUSEG_MPP`]).
fn default_cut_depth_px() -> f32 {
    3.0
}

/// [`SeparationParams::cut_min_part_px`]'s default (at [`MONUSEG_MPP`]).
fn default_cut_min_part_px() -> u32 {
    300
}

impl Default for SeparationParams {
    fn default() -> Self {
        SeparationParams {
            sigma_px: 1.0,
            h_px: 0.5,
            min_area_px: 96,
            large_area_px: 1440,
            large_h_px: 0.2,
            cut_depth_px: default_cut_depth_px(),
            cut_min_part_px: default_cut_min_part_px(),
        }
    }
}

impl SeparationParams {
    /// The defaults (chosen at [`MONUSEG_MPP`]) converted to a mask of `mpp` µm per pixel:
    /// σ and the three depths scale with `0.25 / mpp`, the three areas with its square.
    ///
    /// # Panics
    /// If `mpp` is not positive and finite.
    pub fn at_mpp(mpp: f64) -> Self {
        assert!(mpp > 0.0 && mpp.is_finite(), "mpp {mpp} is not positive");
        let scale = MONUSEG_MPP / mpp;
        let default = SeparationParams::default();
        SeparationParams {
            sigma_px: (f64::from(default.sigma_px) * scale) as f32,
            h_px: (f64::from(default.h_px) * scale) as f32,
            min_area_px: (f64::from(default.min_area_px) * scale * scale).round() as u32,
            large_area_px: (f64::from(default.large_area_px) * scale * scale).round() as u32,
            large_h_px: (f64::from(default.large_h_px) * scale) as f32,
            cut_depth_px: (f64::from(default.cut_depth_px) * scale) as f32,
            cut_min_part_px: (f64::from(default.cut_min_part_px) * scale * scale).round() as u32,
        }
    }
}

/// The objects of a binary `mask` (nonzero = nucleus), touching nuclei separated (see the
/// module docs): a label map `1..=count` in the raster order of each object's first pixel,
/// 0 = background or dropped speck, and `count`.
///
/// # Panics
/// If `mask.len()` is not `width * height`, if `params.h_px`, `params.large_h_px` or
/// `params.cut_depth_px` is not positive or `params.sigma_px` is negative, or if the image
/// has 2^32 pixels or more.
pub fn separate(
    mask: &[u8],
    width: usize,
    height: usize,
    params: &SeparationParams,
) -> (Vec<u32>, u32) {
    assert_eq!(
        mask.len(),
        width * height,
        "mask of {} pixels is not {width}×{height}",
        mask.len()
    );
    assert!(
        params.h_px > 0.0 && params.h_px.is_finite(),
        "h = {} px is not positive",
        params.h_px
    );
    assert!(
        params.large_h_px > 0.0 && params.large_h_px.is_finite(),
        "h = {} px for large objects is not positive",
        params.large_h_px
    );
    assert!(
        params.cut_depth_px > 0.0 && params.cut_depth_px.is_finite(),
        "cut depth {} px is not positive",
        params.cut_depth_px
    );
    assert!(
        params.sigma_px >= 0.0 && params.sigma_px.is_finite(),
        "σ = {} px is negative",
        params.sigma_px
    );
    if mask.iter().all(|&m| m == 0) {
        return (vec![0; mask.len()], 0);
    }
    let distance = distance_transform(mask, width, height);
    let smooth = gaussian_smooth(&distance, width, height, params.sigma_px);
    let markers = h_maxima(&smooth, mask, width, height, params.h_px);
    let (markers, _) = label_components(&markers, width, height);
    let labels = flood(&smooth, mask, &markers, width, height);
    let labels = split_large(labels, &smooth, width, params);
    let labels = concave_cuts::cut_concave(labels, width, params);
    drop_small(&labels, params.min_area_px)
}

/// Step 5: every object of `labels` above `params.large_area_px` pixels flooded again,
/// on its own, from the h-maxima of `smooth` within it at depth `params.large_h_px`. Each
/// object is redone from its own pixels alone, so the result does not depend on its
/// neighbours (the seam-free tiling relies on that). New parts take labels above the
/// largest; [`drop_small`] renumbers them.
fn split_large(
    mut labels: Vec<u32>,
    smooth: &[f32],
    width: usize,
    params: &SeparationParams,
) -> Vec<u32> {
    let objects = objects(&labels, width);
    let mut next = (objects.len() - 1) as u32;
    for (label, object) in objects.iter().enumerate().skip(1) {
        if object.area <= u64::from(params.large_area_px) {
            continue;
        }
        let Object { x0, y0, x1, y1, .. } = *object;
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        let at = |x: usize, y: usize| (y0 + y) * width + x0 + x;
        let object: Vec<u8> = (0..w * h)
            .map(|i| u8::from(labels[at(i % w, i / w)] == label as u32))
            .collect();
        let values: Vec<f32> = (0..w * h).map(|i| smooth[at(i % w, i / w)]).collect();
        let peaks = h_maxima(&values, &object, w, h, params.large_h_px);
        let (markers, count) = label_components(&peaks, w, h);
        if count < 2 {
            continue;
        }
        let parts = flood(&values, &object, &markers, w, h);
        for (i, &part) in parts.iter().enumerate() {
            // Part 1 keeps the object's label; the others get new ones.
            if part > 1 {
                labels[at(i % w, i / w)] = next + part - 1;
            }
        }
        next += parts.iter().copied().max().unwrap_or(1) - 1;
    }
    labels
}

/// The pixel count and bounding box of one label.
#[derive(Debug, Clone, Copy)]
pub struct Object {
    pub area: u64,
    /// The bounding box, both corners included.
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// The [`Object`] of every label `0..=max` of a row-major label map `labels` (index =
/// label; 0 and absent labels have area 0).
pub fn objects(labels: &[u32], width: usize) -> Vec<Object> {
    let top = labels.iter().copied().max().unwrap_or(0) as usize;
    let empty = Object {
        area: 0,
        x0: usize::MAX,
        y0: usize::MAX,
        x1: 0,
        y1: 0,
    };
    let mut objects = vec![empty; top + 1];
    for (y, row) in labels.chunks_exact(width).enumerate() {
        for (x, &l) in row.iter().enumerate() {
            if l != 0 {
                let o = &mut objects[l as usize];
                (o.x0, o.y0, o.x1, o.y1) = (o.x0.min(x), o.y0.min(y), o.x1.max(x), o.y1.max(y));
                o.area += 1;
            }
        }
    }
    objects
}

/// Exact Euclidean distance from every pixel to the nearest background (zero) pixel of
/// `mask`, 0 on background. Pixels beyond the border are not background (as
/// `scipy.ndimage.distance_transform_edt`); a mask without any background pixel gets
/// `width + height` everywhere, farther than any real distance.
///
/// Felzenszwalb & Huttenlocher (2012): the distance to the nearest background pixel in
/// each column, then per row the lower envelope of the parabolas `(x − q)² + g(q)²`.
/// O(n) for any mask.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn distance_transform(mask: &[u8], width: usize, height: usize) -> Vec<f32> {
    assert_eq!(mask.len(), width * height, "mask is not {width}×{height}");
    const FAR: u32 = u32::MAX;
    // Column pass, row by row so memory is read in order: distance to the nearest
    // background pixel above, then below, in the same column.
    let mut column = vec![FAR; mask.len()];
    for y in 0..height {
        let row = y * width;
        for x in 0..width {
            column[row + x] = if mask[row + x] == 0 {
                0
            } else if y == 0 {
                FAR
            } else {
                column[row - width + x].saturating_add(1)
            };
        }
    }
    for y in (0..height.saturating_sub(1)).rev() {
        let (row, below) = (y * width, (y + 1) * width);
        for x in 0..width {
            let from_below = column[below + x].saturating_add(1);
            if from_below < column[row + x] {
                column[row + x] = from_below;
            }
        }
    }
    // Row pass: lower envelope of parabolas rooted at the columns that have background.
    let mut out = vec![0f32; mask.len()];
    let mut sites: Vec<usize> = Vec::with_capacity(width); // v: parabola roots
    let mut bounds: Vec<f64> = Vec::with_capacity(width + 1); // z: where each one starts
    let mut any_background = false;
    for y in 0..height {
        let g = &column[y * width..(y + 1) * width];
        let f = |q: usize| {
            let d = f64::from(g[q]);
            d * d
        };
        sites.clear();
        bounds.clear();
        for (q, &gq) in g.iter().enumerate() {
            if gq == FAR {
                continue;
            }
            if sites.is_empty() {
                sites.push(q);
                bounds.push(f64::NEG_INFINITY);
                continue;
            }
            let qf = q as f64;
            loop {
                let v = *sites.last().expect("the first site is never removed");
                let vf = v as f64;
                // Where the parabola of q overtakes the one of v.
                let s = ((f(q) + qf * qf) - (f(v) + vf * vf)) / (2.0 * (qf - vf));
                if sites.len() > 1 && s <= *bounds.last().expect("one bound per site") {
                    sites.pop();
                    bounds.pop();
                } else {
                    sites.push(q);
                    bounds.push(s);
                    break;
                }
            }
        }
        let row = &mut out[y * width..(y + 1) * width];
        if sites.is_empty() {
            row.fill(f32::INFINITY);
            continue;
        }
        any_background = true;
        let mut k = 0;
        for (x, value) in row.iter_mut().enumerate() {
            let xf = x as f64;
            while k + 1 < sites.len() && bounds[k + 1] < xf {
                k += 1;
            }
            let dx = xf - sites[k] as f64;
            *value = (dx * dx + f(sites[k])).sqrt() as f32;
        }
    }
    if !any_background {
        out.fill((width + height) as f32);
    }
    out
}

/// The padded grid the h-maxima and the flood work on: one pixel of background all
/// around the image, so every pixel of the mask has 8 neighbours in bounds.
struct Padded {
    width: usize,
    /// Offsets of the 8 neighbours, in raster order: the 4 before a pixel, then the 4
    /// after it.
    neighbours: [isize; 8],
}

impl Padded {
    fn new(width: usize) -> Padded {
        let w = (width + 2) as isize;
        Padded {
            width: width + 2,
            neighbours: [-w - 1, -w, -w + 1, -1, 1, w - 1, w, w + 1],
        }
    }

    /// The padded index of pixel `(x, y)` of the image.
    fn index(&self, x: usize, y: usize) -> usize {
        (y + 1) * self.width + x + 1
    }

    /// A copy of `image` on the padded grid, `fill` around it.
    fn pad<T: Copy>(&self, image: &[T], width: usize, height: usize, fill: T) -> Vec<T> {
        let mut out = vec![fill; self.width * (height + 2)];
        for y in 0..height {
            let at = self.index(0, y);
            out[at..at + width].copy_from_slice(&image[y * width..(y + 1) * width]);
        }
        out
    }

    fn at(&self, p: usize, k: usize) -> usize {
        p.wrapping_add_signed(self.neighbours[k])
    }
}

/// The h-maxima of `values` inside `mask` (1 = marker pixel): the pixels where the
/// morphological reconstruction by dilation of `values − h` under `values`, 8-connected
/// and restricted to the mask's pixels, stays at `values − h`, i.e. the tops of the
/// regional maxima that no path through the mask joins to a higher pixel without first
/// descending by at least `h`. Every 8-connected component of the mask has at least one
/// (its highest plateau).
///
/// The reconstruction is Vincent's (1993) hybrid algorithm: a raster and an anti-raster
/// scan, then a FIFO propagation of the pixels the scans could not settle. Comparing the
/// reconstruction with `values − h` itself, not `values − reconstruction` with `h`, keeps
/// the test exact in floating point.
///
/// # Panics
/// If `values` or `mask` is not `width * height` long.
pub fn h_maxima(values: &[f32], mask: &[u8], width: usize, height: usize, h: f32) -> Vec<u8> {
    assert_eq!(
        values.len(),
        width * height,
        "values are not {width}×{height}"
    );
    assert_eq!(mask.len(), width * height, "mask is not {width}×{height}");
    let grid = Padded::new(width);
    let inside = grid.pad(mask, width, height, 0);
    let f = grid.pad(values, width, height, f32::NEG_INFINITY);
    let floor: Vec<f32> = f.iter().map(|&v| v - h).collect();
    let mut rec = floor.clone();
    let rows = (height + 2) * grid.width;
    let in_mask = |p: usize| inside[p] != 0;

    // Raster scan: the neighbours before each pixel.
    for p in grid.width..rows - grid.width {
        if !in_mask(p) {
            continue;
        }
        let mut m = rec[p];
        for k in 0..4 {
            let q = grid.at(p, k);
            if in_mask(q) && rec[q] > m {
                m = rec[q];
            }
        }
        rec[p] = m.min(f[p]);
    }
    // Anti-raster scan: the neighbours after each pixel; pixels that may still raise a
    // neighbour go to the queue.
    let mut queue = VecDeque::new();
    for p in (grid.width..rows - grid.width).rev() {
        if !in_mask(p) {
            continue;
        }
        let mut m = rec[p];
        for k in 4..8 {
            let q = grid.at(p, k);
            if in_mask(q) && rec[q] > m {
                m = rec[q];
            }
        }
        rec[p] = m.min(f[p]);
        let raises = (4..8).any(|k| {
            let q = grid.at(p, k);
            in_mask(q) && rec[q] < rec[p] && rec[q] < f[q]
        });
        if raises {
            queue.push_back(p);
        }
    }
    while let Some(p) = queue.pop_front() {
        for k in 0..8 {
            let q = grid.at(p, k);
            if in_mask(q) && rec[q] < rec[p] && rec[q] != f[q] {
                rec[q] = rec[p].min(f[q]);
                queue.push_back(q);
            }
        }
    }
    let mut out = vec![0u8; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let p = grid.index(x, y);
            out[y * width + x] = u8::from(in_mask(p) && rec[p] <= floor[p]);
        }
    }
    out
}

/// Order-preserving key of a float for a min-heap on `-value`: larger values come first.
fn descending_key(value: f32) -> u32 {
    let bits = value.to_bits();
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    !ascending
}

/// Priority-flood watershed of `-values` from `markers` (a label map, 0 = none) inside
/// `mask`, 8-connected. Marker pixels keep their label; every other mask pixel takes the
/// label of the neighbour through which the flood first reaches it, the flood always
/// growing from the queued pixel of highest value (ties: first queued first, markers
/// queued in raster order). Mask pixels that no marker reaches are labelled by their
/// 8-connected components, after the markers' labels. Labels are not renumbered.
///
/// # Panics
/// If a slice is not `width * height` long, or the image has 2^32 pixels or more.
pub fn flood(
    values: &[f32],
    mask: &[u8],
    markers: &[u32],
    width: usize,
    height: usize,
) -> Vec<u32> {
    let n = width * height;
    assert!(
        values.len() == n && mask.len() == n && markers.len() == n,
        "inputs are not {width}×{height}"
    );
    let grid = Padded::new(width);
    let padded_len = grid.width * (height + 2);
    assert!(padded_len < u32::MAX as usize, "image too large to flood");
    // Pixels outside the mask (and the padding) carry a label that is never 0, so one
    // comparison finds the pixels still to flood.
    const OUTSIDE: u32 = u32::MAX;
    assert!(
        markers.iter().all(|&m| m != OUTSIDE),
        "marker label {OUTSIDE} is reserved"
    );
    let mut labels = grid.pad(markers, width, height, OUTSIDE);
    for y in 0..height {
        for x in 0..width {
            if mask[y * width + x] == 0 {
                labels[grid.index(x, y)] = OUTSIDE;
            }
        }
    }
    let keys: Vec<u32> = values.iter().map(|&v| descending_key(v)).collect();
    let keys = grid.pad(&keys, width, height, 0);
    // One integer per queued pixel: its value's key, then the order it was queued in
    // (so equal values leave first in, first out and no two entries tie), then the pixel.
    let mut heap: BinaryHeap<Reverse<u128>> = BinaryHeap::new();
    let mut age = 0u128;
    let mut push = |heap: &mut BinaryHeap<Reverse<u128>>, p: usize| {
        heap.push(Reverse(
            (u128::from(keys[p]) << 64) | (age << 32) | p as u128,
        ));
        age += 1;
    };
    for y in 0..height {
        for x in 0..width {
            let p = grid.index(x, y);
            if labels[p] != 0 && labels[p] != OUTSIDE {
                push(&mut heap, p);
            }
        }
    }
    while let Some(Reverse(entry)) = heap.pop() {
        let p = (entry & u128::from(u32::MAX)) as usize;
        let label = labels[p];
        for k in 0..8 {
            let q = grid.at(p, k);
            if labels[q] == 0 {
                labels[q] = label;
                push(&mut heap, q);
            }
        }
    }
    for label in &mut labels {
        if *label == OUTSIDE {
            *label = 0;
        }
    }
    let inside = grid.pad(mask, width, height, 0);
    let mut out = vec![0u32; n];
    let mut unreached = vec![0u8; n];
    let mut any_unreached = false;
    for y in 0..height {
        for x in 0..width {
            let p = grid.index(x, y);
            out[y * width + x] = labels[p];
            if inside[p] != 0 && labels[p] == 0 {
                unreached[y * width + x] = 1;
                any_unreached = true;
            }
        }
    }
    if any_unreached {
        let after = out.iter().copied().max().unwrap_or(0);
        let (rest, _) = label_components(&unreached, width, height);
        for (label, r) in out.iter_mut().zip(rest) {
            if r != 0 {
                *label = after + r;
            }
        }
    }
    out
}

/// `labels` with objects under `min_area` pixels set to 0 and the others renumbered
/// `1..=count` in the raster order of their first pixel, and `count`.
fn drop_small(labels: &[u32], min_area: u32) -> (Vec<u32>, u32) {
    let top = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut area = vec![0u64; top + 1];
    for &l in labels {
        area[l as usize] += 1;
    }
    let mut renamed = vec![0u32; top + 1];
    let mut count = 0u32;
    let out = labels
        .iter()
        .map(|&l| {
            let l = l as usize;
            if l == 0 || area[l] < u64::from(min_area) {
                return 0;
            }
            if renamed[l] == 0 {
                count += 1;
                renamed[l] = count;
            }
            renamed[l]
        })
        .collect();
    (out, count)
}

// Here rather than in `instances`, which builds on `separate`: the markers of step 3 are
// such components, so the lower layer owns them.
/// 8-connected components of `mask` (nonzero = foreground), labelled `1..=count` in the
/// raster order of their first pixel, and `count`. Same connectivity as
/// [`crate::segment::components`] and `skimage.measure.label`'s 2-D default.
///
/// # Panics
/// If `mask.len()` is not `width * height`, or a mask has more than `u32::MAX` pixels.
pub fn label_components(mask: &[u8], width: usize, height: usize) -> (Vec<u32>, u32) {
    assert_eq!(
        mask.len(),
        width * height,
        "mask of {} pixels is not {width}×{height}",
        mask.len()
    );
    // First pass: provisional labels with union-find over the already visited neighbours
    // (west, north-west, north, north-east).
    let mut labels = vec![0u32; mask.len()];
    let mut parent: Vec<u32> = vec![0]; // parent[0] unused: label 0 is background
    fn root(parent: &mut [u32], mut a: u32) -> u32 {
        while parent[a as usize] != a {
            let up = parent[parent[a as usize] as usize];
            parent[a as usize] = up; // path halving
            a = up;
        }
        a
    }
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if mask[i] == 0 {
                continue;
            }
            let mut label = 0u32;
            let mut join = |other: u32, parent: &mut Vec<u32>| {
                if other == 0 {
                    return;
                }
                if label == 0 {
                    label = other;
                } else {
                    let (a, b) = (root(parent, label), root(parent, other));
                    if a != b {
                        let (lo, hi) = (a.min(b), a.max(b));
                        parent[hi as usize] = lo;
                    }
                }
            };
            if x > 0 {
                join(labels[i - 1], &mut parent);
            }
            if y > 0 {
                let up = i - width;
                if x > 0 {
                    join(labels[up - 1], &mut parent);
                }
                join(labels[up], &mut parent);
                if x + 1 < width {
                    join(labels[up + 1], &mut parent);
                }
            }
            if label == 0 {
                label = u32::try_from(parent.len()).expect("fewer than 2^32 labels");
                parent.push(label);
            }
            labels[i] = label;
        }
    }
    // Second pass: roots renumbered 1.. in the order they are first met (a root is always
    // the smallest provisional label of its set, met before the others).
    let mut final_of = vec![0u32; parent.len()];
    let mut count = 0u32;
    for label in &mut labels {
        if *label != 0 {
            let r = root(&mut parent, *label) as usize;
            if final_of[r] == 0 {
                count += 1;
                final_of[r] = count;
            }
            *label = final_of[r];
        }
    }
    (labels, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A `width`×`height` mask of the union of `disks` `(cx, cy, r)`: pixels with
    /// `(x − cx)² + (y − cy)² ≤ r²`.
    fn disks(width: usize, height: usize, disks: &[(i64, i64, i64)]) -> Vec<u8> {
        let mut m = vec![0u8; width * height];
        for y in 0..height {
            for x in 0..width {
                let inside = disks.iter().any(|&(cx, cy, r)| {
                    let (dx, dy) = (x as i64 - cx, y as i64 - cy);
                    dx * dx + dy * dy <= r * r
                });
                m[y * width + x] = u8::from(inside);
            }
        }
        m
    }

    fn areas(labels: &[u32], count: u32) -> Vec<u64> {
        let mut a = vec![0u64; count as usize];
        for &l in labels {
            if l != 0 {
                a[l as usize - 1] += 1;
            }
        }
        a
    }

    #[test]
    fn two_touching_disks_are_two_nuclei() {
        // Radii 12 (centre (50, 30)) and 10 (centre (30, 30)), centres 20 px apart: the
        // disks overlap in a lens of 11 pixels. Lattice points in a disk of radius r:
        // N(10) = 317, N(12) = 441, so the blob has 317 + 441 − 11 = 747 pixels. Each
        // nucleus keeps its own disk but for its share of the lens: at most 11 px less.
        let (w, h) = (80, 60);
        let m = disks(w, h, &[(30, 30, 10), (50, 30, 12)]);
        assert_eq!(m.iter().filter(|&&v| v != 0).count(), 747);
        let (single, one) = label_components(&m, w, h);
        assert_eq!(one, 1, "as components, the disks are one object");
        assert_eq!(single[30 * w + 30], 1);

        let (labels, count) = separate(&m, w, h, &SeparationParams::default());
        assert_eq!(count, 2);
        // The radius-12 disk starts higher (row 18 against 20): it is object 1.
        assert_eq!(labels[30 * w + 50], 1);
        assert_eq!(labels[30 * w + 30], 2);
        let a = areas(&labels, count);
        assert_eq!(
            a[0] + a[1],
            747,
            "every pixel of the blob is labelled: {a:?}"
        );
        assert!((430..=441).contains(&a[0]), "radius 12: {a:?}");
        assert!((306..=317).contains(&a[1]), "radius 10: {a:?}");
        // The split is a clean cut: every pixel of a disk away from the lens is its own.
        for y in 0..h {
            for x in 0..w {
                let d = |cx: i64, r: i64| {
                    let (dx, dy) = (x as i64 - cx, y as i64 - 30);
                    dx * dx + dy * dy <= r * r
                };
                if d(30, 10) && !d(50, 13) {
                    assert_eq!(labels[y * w + x], 2, "({x}, {y})");
                }
                if d(50, 12) && !d(30, 11) {
                    assert_eq!(labels[y * w + x], 1, "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn a_single_disk_stays_one_nucleus() {
        let (w, h) = (50, 40);
        let m = disks(w, h, &[(24, 20, 15)]);
        let (labels, count) = separate(&m, w, h, &SeparationParams::default());
        assert_eq!(count, 1);
        assert_eq!(areas(&labels, count), vec![709], "N(15) = 709");
        assert!(labels.iter().zip(&m).all(|(&l, &v)| (l != 0) == (v != 0)));
    }

    #[test]
    fn empty_masks_have_no_objects() {
        let params = SeparationParams::default();
        assert_eq!(separate(&[0; 12], 4, 3, &params), (vec![0; 12], 0));
        assert_eq!(separate(&[], 0, 0, &params), (vec![], 0));
        assert_eq!(separate(&[], 0, 5, &params), (vec![], 0));
    }

    #[test]
    fn a_full_mask_is_one_object() {
        // 12×10: above the default speck size.
        let (labels, count) = separate(&[1; 120], 12, 10, &SeparationParams::default());
        assert_eq!((labels, count), (vec![1; 120], 1));
    }

    fn brute_force_distance(mask: &[u8], width: usize, height: usize) -> Vec<f32> {
        let background: Vec<(i64, i64)> = (0..width * height)
            .filter(|&i| mask[i] == 0)
            .map(|i| ((i % width) as i64, (i / width) as i64))
            .collect();
        (0..width * height)
            .map(|i| {
                let (x, y) = ((i % width) as i64, (i / width) as i64);
                let best = background
                    .iter()
                    .map(|&(bx, by)| (bx - x) * (bx - x) + (by - y) * (by - y))
                    .min();
                match best {
                    Some(d2) => (d2 as f64).sqrt() as f32,
                    None => (width + height) as f32,
                }
            })
            .collect()
    }

    #[test]
    fn distance_transform_is_exact() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(24);
        for (w, h) in [(1, 1), (1, 9), (9, 1), (17, 13), (40, 31)] {
            for density in [0.0, 0.02, 0.3, 0.7, 0.97, 1.0] {
                let m: Vec<u8> = (0..w * h)
                    .map(|_| u8::from(rng.random_bool(density)))
                    .collect();
                assert_eq!(
                    distance_transform(&m, w, h),
                    brute_force_distance(&m, w, h),
                    "{w}×{h} at density {density}"
                );
            }
        }
        // A lone background pixel: every distance is measured to it.
        let mut m = vec![1u8; 25];
        m[0] = 0;
        let d = distance_transform(&m, 5, 5);
        assert_eq!(d[24], (32f32).sqrt());
        assert_eq!(d[4], 4.0);
    }

    #[test]
    fn h_maxima_keep_only_peaks_deep_enough() {
        // One row: peaks 5 (x = 1) and 4.5 (x = 5) joined by a saddle at 3.8, and a peak
        // 4 (x = 9) whose saddle to the rest is 2. With h = 1 the 4.5 peak (0.7 above its
        // saddle) merges into the 5 peak; the 4 peak (2 above its saddle) stays. With
        // h = 3 only the top remains; a separate component always keeps its top.
        let values = [
            4.0, 5.0, 4.0, 3.8, 4.2, 4.5, 4.2, 2.0, 3.0, 4.0, 3.0, 0.0, 0.5,
        ];
        let mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1];
        let at = |h: f32| h_maxima(&values, &mask, values.len(), 1, h);
        assert_eq!(at(1.0), vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(at(0.5), vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(at(3.0), vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // A plateau top is marked whole; paths are 8-connected (the diagonal joins the
        // lower peak at (2, 0) to the top at (0, 2) through a saddle of 1.5).
        #[rustfmt::skip]
        let values = [
            0.0, 0.0, 2.0,
            0.0, 1.5, 0.0,
            3.0, 3.0, 0.0,
        ];
        let mask = [0, 0, 1, 0, 1, 0, 1, 1, 0];
        assert_eq!(
            h_maxima(&values, &mask, 3, 3, 1.0),
            vec![0, 0, 0, 0, 0, 0, 1, 1, 0]
        );
        assert_eq!(
            h_maxima(&values, &mask, 3, 3, 0.25),
            vec![0, 0, 1, 0, 0, 0, 1, 1, 0]
        );
    }

    #[test]
    fn the_flood_labels_unreached_components_after_the_markers() {
        // Two components; only the right one has a marker (label 5).
        let mask = [1, 1, 0, 1, 1, 1];
        let values = [1.0, 2.0, 0.0, 1.0, 3.0, 1.0];
        let markers = [0, 0, 0, 0, 5, 0];
        assert_eq!(
            flood(&values, &mask, &markers, 6, 1),
            vec![6, 6, 0, 5, 5, 5]
        );
        // Markers outside the mask are ignored.
        assert_eq!(
            flood(&values, &mask, &[0, 0, 9, 0, 0, 0], 6, 1),
            vec![1, 1, 0, 2, 2, 2]
        );
    }

    #[test]
    fn the_watershed_line_follows_the_valley_and_ties_go_to_the_first_queued() {
        // A bar with peaks at both ends and the lowest value at x = 3: pixels left of it
        // go to the left marker, right of it to the right; the valley pixel itself is
        // reached from both sides at once and goes to the left one, queued first.
        let values = [5.0, 4.0, 3.0, 1.0, 3.0, 4.0, 5.0];
        let mask = [1; 7];
        let markers = [1, 0, 0, 0, 0, 0, 2];
        assert_eq!(
            flood(&values, &mask, &markers, 7, 1),
            vec![1, 1, 1, 1, 2, 2, 2]
        );
        let shifted = [5.0, 4.0, 3.0, 2.0, 1.0, 4.0, 5.0];
        assert_eq!(
            flood(&shifted, &mask, &markers, 7, 1),
            vec![1, 1, 1, 1, 2, 2, 2]
        );
    }

    #[test]
    fn small_objects_are_dropped_and_the_rest_renumbered_in_raster_order() {
        // A 2×2 speck above a disk, and a disk starting higher to the right.
        let (w, h) = (60, 40);
        let mut m = disks(w, h, &[(15, 22, 8), (42, 15, 10)]);
        for (x, y) in [(5, 1), (6, 1), (5, 2), (6, 2)] {
            m[y * w + x] = 1;
        }
        let keep_all = SeparationParams {
            min_area_px: 0,
            ..SeparationParams::default()
        };
        let (labels, count) = separate(&m, w, h, &keep_all);
        assert_eq!(count, 3);
        assert_eq!(labels[w + 5], 1, "the speck comes first in raster order");
        assert_eq!(labels[15 * w + 42], 2);
        assert_eq!(labels[22 * w + 15], 3);
        let (labels, count) = separate(&m, w, h, &SeparationParams::default());
        assert_eq!(count, 2);
        assert_eq!(labels[w + 5], 0, "4 px < 96 px: dropped");
        assert_eq!(labels[15 * w + 42], 1);
        assert_eq!(labels[22 * w + 15], 2);
        // Labels are 1..=count and first met in increasing order.
        let mut next = 1;
        for &l in &labels {
            assert!(l <= next, "label {l} before {next}");
            if l == next {
                next += 1;
            }
        }
        assert_eq!(next, count + 1);
    }

    #[test]
    fn separation_is_deterministic() {
        // Many touching disks of random sizes, twice.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (w, h) = (120, 90);
        let blobs: Vec<(i64, i64, i64)> = (0..40)
            .map(|_| {
                (
                    rng.random_range(0..w as i64),
                    rng.random_range(0..h as i64),
                    rng.random_range(3..12),
                )
            })
            .collect();
        let m = disks(w, h, &blobs);
        // Every object kept: determinism of the split, not the speck size, is tested.
        let params = SeparationParams {
            min_area_px: 0,
            ..SeparationParams::default()
        };
        let first = separate(&m, w, h, &params);
        let second = separate(&m, w, h, &params);
        assert_eq!(first, second);
        assert!(first.1 > label_components(&m, w, h).1);
    }

    #[test]
    fn parameters_scale_with_the_resolution() {
        assert_eq!(
            SeparationParams::at_mpp(MONUSEG_MPP),
            SeparationParams::default()
        );
        let at_20x = SeparationParams::at_mpp(0.5);
        assert_eq!(at_20x.sigma_px, 0.5);
        assert_eq!(at_20x.h_px, 0.25);
        assert_eq!(at_20x.min_area_px, 24, "96 / 4");
        assert_eq!(at_20x.large_area_px, 360, "1440 / 4");
        assert_eq!(at_20x.large_h_px, 0.1);
        assert_eq!(at_20x.cut_depth_px, 1.5);
        assert_eq!(at_20x.cut_min_part_px, 75, "300 / 4");
    }

    #[test]
    fn settings_written_before_the_concave_cuts_read_with_their_defaults() {
        let old = r#"{"sigma_px": 2.0, "h_px": 1.0, "min_area_px": 24,
            "large_area_px": 360, "large_h_px": 0.1}"#;
        let params: SeparationParams = serde_json::from_str(old).unwrap();
        assert_eq!(params.sigma_px, 2.0);
        assert_eq!(params.cut_depth_px, 3.0);
        assert_eq!(params.cut_min_part_px, 300);
        let text = serde_json::to_string(&SeparationParams::at_mpp(0.5)).unwrap();
        let back: SeparationParams = serde_json::from_str(&text).unwrap();
        assert_eq!(back, SeparationParams::at_mpp(0.5));
    }

    #[test]
    fn only_objects_above_the_large_area_split_at_the_shallower_depth() {
        // The blob of `two_touching_disks_are_two_nuclei` (747 px), with a marker depth
        // far deeper than its neck: one object.
        let (w, h) = (80, 60);
        let m = disks(w, h, &[(30, 30, 10), (50, 30, 12)]);
        let deep = SeparationParams {
            h_px: 20.0,
            large_area_px: 747,
            large_h_px: 0.5,
            // The large-object pass alone: the concave cuts would split this blob too.
            cut_min_part_px: u32::MAX,
            ..SeparationParams::default()
        };
        assert_eq!(separate(&m, w, h, &deep).1, 1, "747 px is not above 747");
        // One pixel more than the large area: split again at 0.5 px, exactly as a first
        // pass at that depth splits it.
        let large = SeparationParams {
            large_area_px: 746,
            ..deep
        };
        let (split, count) = separate(&m, w, h, &large);
        assert_eq!(count, 2);
        let shallow = SeparationParams {
            h_px: 0.5,
            large_area_px: u32::MAX,
            cut_min_part_px: u32::MAX,
            ..SeparationParams::default()
        };
        assert_eq!((split, count), separate(&m, w, h, &shallow));
    }
}
