//! Slides read through the OpenSlide C library (SVS, NDPI, MRXS, DICOM, tiled TIFF, ...).

use super::jpeg_tiles::JpegTiles;
use super::tiff_structure::Directory;
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
    /// OpenSlide 4.0.1 returns the stored YCbCr samples of some DICOM JPEG series
    /// (tiles copied from SVS, labelled RGB); we convert them back to RGB.
    ycbcr_as_rgb: bool,
    /// Direct JPEG tile decoding for the levels that allow it.
    jpeg_tiles: Option<JpegTiles>,
}

/// Vendors whose levels are plain tiled TIFF directories, so that decoding their tiles
/// directly gives OpenSlide's pixels (others overlap tiles, stitch, or need corrections).
const PLAIN_TIFF_VENDORS: [&str; 2] = ["aperio", "generic-tiff"];

/// The linked OpenSlide library's version string.
pub fn library_version() -> String {
    OpenSlide::version().unwrap_or_else(|e| format!("unknown ({e})"))
}

impl OpenSlideSlide {
    /// Opens `file` through OpenSlide; `path` is what the user named (a DICOM folder's
    /// path rather than the series file picked from it) and is used in messages.
    pub fn open(path: &Path, file: &Path) -> Result<Self, SlideError> {
        let corrupt = |e: OpenSlideError| map_error(path, e);
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
        // OpenSlide records the format it detected; asking detect_vendor would reopen the file.
        let vendor = properties
            .get("openslide.vendor")
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let mut slide = Self {
            path: path.to_path_buf(),
            inner,
            levels,
            properties,
            vendor,
            mpp,
            ycbcr_as_rgb: false,
            jpeg_tiles: None,
        };
        if slide.may_return_ycbcr() {
            // The coarsest level with enough pixels to judge (the tiniest ones are 1×1).
            let level = slide
                .levels
                .iter()
                .rposition(|l| l.width * l.height >= 128 * 128)
                .unwrap_or(0);
            let l = slide.levels[level];
            let (w, h) = (l.width.min(512) as u32, l.height.min(512) as u32);
            let sample = slide.read_region(level, 0, 0, w, h)?;
            slide.ycbcr_as_rgb = looks_like_ycbcr(&sample.pixels);
            if slide.ycbcr_as_rgb {
                tracing::warn!(
                    slide = %path.display(),
                    "OpenSlide returns YCbCr for this DICOM JPEG series; converting to RGB"
                );
            }
        }
        Ok(slide)
    }

    /// Switches the levels stored as plain JPEG tiles to direct decoding.
    pub fn use_jpeg_tiles(&mut self, file: &Path, directories: &[Directory]) {
        if PLAIN_TIFF_VENDORS.contains(&self.vendor.as_str()) {
            self.jpeg_tiles = JpegTiles::new(file, directories, &self.levels);
        }
    }

    /// DICOM JPEG-baseline series labelled RGB: OpenSlide trusts the label, but tiles
    /// copied from SVS files are often YCbCr-coded (OpenSlide issue #772 and relatives).
    fn may_return_ycbcr(&self) -> bool {
        let prop = |k: &str| self.properties.get(k).map(String::as_str);
        self.vendor == "dicom"
            && prop("dicom.TransferSyntaxUID") == Some("1.2.840.10008.1.2.4.50")
            && prop("dicom.PhotometricInterpretation") == Some("RGB")
    }
}

/// True when bright pixels have their 2nd and 3rd channels near 128: the signature of
/// YCbCr (near-white glass is Y≈240, Cb≈Cr≈128); real RGB glass is near-grey-white.
fn looks_like_ycbcr(pixels: &[u8]) -> bool {
    let bright: Vec<u32> = pixels
        .chunks_exact(3)
        .filter(|p| p[0] > 200)
        .map(|p| u32::from(p[1].abs_diff(128)) + u32::from(p[2].abs_diff(128)))
        .collect();
    if bright.len() < 16 {
        return false;
    }
    let near_neutral = bright.iter().filter(|&&d| d < 24).count();
    near_neutral * 10 > bright.len() * 9
}

/// In-place full-range (JFIF) YCbCr → RGB on OpenSlide's BGRA pixels, where the Y, Cb,
/// Cr samples sit in the R, G, B slots. Only opaque pixels carry samples.
fn ycbcr_to_rgb_bgra(pixels: &mut [u8]) {
    for p in pixels.chunks_exact_mut(4).filter(|p| p[3] == 255) {
        let y = f32::from(p[2]);
        let cb = f32::from(p[1]) - 128.0;
        let cr = f32::from(p[0]) - 128.0;
        let channel = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        p[2] = channel(y + 1.402 * cr);
        p[1] = channel(y - 0.344_136 * cb - 0.714_136 * cr);
        p[0] = channel(y + 1.772 * cb);
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

    fn damaged_tiles(&self) -> u64 {
        self.jpeg_tiles.as_ref().map_or(0, JpegTiles::damaged_tiles)
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
        let info = self.level(level)?;
        let mut out = RgbRegion::white(w, h);
        // OpenSlide's safe wrapper takes unsigned coordinates: read only the part inside
        // the level and leave the rest white, which is what OpenSlide itself renders there.
        let Some(visible) = super::clip(x, y, w, h, info.width, info.height) else {
            return Ok(out);
        };
        if let Some(tiles) = self.jpeg_tiles.as_ref().filter(|t| t.covers(level)) {
            tiles
                .read_into(level, &visible, x, y, &mut out)
                .map_err(|reason| SlideError::Corrupt {
                    path: self.path.clone(),
                    reason,
                })?;
            return Ok(out);
        }
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
        let mut bgra = self
            .inner
            .read_region(&region)
            .map_err(|e| map_error(&self.path, e))?;
        if self.ycbcr_as_rgb {
            ycbcr_to_rgb_bgra(&mut bgra);
        }
        out.paste_premultiplied_bgra(&bgra, &visible, x, y);
        Ok(out)
    }
}
