//! From the mask's finished connected components to nuclei: each component is split into
//! the nuclei it merges by the marker-controlled watershed ([`crate::watershed`]), run on
//! that component alone.
//!
//! **Seam-free.** The split of a component depends on nothing but its own pixels: the
//! watershed runs on the component's bounding box padded by one pixel, with every pixel
//! that is not the component's as background. A tiled mask equals the whole-image mask bit
//! for bit, so its components are the same, and so are their nuclei, their numbering and
//! their outlines; the streaming tracker closes a component only once it is complete, so
//! no halo beyond the mask's own is needed. (On a whole image,
//! [`crate::instances::instances_of`] runs the same watershed over all components at once;
//! the only difference is that there the Gaussian smoothing of the distance map can reach
//! 4σ into a neighbouring component.)

use super::components::{Component, Pixels, Run};
use crate::watershed::{separate, SeparationParams};
use std::collections::BTreeMap;

/// Largest padded bounding box (px) a component is split in: the watershed holds ~40 bytes
/// a pixel, so 40 MB at most, while a nucleus at 0.25 µm/px fills a few thousand. A bigger
/// component (a smear, a broken model's output) stays one object.
const MAX_SPLIT_PIXELS: usize = 1 << 20;

/// One nucleus, in mask pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    pub area: u64,
    /// Mean of the pixel centres.
    pub centroid: (f64, f64),
    /// `None` for a component too large to keep its pixels: it has no outline and no
    /// measurements besides area and centroid.
    pub pixels: Option<Pixels>,
}

/// What splitting added up to over a slide.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SplitStats {
    /// Nuclei produced.
    pub count: u64,
    /// Components split into two or more nuclei.
    pub components_split: u64,
    /// Pixels of components that no nucleus kept: the watershed's specks.
    pub speck_pixels: u64,
    /// Components left whole because their bounding box was too large to split.
    pub too_large_to_split: u64,
    /// How many nuclei have each area (px): exact medians in memory that follows the
    /// number of distinct areas, not of nuclei.
    #[serde(skip)]
    areas: BTreeMap<u64, u64>,
}

impl SplitStats {
    fn record(&mut self, area: u64) {
        self.count += 1;
        *self.areas.entry(area).or_default() += 1;
    }

    /// Median nucleus area in pixels (the mean of the middle two for an even count).
    pub fn median_area(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let (low, high) = ((self.count - 1) / 2, self.count / 2);
        let (mut seen, mut low_area) = (0u64, None);
        for (&area, &n) in &self.areas {
            seen += n;
            if low_area.is_none() && seen > low {
                low_area = Some(area);
            }
            if seen > high {
                return Some((low_area.expect("low ≤ high") + area) as f64 / 2.0);
            }
        }
        unreachable!("the counts add up to count")
    }
}

/// Turns components into nuclei.
#[derive(Debug, Clone)]
pub struct Splitter {
    /// `None`: every component is one nucleus.
    params: Option<SeparationParams>,
    stats: SplitStats,
}

impl Splitter {
    /// Splits with `params` (`None`: components are nuclei as they are); objects under
    /// `min_area` pixels are dropped as well as those under `params.min_area_px`.
    pub fn new(params: Option<SeparationParams>, min_area: u64) -> Self {
        let params = params.map(|p| SeparationParams {
            min_area_px: p
                .min_area_px
                .max(u32::try_from(min_area).unwrap_or(u32::MAX)),
            ..p
        });
        Self {
            params,
            stats: SplitStats::default(),
        }
    }

    pub fn stats(&self) -> &SplitStats {
        &self.stats
    }

