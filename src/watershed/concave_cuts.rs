//! Step 6 of [`separate`](super::separate): cutting objects that are two nuclei along a
//! straight line between two deep dents of their outline.
//!
//! **What.** Nuclei are convex, so where two of them are pressed together along a wide front
//! the outline has a notch at each end of the front. The distance-transform watershed misses
//! such pairs when the front is nearly as wide as the nuclei: the inscribed radius barely dips
//! at the neck, so there is one peak, one marker and one object. This pass looks at the
//! outline instead: the concavity defects of the outer contour (the contour point farthest
//! inside each edge of its convex hull, if at least [`SeparationParams::cut_depth_px`] deep),
//! and the segments joining two of them that run inside the object, shortest relative to
//! the defects' depths first. The first segment that cuts the object into two solid parts of
//! at least [`SeparationParams::cut_min_part_px`] pixels each is taken, and each part is
//! tried again, up to [`MAX_DEPTH`] levels down.
//!
//! **Why, and what it buys.** On the 13 MoNuSeg training images with true instance maps
//! (`slidestream eval --mpp 0.25`, post-processed masks of a self-training model,
//! `final-s0`), the cuts lift AJI from 0.457 to 0.482, object F1 from 0.601 to 0.607 and
//! PQ from 0.425 to 0.429, both halves of the images gaining (AJI 0.483 → 0.493 on the
//! first 7, 0.427 → 0.469 on the other 6); pixel Dice is unchanged (a cut only relabels
//! pixels). The true masks go from AJI 0.912 to 0.919, the stain teacher's filled cut from
//! 0.432 to 0.461; the raw hematoxylin cut, all fragments, loses 0.005 (`cargo bench
//! --bench instances`). The rule was chosen in a Python replica (AJI 0.473 → 0.490 there).
//!
//! **One job.** It only splits one object at a time, given as a binary crop: every result
//! is computed from that object's own pixels in the coordinates of its bounding box, so it
//! does not depend on the object's neighbours or on where the image was cut into tiles
//! (`segment` relies on this to be seam-free). Pixels are never added or removed: every
//! pixel of the object ends up in exactly one part.

use super::SeparationParams;
use crate::convex_hull::convex_hull;
use std::collections::VecDeque;

/// Recursion limit: a blob of more than 2⁴ = 16 nuclei is left to the watershed's parts.
const MAX_DEPTH: u32 = 4;
/// Share of a cut's sample points that must lie in the object: a segment that leaves the
/// object crosses background, which is no neck between two nuclei.
const MIN_INSIDE: f64 = 0.9;
/// The cut is drawn this many px beyond both defects so that it crosses the outline even
/// where the deepest contour point sits a pixel inside a notch.
const EXTEND_PX: f64 = 3.0;
/// Both parts must fill at least this share of their convex hull: nuclei are convex, a cut
/// that leaves a ragged or crescent-shaped part is not between two nuclei.
const MIN_SOLIDITY: f64 = 0.8;
/// Background added around an object's bounding box: more than [`EXTEND_PX`], so the
/// extended cut and the contour never need the image beyond the object.
const PAD: usize = 6;
/// Contours of fewer points are too small to have two meaningful defects.
const MIN_CONTOUR: usize = 8;

/// The 8 neighbour steps `(dx, dy)` clockwise on screen (y down), from east.
const STEPS: [(i64, i64); 8] = [
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
];
/// Index in [`STEPS`] of west.
const WEST: usize = 4;

