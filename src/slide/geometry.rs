//! Where a slide is segmented: the *output* level (the mask keeps its size and MPP) and the
//! *model space* the network sees — the same pixels, or the slide resampled to the model's
//! training MPP (`--target-mpp`), so that a 40× model works on a 20× slide.
//!
//! Resampling maps every model pixel to the slide through one global affine map, so a
//! pixel's value does not depend on which tile reads it and tiling stays seam-free in model
//! space too.

use super::grid::Rect;
use super::{RgbRegion, Slide, SlideError};
use serde::Serialize;
use std::path::PathBuf;

/// Where the slide's microns per pixel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MppSource {
    /// The slide's metadata.
    Slide,
    /// `--mpp`.
    Flag,
    /// Neither: assumed to be the model's training scale (or 0.25 µm/px without one).
    Assumed,
}

/// Why a slide cannot be resampled to the model's scale. `segment` turns these into its own
/// errors (`SegmentError::NoMpp`, `SegmentError::InvalidOption`) with the same text.
#[derive(Debug, thiserror::Error)]
pub enum GeometryError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error("{path}: the slide does not record its microns per pixel")]
    NoMpp { path: PathBuf },
    #[error("{0}")]
    InvalidTargetMpp(String),
}

/// Relative MPP difference below which the slide is read as it is.
const SAME_SCALE_TOLERANCE: f64 = 0.02;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Geometry {
    /// Slide level the mask is written at.
    pub output_level: usize,
    pub output_width: u64,
    pub output_height: u64,
    /// Level-0 pixels per output pixel.
    pub output_downsample: f64,
    /// Microns per output pixel, when the slide (or `--mpp`) says.
    pub output_mpp: Option<(f64, f64)>,
    /// Where `output_mpp` came from.
    pub mpp_source: MppSource,
    /// Model pixels per output pixel: 1 reads the level as it is; 2 means the model sees
    /// the slide at twice the output resolution.
    pub scale: f64,
    pub model_width: u64,
    pub model_height: u64,
    /// The level pixels are read from (the output level unless resampling).
    pub source_level: usize,
    /// Level-0 pixels per source-level pixel.
    source_downsample: f64,
}

impl Geometry {
    /// Segments `level` as it is.
    pub fn native(slide: &dyn Slide, level: usize) -> Result<Self, SlideError> {
        let info = slide.level(level)?;
        Ok(Self {
            output_level: level,
            output_width: info.width,
            output_height: info.height,
            output_downsample: info.downsample,
            output_mpp: slide
                .mpp()
                .map(|(x, y)| (x * info.downsample, y * info.downsample)),
            mpp_source: MppSource::Slide,
            scale: 1.0,
            model_width: info.width,
            model_height: info.height,
            source_level: level,
            source_downsample: info.downsample,
        })
    }

    /// Writes the mask at `level` but runs the model at `target_mpp` µm per pixel.
    pub fn resampled(
        slide: &dyn Slide,
        level: usize,
        target_mpp: f64,
    ) -> Result<Self, GeometryError> {
        Self::native(slide, level)?.resampled_to(slide, target_mpp)
    }

    /// This native geometry with the slide's level-0 scale given (`--mpp`) rather than read.
    pub fn with_level0_mpp(self, mpp: f64) -> Self {
        Self {
            output_mpp: Some((mpp * self.output_downsample, mpp * self.output_downsample)),
            mpp_source: MppSource::Flag,
            ..self
        }
    }

    /// This native geometry with the model running at `target_mpp` µm per pixel.
    pub fn resampled_to(self, slide: &dyn Slide, target_mpp: f64) -> Result<Self, GeometryError> {
        let native = self;
        let Some((mpp_x, mpp_y)) = native.output_mpp else {
            return Err(GeometryError::NoMpp {
                path: slide.path().to_path_buf(),
            });
        };
        if !(target_mpp.is_finite() && target_mpp > 0.0) {
            return Err(GeometryError::InvalidTargetMpp(format!(
                "--target-mpp {target_mpp}: give a positive number of microns per pixel"
            )));
        }
        // Square model pixels: the mean of the two axes (scanners write equal ones).
        let scale = (mpp_x + mpp_y) / 2.0 / target_mpp;
        if (scale - 1.0).abs() < SAME_SCALE_TOLERANCE {
            return Ok(native);
        }
        // Read the coarsest level that is still at least as fine as the model space, so
        // bilinear interpolation never skips source pixels by much.
        let level0_per_model = native.output_downsample / scale;
        let levels = slide.levels();
        let source_level = levels
            .iter()
            .rposition(|l| l.downsample <= level0_per_model * (1.0 + SAME_SCALE_TOLERANCE))
            .unwrap_or(0);
        Ok(Self {
            scale,
            model_width: (native.output_width as f64 * scale).ceil() as u64,
            model_height: (native.output_height as f64 * scale).ceil() as u64,
            source_level,
            source_downsample: levels[source_level].downsample,
            ..native
        })
    }

    pub fn is_native(&self) -> bool {
        self.scale == 1.0
    }

    /// Microns per model pixel, when known.
    pub fn model_mpp(&self) -> Option<f64> {
        self.output_mpp.map(|(x, y)| (x + y) / 2.0 / self.scale)
    }