    /// The nuclei of `component`, in the raster order of their first pixel.
    pub fn split(&mut self, component: Component) -> Vec<Nucleus> {
        let whole = |c: Component| Nucleus {
            area: c.area,
            centroid: c.centroid,
            pixels: c.pixels,
        };
        let nuclei = match (&self.params, &component.pixels) {
            (Some(params), Some(pixels)) => {
                let b = component.bbox;
                let (w, h) = ((b.x1 - b.x0) as usize + 2, (b.y1 - b.y0) as usize + 2);
                if w * h > MAX_SPLIT_PIXELS {
                    self.stats.too_large_to_split += 1;
                    vec![whole(component)]
                } else {
                    let nuclei = split_pixels(pixels, (b.x0, b.y0), (w, h), params);
                    let kept: u64 = nuclei.iter().map(|n| n.area).sum();
                    if nuclei.len() > 1 {
                        self.stats.components_split += 1;
                    }
                    self.stats.speck_pixels += component.area - kept;
                    if nuclei.len() == 1 && kept == component.area {
                        // One nucleus, nothing dropped: the component as it came.
                        vec![whole(component)]
                    } else {
                        nuclei
                    }
                }
            }
            _ => vec![whole(component)],
        };
        for nucleus in &nuclei {
            self.stats.record(nucleus.area);
        }
        nuclei
    }
}

