//! Finding tissue on a low-resolution level of a slide.
//!
//! Tissue is told from glass by **saturation** (HSV S). Stained tissue is coloured (pink
//! eosin, purple haematoxylin), glass is white or grey whatever its brightness, so a
//! dim scan or a vignetted corner keeps a low saturation where optical density (which
//! measures darkness) would rise. Optical density would also mark black pen, bubble rims
//! and dust as tissue; they are grey, hence unsaturated. Very dark pixels are set to zero
//! saturation: their hue is unreliable (bluish-black ink `(32, 36, 48)` has S = 0.33) and they
//! are ink or debris.
//! Coloured (blue, green) pen is saturated and is *not* rejected.
//!
//! The threshold is Otsu's on the saturation histogram, guarded for images that are all
//! one thing (glass only, tissue only); small specks and holes are then removed.

use super::grid::Rect;
use crate::morphology::remove_small_regions;
use std::path::Path;

/// Pixels whose brightest channel is below this are ink, bubble rims or debris; even dense
/// haematoxylin stays brighter than this at thumbnail resolution.
const DARK_MAX: u8 = 60;
/// No pixel at or below this saturation (of 255) is tissue: white to faintly tinted glass.
const GLASS_MAX_SATURATION: u8 = 20;
/// A population whose mean saturation reaches this is stained tissue; glass with a colour
/// cast (old or yellowed slides) stays well below it.
const TISSUE_MIN_MEAN_SATURATION: f64 = 40.0;
/// Otsu classes whose means differ by less than this are one population split by noise.
const MIN_CLASS_GAP: f64 = 20.0;

/// How much cleanup follows the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TissueParams {
    /// Tissue components and enclosed holes smaller than this many mask pixels are removed
    /// (filled); holes touching the image edge are kept.
    pub min_area: u32,
    /// Radius in mask pixels of the square opening and closing that smooth the outline
    /// (opening removes one-pixel spurs and specks, closing bridges one-pixel cracks).
    /// 0 turns smoothing off.
    pub smoothing_radius: u32,
}

impl Default for TissueParams {
    /// For a thumbnail of roughly 8–16 µm per pixel: specks under ~64 px (≈ 0.01 mm² at
    /// 12 µm/px) are dust or debris.
    fn default() -> Self {
        Self {
            min_area: 64,
            smoothing_radius: 1,
        }
    }
}

/// Where the tissue is on a slide, at the resolution of the level it was detected on.
///
/// Rectangles are counted pixel by pixel: a tile covers a few hundred mask pixels, and an
/// integral image would cost four times the mask's memory (17 MB at 4 Gpx).
#[derive(Debug, Clone)]
pub struct TissueMask {
    width: u32,
    height: u32,
    data: Vec<u8>,
    downsample: f64,
}

