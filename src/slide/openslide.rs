//! Slides read through the OpenSlide C library (SVS, NDPI, MRXS, DICOM, tiled TIFF, ...).

use super::{Level, RgbRegion, Slide, SlideError};
use openslide_rs::errors::OpenSlideError;
use openslide_rs::{Address, OpenSlide, Region, Size};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct OpenSlideSlide {
    path: PathBuf,
    inner: OpenSlide,
    levels: Vec<Level>,
    properties: BTreeMap<String, String>,
    vendor: String,
    mpp: Option<(f64, f64)>,
}

/// The linked OpenSlide library's version string.
pub fn library_version() -> String {
    OpenSlide::version().unwrap_or_else(|e| format!("unknown ({e})"))
}

impl OpenSlideSlide {
    /// Opens `file` through OpenSlide; `path` is what the user named (a DICOM folder's
    /// path rather than the series file picked from it) and is used in messages.
    pub fn open(path: &Path, file: &Path) -> Result<Self, SlideError> {
        let corrupt = |e: OpenSlideError| map_error(path, e);
        let vendor = OpenSlide::detect_vendor(file).map_err(corrupt)?;
        let inner = OpenSlide::new(file).map_err(corrupt)?;
        let properties: BTreeMap<String, String> = inner
            .property_names()
            .map_err(corrupt)?
            .into_iter()
            .filter_map(|name| inner.property_value(&name).ok().map(|v| (name, v)))
            .collect();
        let levels = inner
            .all_level_dimensions()
            .iter()
            .zip(inner.all_level_downsamples())
            .map(|(size, &downsample)| Level {
                width: u64::from(size.w),
                height: u64::from(size.h),
                downsample,
            })
            .collect::<Vec<_>>();
        if levels.is_empty() || levels[0].width == 0 || levels[0].height == 0 {
            return Err(SlideError::Corrupt {
                path: path.to_path_buf(),
                reason: "OpenSlide reports no pixels".into(),
            });
        }
        let number = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let mpp = number("openslide.mpp-x").zip(number("openslide.mpp-y"));
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            levels,
            properties,
            vendor,
            mpp,
        })
    }
}

fn map_error(path: &Path, error: OpenSlideError) -> SlideError {
    let path = path.to_path_buf();
    match error {
        OpenSlideError::MissingFile(_) => SlideError::NotFound(path),
        OpenSlideError::UnsupportedFile(_) => SlideError::Unsupported {
            path,
            reason: "OpenSlide does not recognise the format".into(),
        },
        other => SlideError::Corrupt {
            path,
            reason: other.to_string(),
        },
    }
}

impl Slide for OpenSlideSlide {
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
        &self.vendor
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
        let info = *self.levels.get(level).ok_or(SlideError::InvalidLevel {
            path: self.path.clone(),
            level,
            count: self.levels.len(),
        })?;
        let mut out = RgbRegion::white(w, h);
        // OpenSlide's safe wrapper takes unsigned coordinates: read only the part inside
        // the level and leave the rest white, which is what OpenSlide itself renders there.
        let Some(visible) = super::clip(x, y, w, h, info.width, info.height) else {
            return Ok(out);
        };
        let region = Region {
            size: Size {
                w: visible.w,
                h: visible.h,
            },
            level: level as u32,
            // OpenSlide addresses regions in level-0 coordinates.
            address: Address {
                x: (visible.x as f64 * info.downsample).round() as u32,
                y: (visible.y as f64 * info.downsample).round() as u32,
            },
        };
        let bgra = self
            .inner
            .read_region(&region)
            .map_err(|e| map_error(&self.path, e))?;
        out.paste_premultiplied_bgra(&bgra, &visible, x, y);
        Ok(out)
    }
}
