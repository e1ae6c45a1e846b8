//! The stain re-cut: a nuclei mask's edges moved to where the hematoxylin says they are.
//!
//! A network's mask puts every nucleus's edge at the same confidence, and a dark nucleus's
//! blurred halo then reaches past its contour while a pale nucleus's paler parts fall out.
//! The re-cut holds each pixel near the mask to a cut of its own: half-way between the mean
//! smoothed hematoxylin density of the mask's pixels around it and that of the background
//! ring just outside the mask, over a window about a nucleus across. That is where a
//! nucleus's own edge is steepest, whatever its stain. Pixels farther than [`ZONE_UM`] from
//! the mask stay background; where a window holds no mask or too little ring, the mask is
//! kept.
//!
//! **Exact under tiling.** Densities are quantised to integers before the window sums, and
//! the cut is compared in integers, so a pixel's decision is the same whatever the rectangle
//! it is computed in, as long as that rectangle holds everything within [`StainRecut::reach`]
//! of it (and the smoothing's own reach of the pixels' densities).

use crate::gaussian::{gaussian_radius, gaussian_smooth};
use std::ops::RangeInclusive;

/// How far out (and in) an edge may move: 0.75 µm, 3 px at 0.25 µm/px.
pub const ZONE_UM: f64 = 0.75;
/// The ring that stands for the background around the mask: 1–1.5 µm out, past the
/// blurred rim of the edge itself (4–6 px at 0.25 µm/px).
pub const RING_UM: (f64, f64) = (1.0, 1.5);
/// Half the window a pixel's cut is taken over: about a nucleus's radius (15 px at
/// 0.25 µm/px, a 31 px window).
pub const WINDOW_RADIUS_UM: f64 = 3.75;
/// The density is smoothed over about half a micrometre first (σ 2 px at 0.25 µm/px), as
/// the self-training teacher smooths it: chromatin texture is not an edge.
pub const SMOOTHING_SIGMA_UM: f64 = 0.5;
/// A window needs this many ring pixels to say what the background is.
const MIN_RING_PIXELS: u64 = 5;
/// Quantisation steps per optical-density unit (a `u16` then holds up to 6.5 OD).
const DENSITY_STEPS: f32 = 10_000.0;

/// The re-cut at one scale, all lengths in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct StainRecut {
    zone: u32,
    ring: RangeInclusive<u32>,
    window_radius: usize,
    sigma: f32,
}

impl StainRecut {
    /// The re-cut on pixels of `mpp` µm.
    ///
    /// # Panics
    /// If `mpp` is not positive and finite.
    pub fn at_mpp(mpp: f64) -> Self {
        assert!(mpp.is_finite() && mpp > 0.0, "pixel size {mpp} µm");
        let px = |um: f64| (um / mpp).round().max(1.0) as u32;
        let zone = px(ZONE_UM);
        let ring = px(RING_UM.0).max(zone + 1)..=px(RING_UM.1).max(zone + 1);
        Self {
            zone,
            ring,
            window_radius: px(WINDOW_RADIUS_UM) as usize,
            sigma: (SMOOTHING_SIGMA_UM / mpp) as f32,
        }
    }

    /// How far (Chebyshev distance, in pixels) the mask can influence one output pixel: the
    /// window's radius plus the ring's outer edge. The density is read within the window's
    /// radius, after smoothing that reads [`StainRecut::smoothing_reach`] further.
    pub fn reach(&self) -> u32 {
        self.window_radius as u32 + *self.ring.end()
    }

    /// How far the smoothing reads around a pixel: about 4σ ([`gaussian_radius`]).
    pub fn smoothing_reach(&self) -> usize {
        gaussian_radius(self.sigma)
    }

    /// The smoothed density, quantised, of the `window` (x, y, width, height) of a
    /// `width`×`height` map of hematoxylin densities (OD units); beyond the map is 0, as
    /// white is. The window is smoothed with [`StainRecut::smoothing_reach`] of the map
    /// around it, so every tap of its pixels is a pixel of the map (or white beyond it):
    /// the result does not depend on where the map starts.
    pub fn smoothed_density(
        &self,
        density: &[f32],
        width: usize,
        height: usize,
        window: (usize, usize, usize, usize),
    ) -> Vec<u16> {
        assert_eq!(
            density.len(),
            width * height,
            "density is not {width}×{height}"
        );
        let (wx, wy, ww, wh) = window;
        let r = self.smoothing_reach();
        let (cw, ch) = (ww + 2 * r, wh + 2 * r);
        let at = |x: usize, y: usize| {
            // (x, y) in the context rectangle, which starts r px above and left of the window.
            let (mx, my) = (
                (wx + x) as isize - r as isize,
                (wy + y) as isize - r as isize,
            );
            let inside = (0..width as isize).contains(&mx) && (0..height as isize).contains(&my);
            if inside {
                density[my as usize * width + mx as usize]
            } else {
                0.0
            }
        };
        let context: Vec<f32> = (0..cw * ch).map(|i| at(i % cw, i / cw)).collect();
        let smoothed = gaussian_smooth(&context, cw, ch, self.sigma);
        smoothed
            .chunks_exact(cw)
            .skip(r)
            .take(wh)
            .flat_map(|row| &row[r..r + ww])
            .map(|&sum| {
                (sum.max(0.0) * DENSITY_STEPS)
                    .round()
                    .min(f32::from(u16::MAX)) as u16
            })
            .collect()
    }

