//! Access to whole-slide images: one trait, several readers.
//!
//! Everything downstream (tissue detection, training crops, segmentation tiles) reads pixels
//! through [`Slide`], so a new format is one new implementation here.

pub mod discover;
mod error;
pub mod geometry;
pub mod grid;
mod image_file;
mod jpeg_tiles;
mod openslide;
mod region;
pub mod resolution;
pub mod stain_sample;
mod thumbnail;
mod tiff_structure;
pub mod tile_reader;
pub mod tissue;

pub use error::SlideError;
pub use image_file::ImageSlide;
pub use openslide::{library_version as openslide_version, OpenSlideSlide};
use region::clip;
pub use region::RgbRegion;
pub use thumbnail::{read_overview, Overview};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One level of a slide pyramid; level 0 is full resolution.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Level {
    pub width: u64,
    pub height: u64,
    /// Level-0 pixels per pixel of this level (1.0 for level 0).
    pub downsample: f64,
}

/// A readable slide. Implementations are `Send + Sync`: many decode workers call
/// [`Slide::read_region`] concurrently on one shared instance.
pub trait Slide: Send + Sync {
    /// The file or folder the slide was opened from (used in error messages).
    fn path(&self) -> &Path;
    /// Pyramid levels, level 0 first; never empty.
    fn levels(&self) -> &[Level];
    /// Microns per pixel at level 0, `None` when the file does not say.
    fn mpp(&self) -> Option<(f64, f64)>;
    /// Format or scanner vendor, e.g. "aperio", "hamamatsu", "generic-tiff", "image".
    fn vendor(&self) -> &str;
    /// Format-specific metadata as key/value pairs.
    fn properties(&self) -> &BTreeMap<String, String>;
    /// Reads `w × h` pixels of `level` whose top-left corner is `(x, y)` in *that level's*
    /// coordinates. Pixels outside the slide are white (255, 255, 255), as OpenSlide renders
    /// transparent areas over a white background.
    fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
    ) -> Result<RgbRegion, SlideError>;

    /// The geometry of `level`, or an error naming the slide when it has no such level.
    fn level(&self, level: usize) -> Result<Level, SlideError> {
        self.levels()
            .get(level)
            .copied()
            .ok_or_else(|| SlideError::InvalidLevel {
                path: self.path().to_path_buf(),
                level,
                count: self.levels().len(),
            })
    }

    /// Tiles found damaged (and decoded as far as they went) by the reads so far; only the
    /// direct JPEG path can tell, see `jpeg_tiles`.
    fn damaged_tiles(&self) -> u64 {
        0
    }

    fn dimensions(&self) -> (u64, u64) {
        let l0 = self.levels()[0];
        (l0.width, l0.height)
    }
}

/// How slides are opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Decode the JPEG tiles of Aperio SVS and generic tiled TIFF slides directly (several
    /// times faster than OpenSlide's `read_region`); `false` reads everything through
    /// OpenSlide.
    pub fast_jpeg: bool,
    /// Read everything through OpenSlide, whose libjpeg refuses damaged JPEG data that the
    /// fast path decodes without a sign (11 of 12 single flipped bits in the CMU slide's
    /// tiles, against 0): slower, but a damaged tile fails the read. Overrides `fast_jpeg`.
    pub strict_decoding: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            fast_jpeg: true,
            strict_decoding: false,
        }
    }
}

/// Opens any supported slide with default options: PNG/JPEG and strip TIFFs as plain
/// images, everything else (including tiled TIFF) through OpenSlide.
pub fn open(path: &Path) -> Result<Arc<dyn Slide>, SlideError> {
    open_with(path, OpenOptions::default())
}

/// [`open`] with explicit options.
pub fn open_with(path: &Path, options: OpenOptions) -> Result<Arc<dyn Slide>, SlideError> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Err(SlideError::NotFound(path.to_path_buf()));
    };
    // Opening a FIFO blocks until a writer appears, and a device is endless: refuse both
    // before any reader touches them, so no slide can hang a run.
    if !metadata.is_file() && !metadata.is_dir() {
        return Err(SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{}, not a regular file", file_kind(&metadata)),
        });
    }
    if ImageSlide::is_plain_image_extension(path) {
        return Ok(Arc::new(ImageSlide::open(path)?));
    }
    let file = if path.is_dir() {
        dicom_series_file(path)?
    } else {
        path.to_path_buf()
    };
    let directories = if is_tiff_file(&file) {
        // A truncated slide often still opens (its directories come first) and would
        // only fail on a missing tile hours later: check every strip/tile is present.
        Some(
            tiff_structure::read_directories(&file).map_err(|reason| SlideError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })?,
        )
    } else {
        None
    };
    match OpenSlideSlide::open(path, &file) {
        Ok(mut slide) => {
            let fast = options.fast_jpeg && !options.strict_decoding;
            if let Some(directories) = directories.as_deref().filter(|_| fast) {
                slide.use_jpeg_tiles(&file, directories);
            }
            Ok(Arc::new(slide))
        }
        // OpenSlide declines strip TIFFs (e.g. MoNuSeg tiles) and some single images.
        Err(SlideError::Unsupported { .. }) if directories.is_some() => {
            Ok(Arc::new(ImageSlide::open(path)?))
        }
        Err(e) => Err(e),
    }
}

/// What a non-regular file is, in words.
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// OpenSlide opens a DICOM WSI through any file of the series; a folder is accepted
/// when it holds `.dcm` files.
fn dicom_series_file(dir: &Path) -> Result<std::path::PathBuf, SlideError> {
    let unsupported = |reason: String| SlideError::Unsupported {
        path: dir.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| unsupported(e.to_string()))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")))
        .min()
        .ok_or_else(|| unsupported("a folder without .dcm files; give a slide file".into()))
}

/// True when the file starts with a TIFF or BigTIFF signature.
fn is_tiff_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && matches!(&magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+")
}
