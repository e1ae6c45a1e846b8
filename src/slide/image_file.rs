//! Plain images (PNG, JPEG, strip TIFF such as the MoNuSeg tiles) as single-level slides.
//! They are decoded whole once on open, so their size is capped.

use super::region::clip;
use super::{Level, RgbRegion, Slide, SlideError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest plain image loaded whole (RGB bytes ≈ 3 × this); bigger ones should be tiled.
const MAX_PIXELS: u64 = 20_000 * 20_000;

pub struct ImageSlide {
    path: PathBuf,
    levels: [Level; 1],
    pixels: Vec<u8>,
    properties: BTreeMap<String, String>,
    /// From the file's resolution tags (see [`super::resolution`]).
    mpp: Option<(f64, f64)>,
}

impl ImageSlide {
    /// Extensions that are always read as plain images. TIFF is decided by content: a tiled
    /// TIFF goes to OpenSlide, a strip TIFF comes here.
    pub fn is_plain_image_extension(path: &Path) -> bool {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "bmp"))
    }

    pub fn open(path: &Path) -> Result<Self, SlideError> {
        let unsupported = |e: image::ImageError| SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let open_reader = || {
            image::ImageReader::open(path)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| SlideError::Corrupt {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
        };
        // Check the size from the header before decoding anything.
        let (width, height) = open_reader()?.into_dimensions().map_err(unsupported)?;
        let (width, height) = (u64::from(width), u64::from(height));
        if width * height > MAX_PIXELS {
            return Err(SlideError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
            });
        }
        let reader = open_reader()?;
        let format = reader
            .format()
            .map(|f| format!("{f:?}").to_lowercase())
            .unwrap_or_default();
        let decoded = reader.decode().map_err(|e| match e {
            image::ImageError::Unsupported(_) => unsupported(e),
            other => SlideError::Corrupt {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
        let properties = BTreeMap::from([("image.format".to_string(), format)]);
        let mpp = super::resolution::image_mpp(path).map_err(|e| SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut slide = Self::from_rgb(path, decoded.into_rgb8().into_raw(), width, height, mpp);
        slide.properties = properties;
        Ok(slide)
    }

    /// An image already in memory (RGB bytes, row-major) as a slide of scale `mpp`.
    ///
    /// # Panics
    /// If `pixels` does not hold `width × height` RGB pixels.
    pub fn from_rgb(
        path: &Path,
        pixels: Vec<u8>,
        width: u64,
        height: u64,
        mpp: Option<(f64, f64)>,
    ) -> Self {
        assert_eq!(pixels.len() as u64, width * height * 3, "RGB image size");
        Self {
            path: path.to_path_buf(),
            levels: [Level {
                width,
                height,
                downsample: 1.0,
            }],
            pixels,
            properties: BTreeMap::new(),
            mpp,
        }
    }
}

impl Slide for ImageSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn levels(&self) -> &[Level] {
        &self.levels
    }

    fn mpp(&self) -> Option<(f64, f64)> {
        self.mpp
    }

    fn vendor(&self) -> &str {
        "image"
    }

    fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
    ) -> Result<RgbRegion, SlideError> {
        let l0 = self.level(level)?;
        let mut out = RgbRegion::white(w, h);
        if let Some(visible) = clip(x, y, w, h, l0.width, l0.height) {
            out.paste_rgb(&self.pixels, l0.width, &visible, x, y);
        }
        Ok(out)
    }
}