    /// The re-cut mask (0/255) of a `width`×`height` 0/nonzero `mask` on its
    /// [`StainRecut::smoothed_density`].
    ///
    /// # Panics
    /// If `mask` or `density` is not `width * height` long.
    pub fn apply(&self, mask: &[u8], density: &[u16], width: usize, height: usize) -> Vec<u8> {
        assert_eq!(mask.len(), width * height, "mask is not {width}×{height}");
        assert_eq!(
            density.len(),
            width * height,
            "density is not {width}×{height}"
        );
        let steps = taxicab_steps(mask, width, height, *self.ring.end() + 1);
        let in_ring = |i: usize| self.ring.contains(&steps[i]);
        // Window sums of the mask's and the ring's pixel counts and densities.
        let nucleus_count = BoxSums::new(width, height, |i| u64::from(steps[i] == 0));
        let ring_count = BoxSums::new(width, height, |i| u64::from(in_ring(i)));
        let nucleus_density = BoxSums::new(width, height, |i| {
            if steps[i] == 0 {
                u64::from(density[i])
            } else {
                0
            }
        });
        let ring_density = BoxSums::new(width, height, |i| {
            if in_ring(i) {
                u64::from(density[i])
            } else {
                0
            }
        });
        let r = self.window_radius;
        let mut out = vec![0u8; mask.len()];
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                if steps[i] > self.zone {
                    continue;
                }
                let bounds = (
                    x.saturating_sub(r),
                    y.saturating_sub(r),
                    (x + r + 1).min(width),
                    (y + r + 1).min(height),
                );
                let (nf, nb) = (nucleus_count.sum(bounds), ring_count.sum(bounds));
                let keep = if nf == 0 || nb < MIN_RING_PIXELS {
                    mask[i] != 0
                } else {
                    // density > (Sf/nf + Sb/nb) / 2, in integers.
                    let (sf, sb) = (nucleus_density.sum(bounds), ring_density.sum(bounds));
                    2 * u64::from(density[i]) * nf * nb > sf * nb + sb * nf
                };
                if keep {
                    out[i] = 255;
                }
            }
        }
        out
    }
}

/// 4-neighbour steps from each pixel to the nearest mask pixel (0 on the mask), counted
/// up to `cap` (farther pixels read `cap`); also how the stain teacher measures the ring
/// around each of its objects.
pub fn taxicab_steps(mask: &[u8], width: usize, height: usize, cap: u32) -> Vec<u32> {
    let mut steps: Vec<u32> = mask.iter().map(|&m| if m != 0 { 0 } else { cap }).collect();
    // Two passes: from the top left, then from the bottom right (exact for the L1 metric).
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let mut s = steps[i];
            if x > 0 {
                s = s.min(steps[i - 1] + 1);
            }
            if y > 0 {
                s = s.min(steps[i - width] + 1);
            }
            steps[i] = s.min(cap);
        }
    }
    for y in (0..height).rev() {
        for x in (0..width).rev() {
            let i = y * width + x;
            let mut s = steps[i];
            if x + 1 < width {
                s = s.min(steps[i + 1] + 1);
            }
            if y + 1 < height {
                s = s.min(steps[i + width] + 1);
            }
            steps[i] = s.min(cap);
        }
    }
    steps
}

/// Sums of a per-pixel integer over any axis-aligned box (a summed-area table).
struct BoxSums {
    width: usize,
    table: Vec<u64>,
}

impl BoxSums {
    fn new(width: usize, height: usize, value: impl Fn(usize) -> u64) -> Self {
        let stride = width + 1;
        let mut table = vec![0u64; stride * (height + 1)];
        for y in 0..height {
            let mut row = 0u64;
            for x in 0..width {
                row += value(y * width + x);
                table[(y + 1) * stride + x + 1] = table[y * stride + x + 1] + row;
            }
        }
        Self { width, table }
    }