/// Pass 6 of [`separate`](super::separate): every object of `labels` of at least twice
/// `params.cut_min_part_px` pixels cut at its concavities (see the module docs), each on its
/// own crop. The first part keeps the object's label; the others get new labels above the
/// largest, which `drop_small` renumbers.
pub(super) fn cut_concave(
    mut labels: Vec<u32>,
    width: usize,
    params: &SeparationParams,
) -> Vec<u32> {
    let rules = Rules {
        depth: f64::from(params.cut_depth_px),
        min_part: u64::from(params.cut_min_part_px),
    };
    let objects = super::objects(&labels, width);
    let mut next = (objects.len() - 1) as u32;
    for (label, object) in objects.iter().enumerate().skip(1) {
        if object.area < 2 * rules.min_part {
            continue;
        }
        let (w, h) = (
            object.x1 - object.x0 + 1 + 2 * PAD,
            object.y1 - object.y0 + 1 + 2 * PAD,
        );
        // Crop pixel (x, y) is image pixel (x0 + x − PAD, y0 + y − PAD).
        let at = |x: usize, y: usize| (object.y0 + y - PAD) * width + object.x0 + x - PAD;
        let mut crop = vec![false; w * h];
        for y in PAD..h - PAD {
            for x in PAD..w - PAD {
                crop[y * w + x] = labels[at(x, y)] == label as u32;
            }
        }
        let (parts, count) = split(&crop, w, h, &rules, 0);
        if count < 2 {
            continue;
        }
        for (i, &part) in parts.iter().enumerate() {
            if part > 1 {
                labels[at(i % w, i / w)] = next + part - 1;
            }
        }
        next += count - 1;
    }
    labels
}

/// The thresholds of one pass, in pixels of the mask.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// Least depth of a concavity defect, px.
    depth: f64,
    /// Least pixels of each part of a cut.
    min_part: u64,
}