impl TissueMask {
    /// A mask from `data` (row-major, one byte per pixel, non-zero = tissue; 255 by
    /// convention) whose pixels each cover `downsample × downsample` level-0 pixels.
    ///
    /// # Panics
    /// If `data` is not `width × height` bytes, `downsample` is not positive, or the mask
    /// has `u32::MAX` pixels or more (a mask is a thumbnail).
    pub fn new(width: u32, height: u32, data: Vec<u8>, downsample: f64) -> Self {
        let (w, h) = (width as usize, height as usize);
        assert_eq!(data.len(), w * h, "mask data must be width × height bytes");
        assert!(downsample > 0.0, "downsample must be positive");
        assert!(
            (w * h) < u32::MAX as usize,
            "tissue masks are thumbnails; {width}x{height} is too large"
        );
        Self {
            width,
            height,
            data,
            downsample,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major bytes, 255 for tissue and 0 for background.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Level-0 pixels per mask pixel.
    pub fn downsample(&self) -> f64 {
        self.downsample
    }

    /// Tissue pixels in the mask-pixel block `[x0, x1) × [y0, y1)`.
    fn count(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> u32 {
        let width = self.width as usize;
        (y0..y1)
            .map(|y| {
                let row = &self.data[y * width..][x0..x1];
                row.iter().filter(|&&v| v != 0).count() as u32
            })
            .sum()
    }

    /// Fraction of the whole mask that is tissue (0 for an empty mask).
    pub fn fraction(&self) -> f64 {
        let (w, h) = (self.width as usize, self.height as usize);
        if w * h == 0 {
            return 0.0;
        }
        f64::from(self.count(0, 0, w, h)) / (w * h) as f64
    }

    /// Whether the mask pixel covering level-0 pixel `(x, y)` is tissue; false outside.
    pub fn is_tissue_at(&self, level0_x: i64, level0_y: i64) -> bool {
        let to_mask = |coordinate: i64, extent: u32| {
            let pixel = (coordinate as f64 / self.downsample).floor();
            (pixel >= 0.0 && pixel < f64::from(extent)).then_some(pixel as usize)
        };
        match (
            to_mask(level0_x, self.width),
            to_mask(level0_y, self.height),
        ) {
            (Some(x), Some(y)) => self.data[y * self.width as usize + x] != 0,
            _ => false,
        }
    }

    /// Fraction of tissue among the mask pixels a level-0 rectangle touches (partly
    /// covered pixels count whole), in O(1). Parts outside the mask are ignored; a rectangle
    /// wholly outside has fraction 0.
    pub fn fraction_in(&self, level0: Rect) -> f64 {
        let to_mask = |coordinate: i64, round: fn(f64) -> f64, extent: u32| {
            round(coordinate as f64 / self.downsample).clamp(0.0, f64::from(extent)) as usize
        };
        let x0 = to_mask(level0.x, f64::floor, self.width);
        let x1 = to_mask(level0.right(), f64::ceil, self.width);
        let y0 = to_mask(level0.y, f64::floor, self.height);
        let y1 = to_mask(level0.bottom(), f64::ceil, self.height);
        if x1 <= x0 || y1 <= y0 {
            return 0.0;
        }
        f64::from(self.count(x0, y0, x1, y1)) / ((x1 - x0) * (y1 - y0)) as f64
    }

    /// Writes the mask as an 8-bit greyscale PNG.
    pub fn write_png(&self, path: &Path) -> image::ImageResult<()> {
        image::save_buffer_with_format(
            path,
            &self.data,
            self.width,
            self.height,
            image::ExtendedColorType::L8,
            image::ImageFormat::Png,
        )
    }
}

/// Detects tissue in an RGB image (`width × height × 3` bytes, row-major), typically a
/// low-resolution level whose pixels each cover `downsample` level-0 pixels.
///
/// An image of glass only (white, grey or faintly tinted) gives an empty mask, an image of
/// tissue only a full one, rather than an arbitrary Otsu split of noise.
///
/// # Panics
/// If `rgb` is not `width × height × 3` bytes, or as [`TissueMask::new`].
pub fn detect_tissue(
    rgb: &[u8],
    width: u32,
    height: u32,
    downsample: f64,
    params: &TissueParams,
) -> TissueMask {
    let (w, h) = (width as usize, height as usize);
    assert_eq!(
        rgb.len(),
        w * h * 3,
        "RGB data must be width × height × 3 bytes"
    );
    let saturation: Vec<u8> = rgb.chunks_exact(3).map(saturation).collect();
    let mut histogram = [0_u64; 256];
    for &s in &saturation {
        histogram[usize::from(s)] += 1;
    }
    let mut data = match tissue_threshold(&histogram) {
        Some(threshold) => saturation
            .iter()
            .map(|&s| if s >= threshold { 255 } else { 0 })
            .collect(),
        None => vec![0; w * h],
    };
    let radius = params.smoothing_radius as usize;
    if radius > 0 {
        let erode = |mask: &[u8]| square_filter(mask, w, h, radius, u8::min);
        let dilate = |mask: &[u8]| square_filter(mask, w, h, radius, u8::max);
        // Opening, then closing: specks go before they could be bridged into tissue.
        data = erode(&dilate(&dilate(&erode(&data))));
    }
    let min_area = params.min_area as usize;
    remove_small_regions(&mut data, w, h, 255, min_area, false);
    remove_small_regions(&mut data, w, h, 0, min_area, true);
    TissueMask::new(width, height, data, downsample)
}

/// HSV saturation scaled to 0–255, forced to 0 for pixels too dark to have a reliable hue.
fn saturation(pixel: &[u8]) -> u8 {
    let max = pixel[0].max(pixel[1]).max(pixel[2]);
    let min = pixel[0].min(pixel[1]).min(pixel[2]);
    if max < DARK_MAX {
        return 0;
    }
    (u32::from(max - min) * 255 / u32::from(max)) as u8
}

/// Otsu's split of a histogram: the threshold (values `>=` it are the upper class) and the
/// mean of each class. A histogram with a single occupied value has no split: both means
/// are that value and everything is in the upper class.
struct OtsuSplit {
    threshold: u8,
    low_mean: f64,
    high_mean: f64,
}

/// `None` for an empty histogram; `histogram[v]` counts value `v` (at most 256 values).
///
/// Not `stain::otsu_thresholds`: that one cuts batched tensor rows on their device (the GPU
/// in training), sits a layer above `slide`, and gives no class means, which the tissue
/// rule needs; sharing it would move overviews to tensors and change the cut's arithmetic.
fn otsu(histogram: &[u64]) -> Option<OtsuSplit> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let weighted_total: f64 = histogram
        .iter()
        .enumerate()
        .map(|(value, &count)| value as f64 * count as f64)
        .sum();
    let mean = weighted_total / total as f64;
    let mut best = OtsuSplit {
        threshold: histogram.iter().position(|&c| c > 0).unwrap_or(0) as u8,
        low_mean: mean,
        high_mean: mean,
    };
    let mut best_variance = 0.0;
    let (mut low_count, mut low_weighted) = (0_u64, 0.0);
    for (value, &count) in histogram.iter().enumerate() {
        low_count += count;
        low_weighted += value as f64 * count as f64;
        let high_count = total - low_count;
        if low_count == 0 || high_count == 0 {
            continue;
        }
        let low_mean = low_weighted / low_count as f64;
        let high_mean = (weighted_total - low_weighted) / high_count as f64;
        let variance = low_count as f64 * high_count as f64 * (high_mean - low_mean).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = OtsuSplit {
                threshold: (value + 1) as u8,
                low_mean,
                high_mean,
            };
        }
    }
    Some(best)
}

/// The saturation from which a pixel is tissue, or `None` when nothing is.
///
/// Otsu always splits, even pure glass (into brighter and darker noise) or pure tissue
/// (into pale stroma and dense nuclei), so each split is checked against absolute
/// saturations. And with three populations (glass, pale stroma, eosin) the first split
/// often falls between the two tissues, so the lower class is split again until what is
/// left below the threshold is glass alone.
fn tissue_threshold(histogram: &[u64; 256]) -> Option<u8> {
    let floor = GLASS_MAX_SATURATION + 1;
    let mut threshold = None;
    let mut below = histogram.len();
    while let Some(split) = otsu(&histogram[..below]) {
        if split.low_mean >= TISSUE_MIN_MEAN_SATURATION {
            // Even the less saturated class is stained: all tissue, bar any glass pixels.
            return Some(floor);
        }
        if split.high_mean - split.low_mean < MIN_CLASS_GAP {
            // One unstained population split by noise: no (more) tissue below `below`.
            break;
        }
        threshold = Some(split.threshold.max(floor));
        below = usize::from(split.threshold);
    }
    threshold
}

/// A square `(2 radius + 1)²` min or max filter (erosion or dilation on a 0/255 mask),
/// as two 1-D passes. Pixels beyond the edge are ignored, so an all-tissue mask is not
/// eroded from its border.
fn square_filter(
    data: &[u8],
    w: usize,
    h: usize,
    radius: usize,
    pick: fn(u8, u8) -> u8,
) -> Vec<u8> {
    let window = |i: usize, extent: usize| i.saturating_sub(radius)..(i + radius + 1).min(extent);
    let mut rows = vec![0; w * h];
    for y in 0..h {
        let row = &data[y * w..(y + 1) * w];
        for x in 0..w {
            rows[y * w + x] = row[window(x, w)].iter().copied().reduce(pick).unwrap_or(0);
        }
    }
    let mut out = vec![0; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = window(y, h)
                .map(|yy| rows[yy * w + x])
                .reduce(pick)
                .unwrap_or(0);
        }
    }
    out
}

/// Overview resolution for tissue detection: about 1/32 of level 0 (1.25× for a 40× slide),
/// finer for small images so that the map keeps ≥ ~1000 px on its long side.
pub fn overview_downsample(width: u64, height: u64) -> f64 {
    (width.max(height) as f64 / 1000.0).clamp(1.0, 32.0).floor()
}

/// Reads a slide's overview and finds its tissue. The mask's `downsample` maps it back to
/// level 0; `level` is the slide level the overview was reduced from. `stopped` interrupts
/// the read (see [`super::read_overview`]).
pub fn detect_slide_tissue(
    slide: &dyn super::Slide,
    params: &TissueParams,
    stopped: &dyn Fn() -> bool,
) -> Result<(TissueMask, usize), super::SlideError> {
    let (width, height) = slide.dimensions();
    let overview = super::read_overview(slide, overview_downsample(width, height), stopped)?;
    let image = &overview.image;
    let mask = detect_tissue(
        &image.pixels,
        image.width,
        image.height,
        overview.downsample,
        params,
    );
    Ok((mask, overview.level))
}