    /// The sum over columns `x0..x1` and rows `y0..y1`.
    fn sum(&self, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> u64 {
        let stride = self.width + 1;
        let at = |x: usize, y: usize| self.table[y * stride + x];
        at(x1, y1) + at(x0, y0) - at(x0, y1) - at(x1, y0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::disk_raster;

    /// `side`² densities (OD) of a disk of radius `r` at the centre, `inside` on `outside`,
    /// smoothed as the re-cut smooths them.
    fn disk_density(
        recut: &StainRecut,
        side: usize,
        r: f64,
        inside: f32,
        outside: f32,
    ) -> Vec<u16> {
        let raw = disk_raster(side, r, inside, outside);
        recut.smoothed_density(&raw, side, side, (0, 0, side, side))
    }

    fn disk_mask(side: usize, r: f64) -> Vec<u8> {
        disk_raster(side, r, 255, 0)
    }

    fn area(mask: &[u8]) -> usize {
        mask.iter().filter(|&&v| v != 0).count()
    }

    /// Re-cuts a disk mask of radius `drawn` over a stained disk of radius 10 px and
    /// `density`; returns (|re-cut area − stained area|, |drawn area − stained area|).
    fn area_errors(drawn: f64, density: f32) -> (f64, f64) {
        let recut = StainRecut::at_mpp(0.25);
        let side = 64;
        let stained = disk_density(&recut, side, 10.0, density, 0.05);
        let mask = disk_mask(side, drawn);
        let out = recut.apply(&mask, &stained, side, side);
        let truth = area(&disk_mask(side, 10.0)) as f64;
        (
            (area(&out) as f64 - truth).abs(),
            (area(&mask) as f64 - truth).abs(),
        )
    }

    #[test]
    fn a_mask_too_wide_for_a_dark_nucleus_shrinks_to_the_stained_disk() {
        // Drawn 2 px too wide all round (452 px against 316): the re-cut is within a few
        // percent of the stained disk, at least four times closer than the drawing.
        let (recut, drawn) = area_errors(12.0, 0.8);
        assert!(
            recut < 0.1 * 316.0 && recut * 4.0 < drawn,
            "{recut} against {drawn}"
        );
    }

    #[test]
    fn a_mask_too_narrow_for_a_pale_nucleus_grows_to_the_stained_disk() {
        let (recut, drawn) = area_errors(8.0, 0.3);
        assert!(
            recut < 0.12 * 316.0 && recut * 3.0 < drawn,
            "{recut} against {drawn}"
        );
        // It moves no further than the zone: a wider stain is not followed past it.
        let recut = StainRecut::at_mpp(0.25);
        let side = 64;
        let wide = disk_density(&recut, side, 20.0, 0.3, 0.05);
        let out = recut.apply(&disk_mask(side, 8.0), &wide, side, side);
        assert!(area(&out) <= area(&disk_mask(side, 8.0 + 3.5)));
    }

    #[test]
    fn without_a_background_ring_the_mask_is_kept() {
        let recut = StainRecut::at_mpp(0.25);
        let side = 20;
        let mask = vec![255u8; side * side];
        let density = vec![3000u16; side * side];
        assert_eq!(recut.apply(&mask, &density, side, side), mask);
        let empty = vec![0u8; side * side];
        assert_eq!(recut.apply(&empty, &density, side, side), empty);
    }

    #[test]
    fn any_rectangle_holding_the_reach_gives_the_same_pixels() {
        // Random blobs on a 96² map, re-cut whole and in a 40² window with the reach around.
        let recut = StainRecut::at_mpp(0.25);
        let side = 96;
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f32 / (1u64 << 31) as f32
        };
        let raw: Vec<f32> = (0..side * side).map(|_| 0.6 * next()).collect();
        let density = recut.smoothed_density(&raw, side, side, (0, 0, side, side));
        let mask: Vec<u8> = density
            .iter()
            .map(|&d| if d > 3000 { 255 } else { 0 })
            .collect();
        let whole = recut.apply(&mask, &density, side, side);
        let margin = recut.reach() as usize;
        let (x0, y0, core) = (28, 30, 40);
        let (wx, wy, ww) = (x0 - margin, y0 - margin, core + 2 * margin);
        let part_density = recut.smoothed_density(&raw, side, side, (wx, wy, ww, ww));
        let part_mask: Vec<u8> = (0..ww * ww)
            .map(|i| mask[(wy + i / ww) * side + wx + i % ww])
            .collect();
        let part = recut.apply(&part_mask, &part_density, ww, ww);
        for y in 0..core {
            for x in 0..core {
                assert_eq!(
                    part[(y + margin) * ww + x + margin],
                    whole[(y0 + y) * side + x0 + x],
                    "({x}, {y})"
                );
            }
        }
    }
}