/// The parts of `object` (a `width`×`height` crop, the object's pixels `true`): labels
/// `1..=count` on its pixels, 0 elsewhere, and `count` (1: not cut). `depth` levels of
/// cuts have been made above it.
fn split(
    object: &[bool],
    width: usize,
    height: usize,
    rules: &Rules,
    depth: u32,
) -> (Vec<u32>, u32) {
    let whole = || (object.iter().map(|&b| u32::from(b)).collect(), 1);
    let area = object.iter().filter(|&&b| b).count() as u64;
    if depth >= MAX_DEPTH || area < 2 * rules.min_part {
        return whole();
    }
    let contour = outer_contour(object, width, height);
    if contour.len() < MIN_CONTOUR {
        return whole();
    }
    let defects = defects(&contour, rules.depth);
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for i in 0..defects.len() {
        for j in i + 1..defects.len() {
            let (p, q) = (defects[i].0, defects[j].0);
            let length = distance(p, q);
            if length < 1.0 || inside_share(object, width, height, p, q) < MIN_INSIDE {
                continue;
            }
            candidates.push((length / (defects[i].1 + defects[j].1), i, j));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    for &(_, i, j) in &candidates {
        let Some(parts) = cut(object, width, height, defects[i].0, defects[j].0) else {
            continue;
        };
        let first: Vec<bool> = parts.iter().map(|&p| p == 1).collect();
        let second: Vec<bool> = parts.iter().map(|&p| p == 2).collect();
        let acceptable = |part: &[bool]| {
            let area = part.iter().filter(|&&b| b).count() as u64;
            area >= rules.min_part && solidity(part, width) >= MIN_SOLIDITY
        };
        if !acceptable(&first) || !acceptable(&second) {
            continue;
        }
        let (mut labels, before) = split(&first, width, height, rules, depth + 1);
        let (more, after) = split(&second, width, height, rules, depth + 1);
        for (l, &m) in labels.iter_mut().zip(&more) {
            if m != 0 {
                *l = before + m;
            }
        }
        return (labels, before + after);
    }
    whole()
}

/// Euclidean distance between two points.
fn distance(p: (i64, i64), q: (i64, i64)) -> f64 {
    ((p.0 - q.0) as f64).hypot((p.1 - q.1) as f64)
}

/// The outer boundary of the largest (by boundary length) 8-connected component of
/// `object`, as the ordered closed sequence of its boundary pixels `(x, y)`, clockwise on
/// screen from the component's first pixel in raster order (Moore-neighbour tracing). A
/// pixel where the boundary passes twice (a one-pixel neck) appears twice. Holes are
/// ignored.
fn outer_contour(object: &[bool], width: usize, height: usize) -> Vec<(i64, i64)> {
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && object[y as usize * width + x as usize]
    };
    let mask: Vec<u8> = object.iter().map(|&b| u8::from(b)).collect();
    let (labels, count) = super::label_components(&mask, width, height);
    // Each component's first pixel in raster order (its west neighbour is background), and
    // its area.
    let mut first = vec![usize::MAX; count as usize + 1];
    let mut area = vec![0usize; count as usize + 1];
    for (i, &l) in labels.iter().enumerate().filter(|&(_, &l)| l != 0) {
        first[l as usize] = first[l as usize].min(i);
        area[l as usize] += 1;
    }
    let mut best: Vec<(i64, i64)> = Vec::new();
    for label in 1..=count as usize {
        let start = ((first[label] % width) as i64, (first[label] / width) as i64);
        let contour = trace(&inside, start, area[label]);
        if contour.len() > best.len() {
            best = contour;
        }
    }
    best
}

/// Moore-neighbour tracing from `start`, a pixel whose west neighbour is background, of a
/// component of `area` pixels. From each boundary pixel the neighbours are searched
/// clockwise from the background pixel it was entered next to; the trace ends when it is
/// about to leave the start pixel the way it first did (the move from a pixel to the next
/// determines the rest, so the boundary is complete).
fn trace(inside: &impl Fn(i64, i64) -> bool, start: (i64, i64), area: usize) -> Vec<(i64, i64)> {
    let step_index = |dx: i64, dy: i64| {
        STEPS
            .iter()
            .position(|&s| s == (dx, dy))
            .expect("consecutive neighbours of a pixel are neighbours")
    };
    // From pixel p entered next to background neighbour `back`: the next boundary pixel
    // and the background neighbour it is entered next to.
    let next = |p: (i64, i64), back: usize| {
        (1..=8).find_map(|k| {
            let (dx, dy) = STEPS[(back + k) % 8];
            let q = (p.0 + dx, p.1 + dy);
            inside(q.0, q.1).then(|| {
                let (bx, by) = STEPS[(back + k - 1) % 8];
                (q, step_index(p.0 + bx - q.0, p.1 + by - q.1))
            })
        })
    };
    let mut contour = vec![start];
    let Some(first) = next(start, WEST) else {
        return contour; // a lone pixel
    };
    let (mut p, mut back) = first;
    // Every pixel is passed at most 4 times; the bound only guards against a bug.
    while contour.len() <= 4 * area {
        let (q, b) = next(p, back).expect("a pixel entered from a neighbour has one");
        if p == start && q == first.0 {
            break;
        }
        contour.push(p);
        (p, back) = (q, b);
    }
    contour
}

/// Area of the polygon `vertices` (in order), by the shoelace formula.
fn polygon_area(points: &[(i64, i64)], vertices: &[usize]) -> f64 {
    let twice: i64 = (0..vertices.len())
        .map(|k| {
            let (a, b) = (
                points[vertices[k]],
                points[vertices[(k + 1) % vertices.len()]],
            );
            a.0 * b.1 - a.1 * b.0
        })
        .sum();
    twice.abs() as f64 / 2.0
}

/// The concavity defects of a closed `contour` at least `min_depth` deep: for each edge
/// of its convex hull that skips contour points, the skipped point farthest from the
/// edge's line (the first of equals) and that distance.
fn defects(contour: &[(i64, i64)], min_depth: f64) -> Vec<((i64, i64), f64)> {
    let n = contour.len();
    let mut vertices = convex_hull(contour);
    if vertices.len() < 3 {
        return Vec::new();
    }
    vertices.sort_unstable();
    let mut out = Vec::new();
    for k in 0..vertices.len() {
        let a = vertices[k];
        let b = vertices.get(k + 1).copied().unwrap_or(vertices[0] + n);
        if b - a < 2 {
            continue;
        }
        let p0 = contour[a];
        let (vx, vy) = (contour[b % n].0 - p0.0, contour[b % n].1 - p0.1);
        let length = (vx as f64).hypot(vy as f64);
        if length < 1e-6 {
            continue;
        }
        let mut deepest: Option<((i64, i64), f64)> = None;
        for &q in (a + 1..b).map(|i| &contour[i % n]) {
            let depth = (vx * (q.1 - p0.1) - vy * (q.0 - p0.0)).abs() as f64 / length;
            if deepest.is_none_or(|(_, d)| depth > d) {
                deepest = Some((q, depth));
            }
        }
        if let Some((q, depth)) = deepest.filter(|&(_, d)| d >= min_depth) {
            out.push((q, depth));
        }
    }
    out
}

/// `v` rounded to the nearest integer, halves up (the same for every translation).
fn round(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// The share of `max(⌊2L⌋, 2)` evenly spaced points of the segment `p`–`q` (L its length),
/// rounded to pixels, that lie in `object`.
fn inside_share(object: &[bool], width: usize, height: usize, p: (i64, i64), q: (i64, i64)) -> f64 {
    let samples = ((2.0 * distance(p, q)).floor() as usize).max(2);
    let hits = (0..samples)
        .filter(|&s| {
            let t = s as f64 / (samples - 1) as f64;
            let x = round(p.0 as f64 + t * (q.0 - p.0) as f64).clamp(0, width as i64 - 1);
            let y = round(p.1 as f64 + t * (q.1 - p.1) as f64).clamp(0, height as i64 - 1);
            object[y as usize * width + x as usize]
        })
        .count();
    hits as f64 / samples as f64
}

/// The pixels of the 8-connected Bresenham line from `a` to `b`, both included.
fn line(a: (i64, i64), b: (i64, i64)) -> Vec<(i64, i64)> {
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
    let (mut x, mut y, mut err) = (a.0, a.1, dx + dy);
    let mut out = Vec::with_capacity((dx - dy + 1) as usize);
    loop {
        out.push((x, y));
        if (x, y) == b {
            return out;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// `object` cut along the segment `p`–`q` extended by [`EXTEND_PX`] at both ends: `None`
/// if the cut leaves it in one 4-connected piece, else labels 1 and 2 on the two largest
/// pieces (ties: the first in raster order first), every other pixel of the object (the
/// cut, smaller slivers) given to the part a breadth-first search through the object
/// reaches it from first, 0 off the object.
fn cut(
    object: &[bool],
    width: usize,
    height: usize,
    p: (i64, i64),
    q: (i64, i64),
) -> Option<Vec<u8>> {
    let length = distance(p, q).max(1e-6);
    let (ux, uy) = ((q.0 - p.0) as f64 / length, (q.1 - p.1) as f64 / length);
    let from = (
        round(p.0 as f64 - ux * EXTEND_PX),
        round(p.1 as f64 - uy * EXTEND_PX),
    );
    let to = (
        round(q.0 as f64 + ux * EXTEND_PX),
        round(q.1 as f64 + uy * EXTEND_PX),
    );
    let mut rest = object.to_vec();
    for (x, y) in line(from, to) {
        if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
            rest[y as usize * width + x as usize] = false;
        }
    }
    let (pieces, count) = components_4(&rest, width, height);
    if count < 2 {
        return None;
    }
    let mut sizes = vec![0u64; count as usize + 1];
    for &l in &pieces {
        sizes[l as usize] += 1;
    }
    // Pieces are numbered in raster order of their first pixel; a stable sort keeps that
    // order among equals.
    let mut by_size: Vec<u32> = (1..=count).collect();
    by_size.sort_by_key(|&l| std::cmp::Reverse(sizes[l as usize]));
    let (one, two) = (by_size[0], by_size[1]);
    let mut parts: Vec<u8> = pieces
        .iter()
        .map(|&l| match l {
            l if l == one => 1,
            l if l == two => 2,
            _ => 0,
        })
        .collect();
    let mut queue: VecDeque<usize> = (0..parts.len()).filter(|&i| parts[i] != 0).collect();
    while let Some(i) = queue.pop_front() {
        let (x, y) = ((i % width) as i64, (i / width) as i64);
        for (dx, dy) in STEPS {
            let (nx, ny) = (x + dx, y + dy);
            if nx < 0 || ny < 0 || nx as usize >= width || ny as usize >= height {
                continue;
            }
            let j = ny as usize * width + nx as usize;
            if object[j] && parts[j] == 0 {
                parts[j] = parts[i];
                queue.push_back(j);
            }
        }
    }
    // Pixels no part reaches (only in an object of several 8-connected components): the
    // first part's.
    for (part, &o) in parts.iter_mut().zip(object) {
        if o && *part == 0 {
            *part = 1;
        }
    }
    Some(parts)
}

/// 4-connected components of `mask`: labels `1..=count` in the raster order of their first
/// pixel, 0 off the mask, and `count`.
fn components_4(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; mask.len()];
    let mut count = 0;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            let around = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then(|| i + 1),
                (y > 0).then(|| i - width),
                (y + 1 < height).then(|| i + width),
            ];
            for j in around.into_iter().flatten() {
                if mask[j] && labels[j] == 0 {
                    labels[j] = count;
                    stack.push(j);
                }
            }
        }
    }
    (labels, count)
}