    /// A model-space rectangle in level-0 pixels (for the tissue mask).
    pub fn to_level0(&self, rect: Rect) -> Rect {
        rect.scaled(self.output_downsample / self.scale)
    }

    /// The model row that output row `y` takes its value from (nearest neighbour).
    pub fn model_row_of(&self, output_y: u64) -> u64 {
        model_coordinate(output_y, self.scale, self.model_height)
    }

    /// For every output column, the model column it takes its value from.
    pub fn model_columns(&self) -> Vec<u32> {
        (0..self.output_width)
            .map(|x| model_coordinate(x, self.scale, self.model_width) as u32)
            .collect()
    }

    /// A whole model-space mask at the output's size (nearest neighbour, as the streamed
    /// rows are mapped).
    pub fn to_output(&self, model_mask: &[u8]) -> Vec<u8> {
        if self.is_native() {
            return model_mask.to_vec();
        }
        let columns = self.model_columns();
        let mut out = Vec::with_capacity(columns.len() * self.output_height as usize);
        for y in 0..self.output_height {
            let row = &model_mask[(self.model_row_of(y) * self.model_width) as usize..];
            out.extend(columns.iter().map(|&x| row[x as usize]));
        }
        out
    }

    /// Reads a model-space rectangle (white outside the slide).
    pub fn read(&self, slide: &dyn Slide, rect: Rect) -> Result<RgbRegion, SlideError> {
        if self.is_native() {
            return slide.read_region(self.source_level, rect.x, rect.y, rect.width, rect.height);
        }
        // Source pixels per model pixel, and each model pixel centre's source coordinate.
        let ratio = self.output_downsample / self.scale / self.source_downsample;
        let columns = Taps::new(rect.x, rect.width, ratio);
        let rows = Taps::new(rect.y, rect.height, ratio);
        let source = slide.read_region(
            self.source_level,
            columns.first,
            rows.first,
            columns.span,
            rows.span,
        )?;
        Ok(bilinear(&source, &columns, &rows))
    }
}

fn model_coordinate(output: u64, scale: f64, model_extent: u64) -> u64 {
    (((output as f64 + 0.5) * scale).floor() as u64).min(model_extent - 1)
}

/// Bilinear taps along one axis: for each model pixel, the left source pixel (relative to
/// `first`) and the weight of the right one.
struct Taps {
    first: i64,
    span: u32,
    taps: Vec<(usize, f32)>,
}

impl Taps {
    fn new(start: i64, len: u32, ratio: f64) -> Self {
        let centre = |m: i64| (m as f64 + 0.5) * ratio - 0.5;
        let first = centre(start).floor() as i64;
        let last = centre(start + i64::from(len) - 1).floor() as i64 + 1;
        let taps = (0..i64::from(len))
            .map(|i| {
                let u = centre(start + i);
                let left = u.floor();
                ((left as i64 - first) as usize, (u - left) as f32)
            })
            .collect();
        Self {
            first,
            span: (last - first + 1) as u32,
            taps,
        }
    }
}

fn bilinear(source: &RgbRegion, columns: &Taps, rows: &Taps) -> RgbRegion {
    let stride = source.width as usize * 3;
    let mut out = RgbRegion::white(columns.taps.len() as u32, rows.taps.len() as u32);
    let lerp = |a: u8, b: u8, t: f32| f32::from(a) + (f32::from(b) - f32::from(a)) * t;
    for (dst_row, &(sy, ty)) in out
        .pixels
        .chunks_exact_mut(columns.taps.len() * 3)
        .zip(&rows.taps)
    {
        let top = &source.pixels[sy * stride..][..stride];
        let bottom = &source.pixels[(sy + 1) * stride..][..stride];
        for (dst, &(sx, tx)) in dst_row.chunks_exact_mut(3).zip(&columns.taps) {
            for (c, value) in dst.iter_mut().enumerate() {
                let (l, r) = (sx * 3 + c, (sx + 1) * 3 + c);
                let upper = lerp(top[l], top[r], tx);
                let lower = lerp(bottom[l], bottom[r], tx);
                *value = (upper + (lower - upper) * ty).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_cover_every_model_pixel_within_the_read_span() {
        for ratio in [0.5, 0.75, 1.3, 2.0] {
            for start in [-120i64, 0, 7, 999] {
                let taps = Taps::new(start, 37, ratio);
                for &(left, weight) in &taps.taps {
                    assert!(left + 1 < taps.span as usize, "ratio {ratio} start {start}");
                    assert!((0.0..1.0).contains(&weight));
                }
            }
        }
    }

    #[test]
    fn a_pixel_is_resampled_the_same_whatever_window_reads_it() {
        let ratio = 0.5;
        let whole = Taps::new(0, 64, ratio);
        let part = Taps::new(21, 10, ratio);
        for i in 0..10 {
            let (l_whole, w_whole) = whole.taps[21 + i];
            let (l_part, w_part) = part.taps[i];
            assert_eq!(w_whole, w_part);
            assert_eq!(l_whole as i64 + whole.first, l_part as i64 + part.first);
        }
    }
}
