//! Each object of the stain cut re-cut at its own level: half-way between the object's
//! density and that of its surroundings.
//!
//! One Otsu cut per crop puts every nucleus's edge at the same density. A dark nucleus's
//! edge then lies outside its true contour (the blurred halo of a dark object crosses the
//! cut far out), and a pale nucleus's inside it (its paler parts fall below the cut). The
//! half-way level between an object's median density and the median of a ring just outside
//! it is where its own edge is steepest, whatever its stain; on the 30 MoNuSeg images it
//! lifts the teacher's Dice from 0.768 to 0.777, without labels
//! (`cargo bench --bench label_free_baselines`).

use crate::stain_recut::taxicab_steps;
use crate::watershed::{self, label_components, Object};

/// How far (4-neighbour steps) an object's edge may move out or in: about 0.75 µm at 40×.
const REACH_PX: u32 = 3;
/// The ring that stands for an object's surroundings: from just past its reach to twice it.
const RING_PX: std::ops::RangeInclusive<u32> = (REACH_PX + 1)..=(2 * REACH_PX);
/// Fewer ring pixels than this (an object hemmed in by others) say nothing about the
/// background: the object keeps the crop's cut.
const MIN_RING_PX: usize = 5;

/// The cut each pixel of a crop is held to: within [`REACH_PX`] of an object of `objects`
/// (nonzero = object), half-way between that object's median `density` and its ring's (the
/// lowest such level where objects' reaches overlap); `crop_cut` everywhere else.
pub fn object_cuts(
    density: &[f32],
    objects: &[u8],
    width: usize,
    height: usize,
    crop_cut: f32,
) -> Vec<f32> {
    let (labels, _) = label_components(objects, width, height);
    let mut cuts = vec![f32::INFINITY; density.len()];
    for (label, box_) in object_boxes(&labels, width) {
        let window = box_.grown(2 * REACH_PX as usize, width, height);
        let object: Vec<u8> = window
            .indices(width)
            .map(|i| u8::from(labels[i] == label))
            .collect();
        let steps = taxicab_steps(&object, window.width(), window.height(), *RING_PX.end() + 1);
        let (mut inside, mut ring) = (Vec::new(), Vec::new());
        for (i, &step) in window.indices(width).zip(&steps) {
            if step == 0 {
                inside.push(density[i]);
            } else if RING_PX.contains(&step) && labels[i] == 0 {
                ring.push(density[i]);
            }
        }
        if ring.len() < MIN_RING_PX {
            continue;
        }
        let level = 0.5 * (median(&mut inside) + median(&mut ring));
        for (i, &step) in window.indices(width).zip(&steps) {
            if step <= REACH_PX {
                cuts[i] = cuts[i].min(level);
            }
        }
    }
    for cut in &mut cuts {
        if cut.is_infinite() {
            *cut = crop_cut;
        }
    }
    cuts
}

/// A box of crop pixels, `x1`/`y1` exclusive.
#[derive(Clone, Copy)]
struct Bounds {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

impl Bounds {
    /// The box grown by `margin` on every side, clipped to the crop.
    fn grown(self, margin: usize, width: usize, height: usize) -> Bounds {
        Bounds {
            x0: self.x0.saturating_sub(margin),
            y0: self.y0.saturating_sub(margin),
            x1: (self.x1 + margin).min(width),
            y1: (self.y1 + margin).min(height),
        }
    }

    fn width(&self) -> usize {
        self.x1 - self.x0
    }

    fn height(&self) -> usize {
        self.y1 - self.y0
    }

    /// Crop indices of the box's pixels, row by row.
    fn indices(&self, width: usize) -> impl Iterator<Item = usize> + '_ {
        (self.y0..self.y1).flat_map(move |y| (self.x0..self.x1).map(move |x| y * width + x))
    }
}

/// Each label of `labels` with its bounding box ([`watershed::objects`]).
fn object_boxes(labels: &[u32], width: usize) -> impl Iterator<Item = (u32, Bounds)> {
    watershed::objects(labels, width)
        .into_iter()
        .enumerate()
        .filter(|(_, object)| object.area > 0)
        .map(|(label, Object { x0, y0, x1, y1, .. })| {
            let box_ = Bounds {
                x0,
                y0,
                x1: x1 + 1,
                y1: y1 + 1,
            };
            (label as u32, box_)
        })
}

/// The median of `values` (the mean of the middle two for an even count); reorders them.
fn median(values: &mut [f32]) -> f32 {
    let (count, mid) = (values.len(), values.len() / 2);
    let (below, upper, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *upper;
    if count % 2 == 1 {
        upper
    } else {
        let lower = below.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        0.5 * (lower + upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::disk_raster;

    /// The objects of a crop cut at `cut` (255 above it).
    fn above(density: &[f32], cut: f32) -> Vec<u8> {
        density
            .iter()
            .map(|&d| if d > cut { 255 } else { 0 })
            .collect()
    }

    #[test]
    fn an_objects_cut_lies_half_way_between_it_and_its_ring() {
        let side = 40;
        let density = disk_raster(side, 8.0, 0.9f32, 0.1);
        let cuts = object_cuts(&density, &above(&density, 0.3), side, side, 0.3);
        // Inside the object and up to 3 steps out: its own level, (0.9 + 0.1) / 2.
        assert_eq!(cuts[20 * side + 20], 0.5);
        assert_eq!(cuts[20 * side + 28 + 2], 0.5, "2 px outside the edge");
        // Far from it: the crop's cut.
        assert_eq!(cuts[2 * side + 2], 0.3);
    }

    #[test]
    fn a_pale_object_gets_a_lower_cut_than_a_dark_one() {
        let side = 60;
        let mut density = vec![0.1f32; side * side];
        // A dark square (0.9) at the left and a pale one (0.4) at the right.
        for y in 20..32 {
            for x in 8..20 {
                density[y * side + x] = 0.9;
                density[y * side + x + 30] = 0.4;
            }
        }
        let cuts = object_cuts(&density, &above(&density, 0.3), side, side, 0.3);
        assert_eq!(cuts[25 * side + 12], 0.5);
        assert!(
            (cuts[25 * side + 42] - 0.25).abs() < 1e-6,
            "{}",
            cuts[25 * side + 42]
        );
    }

    #[test]
    fn an_object_without_a_ring_keeps_the_crop_cut() {
        // The object fills the crop: no background ring to compare with.
        let side = 10;
        let density = vec![0.8f32; side * side];
        let objects = vec![255u8; side * side];
        let cuts = object_cuts(&density, &objects, side, side, 0.3);
        assert!(cuts.iter().all(|&c| c == 0.3));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