/// Pixels of `part` over the area of the convex hull of their corners (1 for fewer than 3
/// pixels): 1 for a convex shape up to the jagged outline, less the more it is dented.
fn solidity(part: &[bool], width: usize) -> f64 {
    let area = part.iter().filter(|&&b| b).count();
    if area < 3 {
        return 1.0;
    }
    // The hull of all pixel corners is the hull of the outer corners of each row's ends.
    let mut corners = Vec::new();
    for (y, row) in part.chunks_exact(width).enumerate() {
        let (Some(x0), Some(x1)) = (row.iter().position(|&b| b), row.iter().rposition(|&b| b))
        else {
            continue;
        };
        let (x0, x1, y) = (x0 as i64, x1 as i64 + 1, y as i64);
        corners.extend([(x0, y), (x0, y + 1), (x1, y), (x1, y + 1)]);
    }
    let vertices = convex_hull(&corners);
    area as f64 / polygon_area(&corners, &vertices)
}

#[cfg(test)]
mod tests {
    use super::super::{separate, SeparationParams};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A `width`×`height` mask of the union of `ellipses` `(cx, cy, a, b)`: pixels with
    /// `((x − cx)/a)² + ((y − cy)/b)² ≤ 1`.
    fn ellipses(width: usize, height: usize, ellipses: &[(f64, f64, f64, f64)]) -> Vec<u8> {
        (0..width * height)
            .map(|i| {
                let (x, y) = ((i % width) as f64, (i / width) as f64);
                u8::from(
                    ellipses.iter().any(|&(cx, cy, a, b)| {
                        ((x - cx) / a).powi(2) + ((y - cy) / b).powi(2) <= 1.0
                    }),
                )
            })
            .collect()
    }

