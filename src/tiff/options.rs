//! What the caller chooses about a pyramid: layout, compression, reduction rule and tags.

use super::TiffWriteError;
use std::path::Path;
use std::time::SystemTime;

/// How each tile is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// zlib/"Adobe Deflate" (TIFF compression 8) at zlib's default level 6, as libtiff uses.
    #[default]
    Deflate,
    /// TIFF LZW (compression 5).
    Lzw,
    /// Raw bytes (compression 1); [`PyramidOptions::predictor`] is ignored.
    None,
}

/// How a 2×2 block of one level becomes one pixel of the next.
///
/// Blocks on the right and bottom edges of odd-sized levels have only 1 or 2 pixels; every
/// rule then considers only the pixels that exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Downsample {
    /// Per-sample maximum: a foreground pixel survives reduction (binary masks).
    #[default]
    Max,
    /// Most frequent pixel (all samples compared together), ties going to the larger
    /// value: never invents a value absent from the block (masks, label maps).
    Mode,
    /// Top-left pixel of the block (label maps where any blending is wrong).
    Nearest,
    /// Box average rounded half up. Meant for images (RGB slides): on masks it creates grey
    /// values that are neither foreground nor background.
    Mean,
}

/// Pixel layout of the image; samples are always 8-bit unsigned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Channels {
    /// One sample per pixel, PhotometricInterpretation MinIsBlack (masks, label maps).
    #[default]
    Gray,
    /// Three contiguous samples per pixel, PhotometricInterpretation RGB.
    Rgb,
    /// Binary masks: written as [`Channels::Gray`] with 0 and 255 (any non-zero input pixel
    /// becomes 255), but held at one bit per pixel while the pyramid is built, an eighth of
    /// the memory. Reduces by [`Downsample::Max`], the only rule it accepts.
    Binary,
}

impl Channels {
    /// Samples (bytes) per pixel.
    pub fn samples(self) -> usize {
        match self {
            Channels::Gray | Channels::Binary => 1,
            Channels::Rgb => 3,
        }
    }
}

/// Everything about the output except its size. `Default` gives 512-pixel Deflate tiles with
/// the horizontal predictor, `Max` reduction, grey samples and no resolution tags.
#[derive(Clone, Debug, PartialEq)]
pub struct PyramidOptions {
    /// Tile width and height in pixels: a multiple of 16 (a TIFF rule) from 16 to 4096.
    pub tile_size: u32,
    pub compression: Compression,
    /// Horizontal differencing before compression (TIFF Predictor=2); shrinks Deflate and
    /// LZW output, ignored for [`Compression::None`].
    pub predictor: bool,
    pub downsample: Downsample,
    pub channels: Channels,
    /// Level-0 pixel size in micrometres (x, y). Written as centimetre XResolution /
    /// YResolution on every level, scaled by the level's downsample; `None` writes no
    /// resolution tags.
    pub mpp: Option<(f64, f64)>,
    /// Plain ASCII text for ImageDescription on level 0 (software, source slide, channel,
    /// threshold...). Empty writes no tag. See [`PyramidOptions::validate`] for what is
    /// refused.
    pub description: String,
    /// Software tag on every level.
    pub software: String,
    /// DateTime tag; `None` uses the time [`super::PyramidWriter::create`] runs. Set it to
    /// make the output bytes reproducible.
    pub date_time: Option<SystemTime>,
}

impl Default for PyramidOptions {
    fn default() -> Self {
        Self {
            tile_size: 512,
            compression: Compression::default(),
            predictor: true,
            downsample: Downsample::default(),
            channels: Channels::default(),
            mpp: None,
            description: String::new(),
            software: concat!("slidestream ", env!("CARGO_PKG_VERSION")).to_string(),
            date_time: None,
        }
    }
}

/// Text that makes OpenSlide pick a vendor driver other than generic-tiff (Aperio sniffs the
/// description prefix, Philips and Trestle the Software prefix, Leica/Ventana/Philips XML).
const VENDOR_PREFIXES: [&str; 3] = ["aperio", "philips", "medscan"];

impl PyramidOptions {
    /// Checks the options before anything is written to `path` (named in the error).
    ///
    /// Refused: a tile size that is not a multiple of 16 in 16..=4096; binary channels with a
    /// reduction other than Max; an MPP that is not
    /// finite and positive; description or software text that is not printable ASCII (tabs and
    /// newlines allowed), that
    /// contains "xml" in any case, or that starts with a vendor name OpenSlide sniffs
    /// ("Aperio", "Philips", "MedScan") — any of these would make OpenSlide open the file
    /// with a vendor driver instead of generic-tiff.
    pub fn validate(&self, path: &Path) -> Result<(), TiffWriteError> {
        let invalid = |reason: String| TiffWriteError::InvalidOptions {
            path: path.to_path_buf(),
            reason,
        };
        if self.tile_size % 16 != 0 || !(16..=4096).contains(&self.tile_size) {
            return Err(invalid(format!(
                "tile size {} is not a multiple of 16 between 16 and 4096; use 256 or 512",
                self.tile_size
            )));
        }
        if self.channels == Channels::Binary && self.downsample != Downsample::Max {
            return Err(invalid(format!(
                "binary images reduce by Max, not {:?}; use Downsample::Max or Channels::Gray",
                self.downsample
            )));
        }
        if let Some((x, y)) = self.mpp {
            if !(x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0) {
                return Err(invalid(format!(
                    "MPP ({x}, {y}) must be two positive micrometre values; pass None when \
                     the pixel size is unknown"
                )));
            }
        }
        check_text("description", &self.description).map_err(&invalid)?;
        check_text("software", &self.software).map_err(&invalid)
    }
}

fn check_text(field: &str, text: &str) -> Result<(), String> {
    let printable = |c: char| c.is_ascii() && (!c.is_ascii_control() || c == '\n' || c == '\t');
    if let Some(c) = text.chars().find(|&c| !printable(c)) {
        return Err(format!(
            "{field} {text:?} contains {c:?}; TIFF ASCII tags take printable ASCII, tabs and \
             newlines only"
        ));
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("xml") {
        return Err(format!(
            "{field} {text:?} contains \"xml\", which makes OpenSlide treat the file as a \
             vendor format; reword it"
        ));
    }
    if let Some(vendor) = VENDOR_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        return Err(format!(
            "{field} {text:?} starts with {vendor:?}, which makes OpenSlide treat the file as \
             a vendor format; put other text first"
        ));
    }
    Ok(())
}
