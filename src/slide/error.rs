use std::path::PathBuf;

/// Why a slide could not be opened or read. Every variant names the file, so a cohort
/// report line is enough to find and fix the problem.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    #[error("{0}: no such file or directory; check the path")]
    NotFound(PathBuf),

    #[error(
        "{path}: not a supported slide ({reason}); supported are OpenSlide formats \
         (SVS, NDPI, MRXS, SCN, BIF, DICOM folder, tiled TIFF, ...) and PNG/JPEG/TIFF images"
    )]
    Unsupported { path: PathBuf, reason: String },

    #[error("{path}: unreadable slide data ({reason}); the file may be truncated or damaged")]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "{path}: {width}x{height} plain image is too large to load whole; convert it to a \
         tiled pyramidal TIFF (e.g. `vips tiffsave IN OUT.tif --tile --pyramid --bigtiff`)"
    )]
    TooLarge {
        path: PathBuf,
        width: u64,
        height: u64,
    },

    #[error("{path}: reading stopped (interrupted)")]
    Interrupted { path: PathBuf },

    #[error("{path}: level {level} does not exist (the slide has {count} levels)")]
    InvalidLevel {
        path: PathBuf,
        level: usize,
        count: usize,
    },
}