/// The watershed objects of one component's `pixels` (bounding box at `origin`), on a
/// `w`×`h` grid that pads the box by one background pixel all round.
fn split_pixels(
    pixels: &Pixels,
    origin: (u32, u64),
    (w, h): (usize, usize),
    params: &SeparationParams,
) -> Vec<Nucleus> {
    let local = |run: &Run| (run.y - origin.1 + 1) as usize * w + (run.x0 - origin.0) as usize + 1;
    let mut mask = vec![0u8; w * h];
    // Where each pixel's values are in the component's lists.
    let mut value_at = if pixels.has_values() {
        vec![0u32; w * h]
    } else {
        Vec::new()
    };
    for run in &pixels.runs {
        let start = local(run);
        mask[start..start + run.len()].fill(1);
        if !value_at.is_empty() {
            for (i, slot) in value_at[start..start + run.len()].iter_mut().enumerate() {
                *slot = (run.at + i) as u32;
            }
        }
    }
    let (labels, count) = separate(&mask, w, h, params);
    drop(mask);
    let mut nuclei: Vec<(Pixels, u128, u128)> =
        (0..count).map(|_| (Pixels::default(), 0, 0)).collect();
    for (y, row) in labels.chunks_exact(w).enumerate() {
        let mut x = 0;
        while x < w {
            let label = row[x];
            if label == 0 {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && row[x] == label {
                x += 1;
            }
            let (nucleus, sum_x, sum_y) = &mut nuclei[label as usize - 1];
            let (x0, x1) = (origin.0 + start as u32 - 1, origin.0 + x as u32 - 1);
            let slide_y = origin.1 + y as u64 - 1;
            nucleus.runs.push(Run {
                y: slide_y,
                x0,
                x1,
                at: nucleus.score.len(),
            });
            let len = u128::from(x1 - x0);
            *sum_x += (u128::from(x0) + u128::from(x1) - 1) * len / 2;
            *sum_y += u128::from(slide_y) * len;
            for &at in value_at.get(y * w + start..y * w + x).unwrap_or_default() {
                nucleus.score.push(pixels.score[at as usize]);
                nucleus.hematoxylin.push(pixels.hematoxylin[at as usize]);
            }
        }
    }
    nuclei
        .into_iter()
        .map(|(pixels, sum_x, sum_y)| {
            let area: u64 = pixels.runs.iter().map(|r| r.len() as u64).sum();
            Nucleus {
                area,
                centroid: (
                    sum_x as f64 / area as f64 + 0.5,
                    sum_y as f64 / area as f64 + 0.5,
                ),
                pixels: Some(pixels),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::components::{ComponentTracker, RowValues, TrackerOptions};
    use crate::segment::pixel_values::CoreValues;

    /// The components of a `w`-wide mask, with values: score = x, hematoxylin = y.
    fn components(mask: &[u8], w: usize) -> Vec<Component> {
        let mut tracker = ComponentTracker::new(
            w as u32,
            TrackerOptions {
                pixels: true,
                values: true,
                max_kept_area: u64::MAX,
                min_area: 0,
            },
        );
        let values = CoreValues::coordinates(mask, w, 0);
        tracker.push_rows(
            mask,
            Some(RowValues {
                score: &values.score,
                hematoxylin: &values.hematoxylin,
            }),
        );
        tracker.finish().1
    }

    fn disks(w: usize, h: usize, disks: &[(i64, i64, i64)]) -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as i64, (i / w) as i64);
                u8::from(
                    disks
                        .iter()
                        .any(|&(cx, cy, r)| (x - cx).pow(2) + (y - cy).pow(2) <= r * r),
                )
            })
            .collect()
    }

    #[test]
    fn two_touching_disks_are_two_nuclei_with_their_values() {
        // Radii 10 and 12, centres 20 px apart: one component of 317 + 441 − 11 pixels
        // (see the watershed's own test), two nuclei that keep their disks but for the lens.
        let (w, h) = (80, 60);
        let mask = disks(w, h, &[(30, 30, 10), (50, 30, 12)]);
        let found = components(&mask, w);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].area, 747);
        let mut splitter = Splitter::new(Some(SeparationParams::default()), 0);
        let nuclei = splitter.split(found[0].clone());
        assert_eq!(nuclei.len(), 2);
        // Raster order of the first pixel: the bigger disk reaches higher.
        let (right, left) = (&nuclei[0], &nuclei[1]);
        assert_eq!(left.area + right.area, 747);
        assert!((306..=317).contains(&left.area), "{}", left.area);
        assert!((430..=441).contains(&right.area), "{}", right.area);
        assert!((left.centroid.0 - 30.5).abs() < 1.0 && (right.centroid.0 - 50.5).abs() < 1.0);
        // Every pixel kept the values it was pushed with: score = x, hematoxylin = y.
        for nucleus in &nuclei {
            let pixels = nucleus.pixels.as_ref().unwrap();
            for run in &pixels.runs {
                for (i, x) in (run.x0..run.x1).enumerate() {
                    assert_eq!(pixels.score[run.at + i], x as u8);
                    assert_eq!(pixels.hematoxylin[run.at + i], run.y as u16);
                }
            }
        }
        let stats = splitter.stats();
        assert_eq!((stats.count, stats.components_split), (2, 1));
        assert_eq!(
            stats.median_area(),
            Some((left.area + right.area) as f64 / 2.0)
        );
        // Without separation the component is one nucleus, as it came.
        let mut whole = Splitter::new(None, 0);
        let one = whole.split(found[0].clone());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].pixels, found[0].pixels);
    }

    #[test]
    fn specks_go_and_a_single_nucleus_is_passed_through() {
        let (w, h) = (40, 20);
        let mut mask = disks(w, h, &[(10, 10, 6)]);
        mask[5 * w + 30] = 1; // a one-pixel speck
        let found = components(&mask, w);
        let mut splitter = Splitter::new(Some(SeparationParams::default()), 0);
        let nuclei: Vec<Nucleus> = found.into_iter().flat_map(|c| splitter.split(c)).collect();
        assert_eq!(nuclei.len(), 1);
        assert_eq!(nuclei[0].area, 113, "N(6) lattice points");
        let stats = splitter.stats();
        assert_eq!((stats.count, stats.speck_pixels), (1, 1));
        assert_eq!(stats.median_area(), Some(113.0));
        // --min-nucleus-area raises the speck size: the disk goes too.
        let mut strict = Splitter::new(Some(SeparationParams::default()), 200);
        let found = components(&mask, w);
        assert!(found.into_iter().all(|c| strict.split(c).is_empty()));
        assert_eq!(strict.stats().median_area(), None);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let mut stats = SplitStats::default();
        for area in [5, 1, 9, 7] {
            stats.record(area);
        }
        assert_eq!(stats.median_area(), Some(6.0));
        stats.record(7);
        assert_eq!(stats.median_area(), Some(7.0));
    }
}