    fn area(mask: &[u8]) -> u64 {
        mask.iter().filter(|&&m| m != 0).count() as u64
    }

    fn areas(labels: &[u32], count: u32) -> Vec<u64> {
        let mut a = vec![0u64; count as usize];
        for &l in labels.iter().filter(|&&l| l != 0) {
            a[l as usize - 1] += 1;
        }
        a
    }

    /// The pass alone on one object: the crop of `mask` around its pixels, split.
    fn split_mask(mask: &[u8], width: usize, rules: &Rules) -> (Vec<u32>, u32) {
        let crop: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        split(&crop, width, mask.len() / width, rules, 0)
    }

    const DEFAULT_RULES: Rules = Rules {
        depth: 3.0,
        min_part: 300,
    };

    /// Two flat ellipses (semi-axes 25 and 10 px) pressed together along their long sides,
    /// centres 16 px apart: one blob with a notch at each end of the 30 px front, whose
    /// inscribed radius (15 px at the centre) has no dip for a second marker.
    fn pressed_pair(width: usize, height: usize, cx: f64, cy: f64) -> Vec<u8> {
        ellipses(
            width,
            height,
            &[(cx, cy - 8.0, 25.0, 10.0), (cx, cy + 8.0, 25.0, 10.0)],
        )
    }

