//! What to generate: the serialisable description of a synthetic slide, and its errors.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Description of a synthetic H&E slide at 40× (0.25 µm/px). Every pixel is a pure function
/// of this spec and the pixel's coordinates.
///
/// Unknown or missing JSON fields take their defaults, so recorded specs stay readable as
/// fields are added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthSpec {
    /// Slide width in px; pixels beyond it render as bare glass.
    pub width: u64,
    /// Slide height in px; pixels beyond it render as bare glass.
    pub height: u64,
    pub seed: u64,
    /// Fraction of the slide covered by tissue, 0 (bare glass) to 1.
    pub tissue_coverage: f32,
    /// Feature size of the tissue blobs in px; `None` derives it from the slide size so that
    /// small and gigapixel slides both show several pieces of tissue.
    pub tissue_scale_px: Option<f32>,
    /// Spacing of the jittered grid that holds at most one nucleus per cell, in px.
    pub nucleus_spacing_px: u32,
    /// Chance that a cell of the most cellular tissue holds a nucleus (stroma gets a fifth).
    pub nucleus_fill: f32,
    /// Range of nucleus radii (geometric mean of the semi-axes) in px.
    pub nucleus_radius_px: [f32; 2],
    /// Largest ratio of long to short nucleus axis (spindle-shaped stromal nuclei).
    pub nucleus_max_elongation: f32,
    /// Strength of the slow stain-intensity drift across the slide and between slides, 0–1.
    pub stain_variation: f32,
    /// Standard deviation of per-channel pixel noise, in 8-bit levels.
    pub noise_sigma: f32,
    /// Colour of bare glass.
    pub background_rgb: [u8; 3],
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            width: 1024,
            height: 1024,
            seed: 0,
            tissue_coverage: 0.55,
            tissue_scale_px: None,
            nucleus_spacing_px: 20,
            nucleus_fill: 0.8,
            nucleus_radius_px: [4.0, 12.0],
            nucleus_max_elongation: 2.6,
            stain_variation: 0.25,
            noise_sigma: 3.0,
            background_rgb: [240, 240, 240],
        }
    }
}

impl SynthSpec {
    /// A slide of the given size and seed with default appearance.
    pub fn new(width: u64, height: u64, seed: u64) -> Self {
        Self {
            width,
            height,
            seed,
            ..Self::default()
        }
    }

    /// Checks that every parameter is in its supported range.
    pub fn validate(&self) -> Result<(), SynthError> {
        let [r_min, r_max] = self.nucleus_radius_px;
        check(
            self.width >= 1 && self.height >= 1,
            "width and height must be at least 1",
        )?;
        check(
            (0.0..=1.0).contains(&self.tissue_coverage),
            "tissue_coverage must be in [0, 1]",
        )?;
        check(
            self.tissue_scale_px
                .is_none_or(|s| (16.0..=1e7).contains(&s)),
            "tissue_scale_px must be in [16, 1e7]",
        )?;
        check(
            (4..=256).contains(&self.nucleus_spacing_px),
            "nucleus_spacing_px must be in [4, 256]",
        )?;
        check(
            (0.0..=1.0).contains(&self.nucleus_fill),
            "nucleus_fill must be in [0, 1]",
        )?;
        check(
            RADIUS.contains(&r_min) && RADIUS.contains(&r_max) && r_min <= r_max,
            "nucleus_radius_px must be [min, max] with 1 <= min <= max <= 64",
        )?;
        check(
            (1.0..=4.0).contains(&self.nucleus_max_elongation),
            "nucleus_max_elongation must be in [1, 4]",
        )?;
        check(
            (0.0..=1.0).contains(&self.stain_variation),
            "stain_variation must be in [0, 1]",
        )?;
        check(
            (0.0..=50.0).contains(&self.noise_sigma),
            "noise_sigma must be in [0, 50]",
        )
    }
}

const RADIUS: RangeInclusive<f32> = 1.0..=64.0;

fn check(ok: bool, rule: &str) -> Result<(), SynthError> {
    if ok {
        Ok(())
    } else {
        Err(SynthError::InvalidSpec(rule.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synthetic slide spec: {0}")]
    InvalidSpec(String),
    #[error("{width}x{height} px is too large for a single PNG (limit {limit} px)")]
    TooLarge { width: u64, height: u64, limit: u64 },
    #[error("cannot create {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
}

impl SynthError {
    /// The spec or the output path is at fault (exit code 2), not the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_) | Self::TooLarge { .. } | Self::Io { .. }
        )
    }
}
