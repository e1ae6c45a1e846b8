use std::path::PathBuf;

/// Why a pyramid could not be written. Every message names the output file (the final name
/// the caller asked for) and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum TiffWriteError {
    #[error("cannot write {}: {reason}", path.display())]
    InvalidOptions { path: PathBuf, reason: String },

    #[error(
        "cannot write {}: image size {width}×{height} is empty; width and height must be at \
         least 1",
        path.display()
    )]
    EmptyImage {
        path: PathBuf,
        width: u32,
        height: u32,
    },

    #[error(
        "{}: tile row {index} has {got} bytes, expected {expected} (width {width} × {channels} \
         channel(s) × {rows} rows); pass full-width rows, `tile_size` of them except in the \
         last tile row",
        path.display()
    )]
    RowLength {
        path: PathBuf,
        index: u32,
        got: usize,
        expected: usize,
        width: u32,
        channels: usize,
        rows: u32,
    },

    #[error(
        "{}: {got} bytes are not whole rows of {row_bytes} bytes (width × channels); pass \
         full-width rows",
        path.display()
    )]
    PartialRow {
        path: PathBuf,
        got: usize,
        row_bytes: usize,
    },

    #[error(
        "{}: {buffered} rows of the current tile row came through write_rows; complete it \
         with write_rows before calling write_tile_row or write_empty_tile_row",
        path.display()
    )]
    MidTileRow { path: PathBuf, buffered: u32 },

    #[error("{}: all {height} rows are already written; call finish()", path.display())]
    TooManyRows { path: PathBuf, height: u32 },

    #[error(
        "{}: finish() called after {written} of {height} rows; write the remaining tile rows, \
         or drop the writer to cancel",
        path.display()
    )]
    Incomplete {
        path: PathBuf,
        written: u32,
        height: u32,
    },

    #[error(
        "cannot create {}: {source}; check that the directory exists and is writable",
        path.display()
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("writing {} failed: {source}; check free disk space", path.display())]
    Write {
        path: PathBuf,
        source: tiff::TiffError,
    },

    #[error("cannot rename the finished {} to {}: {source}", from.display(), path.display())]
    Rename {
        from: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{}: an earlier error stopped this writer; drop it and write the file again",
        path.display()
    )]
    Stopped { path: PathBuf },
}

impl TiffWriteError {
    /// The caller's request is at fault (options, an empty image, an output folder that is
    /// missing or not writable), not the machine or this writer's use.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidOptions { .. } | Self::EmptyImage { .. } | Self::Create { .. }
        )
    }
}