    #[test]
    fn nuclei_pressed_along_a_wide_front_are_cut_apart() {
        let (w, h) = (80, 60);
        let m = pressed_pair(w, h, 40.0, 30.0);
        let total = area(&m);
        // Without the pass (no part can be large enough), the watershed keeps one object.
        let without = SeparationParams {
            cut_min_part_px: u32::MAX,
            ..SeparationParams::default()
        };
        assert_eq!(
            separate(&m, w, h, &without).1,
            1,
            "the watershed alone merges them"
        );

        let (labels, count) = separate(&m, w, h, &SeparationParams::default());
        assert_eq!(count, 2);
        let a = areas(&labels, count);
        assert_eq!(a[0] + a[1], total, "every pixel is kept: {a:?}");
        for &part in &a {
            let half = total as f64 / 2.0;
            assert!(
                (part as f64 - half).abs() < 0.03 * half,
                "{a:?} of {total}: not halves"
            );
        }
        // The cut runs along the front: away from it, each half is one nucleus.
        for y in 0..h {
            for x in 0..w {
                let l = labels[y * w + x];
                if l != 0 && y <= 28 {
                    assert_eq!(l, 1, "({x}, {y})");
                }
                if l != 0 && y >= 32 {
                    assert_eq!(l, 2, "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn convex_nuclei_are_not_cut() {
        let (w, h) = (90, 60);
        for shape in [
            ellipses(w, h, &[(45.0, 30.0, 20.0, 20.0)]),
            ellipses(w, h, &[(45.0, 30.0, 32.0, 14.0)]),
            ellipses(w, h, &[(45.0, 30.0, 40.0, 9.0)]),
        ] {
            assert!(area(&shape) >= 600, "large enough to be tried");
            assert_eq!(split_mask(&shape, w, &DEFAULT_RULES).1, 1);
            assert_eq!(separate(&shape, w, h, &SeparationParams::default()).1, 1);
        }
    }

    #[test]
    fn objects_below_twice_the_least_part_are_not_cut() {
        // A dumbbell: two disks of radius 7, 2 px apart, joined by a bar 5 px thick.
        let (w, h) = (50, 30);
        let mut m = ellipses(w, h, &[(15.0, 15.0, 7.0, 7.0), (31.0, 15.0, 7.0, 7.0)]);
        for y in 13..=17 {
            for x in 15..=31 {
                m[y * w + x] = 1;
            }
        }
        assert!(area(&m) < 400, "{}", area(&m));
        assert_eq!(split_mask(&m, w, &DEFAULT_RULES).1, 1);
        // With parts allowed that small it is cut: the area alone kept it whole.
        let small = Rules {
            min_part: 100,
            ..DEFAULT_RULES
        };
        let (parts, count) = split_mask(&m, w, &small);
        assert_eq!(count, 2);
        assert_ne!(parts[15 * w + 15], parts[15 * w + 31]);
    }

    #[test]
    fn the_cut_does_not_depend_on_where_the_object_is() {
        let (w, h) = (200, 150);
        let reference = pressed_pair(w, h, 40.0, 30.0);
        let (labels, count) = separate(&reference, w, h, &SeparationParams::default());
        assert_eq!(count, 2);
        // Moved by whole pixels, with another nucleus close by (not touching) and the
        // image cut right at the object's edge: the same partition, moved.
        for (dx, dy, other) in [(37usize, 51usize, true), (101, 88, false), (14, 0, true)] {
            let mut moved = vec![0u8; w * h];
            let mut expected = vec![0u32; w * h];
            for y in 0..h - dy {
                for x in 0..w - dx {
                    moved[(y + dy) * w + x + dx] = reference[y * w + x];
                    expected[(y + dy) * w + x + dx] = labels[y * w + x];
                }
            }
            if other {
                let near = ellipses(w, h, &[(dx as f64 + 40.0, dy as f64 + 62.0, 12.0, 8.0)]);
                for (m, n) in moved.iter_mut().zip(near) {
                    *m |= n;
                }
            }
            let height = if dy == 0 { 49 } else { h };
            let (got, _) = separate(
                &moved[..height * w],
                w,
                height,
                &SeparationParams::default(),
            );
            let at = |x: usize, y: usize| (y + dy) * w + x + dx;
            // Labels may be renumbered: compare the partition of the moved object.
            let mut map = std::collections::BTreeMap::new();
            for y in 0..49 {
                for x in 0..w - dx {
                    let (e, g) = (expected[at(x, y)], got[at(x, y)]);
                    if e != 0 {
                        assert_eq!(*map.entry(e).or_insert(g), g, "moved by ({dx}, {dy})");
                    }
                }
            }
            assert_eq!(map.len(), 2);
            assert_ne!(map[&1], map[&2]);
        }
    }

    #[test]
    fn cuts_are_deterministic_and_keep_every_pixel() {
        // Random nuclei, some pressed together in pairs and all free to overlap, twice;
        // and the pass alone on the whole mask (its largest blob), twice.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(37);
        let (w, h) = (240, 180);
        let mut shapes: Vec<(f64, f64, f64, f64)> = Vec::new();
        for k in 0..30 {
            let (cx, cy) = (
                rng.random_range(0.0..w as f64),
                rng.random_range(0.0..h as f64),
            );
            let (a, b) = (rng.random_range(14.0..26.0), rng.random_range(7.0..12.0));
            shapes.push((cx, cy, a, b));
            if k % 3 == 0 {
                shapes.push((cx + rng.random_range(-3.0..3.0), cy + 1.6 * b, a, b));
            }
        }
        let m = ellipses(w, h, &shapes);
        let params = SeparationParams {
            min_area_px: 0,
            ..SeparationParams::default()
        };
        let first = separate(&m, w, h, &params);
        assert_eq!(first, separate(&m, w, h, &params));
        assert!(first.0.iter().zip(&m).all(|(&l, &v)| (l != 0) == (v != 0)));
        let without = SeparationParams {
            cut_min_part_px: u32::MAX,
            ..params
        };
        assert!(first.1 > separate(&m, w, h, &without).1, "some blob is cut");
        let crop = split_mask(&m, w, &DEFAULT_RULES);
        assert_eq!(crop, split_mask(&m, w, &DEFAULT_RULES));
    }

    /// Ragged masks (touching blobs with pixels flipped at random: one-pixel necks, holes,
    /// diagonal links, specks, objects on the crop's edge), cut with small parts allowed:
    /// every pixel ends in exactly one part, every part label is used, nothing panics.
    #[test]
    fn ragged_masks_are_cut_into_parts_that_cover_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let rules = Rules {
            depth: 2.0,
            min_part: 40,
        };
        let mut cut = 0;
        for round in 0..300 {
            let (w, h) = (rng.random_range(20..70), rng.random_range(20..70));
            let mut blobs: Vec<(f64, f64, f64, f64)> = Vec::new();
            for _ in 0..rng.random_range(1..5) {
                let (a, b) = (rng.random_range(8.0..16.0), rng.random_range(4.0..8.0));
                let (cx, cy) = (
                    rng.random_range(0.0..w as f64),
                    rng.random_range(0.0..h as f64),
                );
                blobs.push((cx, cy, a, b));
                // Often a second one pressed against it, as in the cases the cuts are for.
                if rng.random_bool(0.6) {
                    blobs.push((cx + rng.random_range(-3.0..3.0), cy + 1.6 * b, a, b));
                }
            }
            let flip = rng.random_range(0.0..0.05);
            let mask: Vec<u8> = ellipses(w, h, &blobs)
                .into_iter()
                .map(|m| if rng.random_bool(flip) { 1 - m } else { m })
                .collect();
            let (labels, count) = split_mask(&mask, w, &rules);
            assert!(
                labels
                    .iter()
                    .zip(&mask)
                    .all(|(&l, &m)| (l != 0) == (m != 0)),
                "round {round}: a pixel was added or lost"
            );
            assert!(
                areas(&labels, count).iter().all(|&a| a > 0),
                "round {round}: an empty part"
            );
            cut += usize::from(count > 1);
        }
        assert!(
            cut >= 5,
            "only {cut} of 300 masks were cut: the cuts were hardly tried"
        );
    }

    #[test]
    fn the_contour_is_the_ordered_outer_boundary() {
        // A 3×3 square with a hole in the middle, in a 5×5 crop: 8 boundary pixels,
        // clockwise from the top-left one; the hole is ignored.
        let mut m = vec![false; 25];
        for y in 1..4 {
            for x in 1..4 {
                m[y * 5 + x] = (x, y) != (2, 2);
            }
        }
        assert_eq!(
            outer_contour(&m, 5, 5),
            vec![
                (1, 1),
                (2, 1),
                (3, 1),
                (3, 2),
                (3, 3),
                (2, 3),
                (1, 3),
                (1, 2)
            ]
        );
        // A diagonal pair passes its pixels once each; a lone pixel is its own contour.
        let mut m = vec![false; 9];
        m[0] = true;
        m[4] = true;
        assert_eq!(outer_contour(&m, 3, 3), vec![(0, 0), (1, 1)]);
        assert_eq!(outer_contour(&[false, true], 2, 1), vec![(1, 0)]);
        // The larger of two components.
        let m = [true, false, true, true, true];
        assert_eq!(
            outer_contour(&m, 5, 1),
            vec![(2, 0), (3, 0), (4, 0), (3, 0)]
        );
    }

    #[test]
    fn defects_are_the_deepest_points_under_each_hull_edge() {
        // A U: 9 wide, 7 high, a notch 3 wide and 5 deep cut from the top middle.
        let (w, h) = (11, 9);
        let mut m = vec![false; w * h];
        for y in 1..8 {
            for x in 1..10 {
                m[y * w + x] = !((4..=6).contains(&x) && y <= 5);
            }
        }
        let contour = outer_contour(&m, w, h);
        let found = defects(&contour, 1.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let ((x, y), depth) = found[0];
        assert_eq!(y, 6);
        assert!((4..=6).contains(&x));
        assert_eq!(depth, 5.0);
        assert!(defects(&contour, 5.5).is_empty());
    }

    #[test]
    fn solidity_is_one_for_a_rectangle_and_less_for_an_l() {
        let w = 6;
        let rectangle = vec![true; 24];
        assert_eq!(solidity(&rectangle, w), 1.0);
        // An L of 3 + 3 + 3 + 6 pixels: hull of its corners is 6×4 less a triangle.
        let mut l = vec![false; 24];
        for y in 0..4 {
            for x in 0..w {
                l[y * w + x] = x == 0 || y == 3;
            }
        }
        let s = solidity(&l, w);
        assert!((s - 9.0 / (24.0 - 7.5)).abs() < 1e-9, "{s}");
    }
}
