//! Streaming writer of pyramidal tiled BigTIFFs (masks and RGB images) that OpenSlide opens
//! as "generic-tiff".
//!
//! Level-0 pixels arrive top to bottom, one tile row at a time ([`PyramidWriter::write_tile_row`])
//! or in any number of whole rows ([`PyramidWriter::write_rows`], which buffers one tile
//! row); every reduced level (each half the previous, rounded up, down to a single tile) is
//! built on the fly: the writer holds about `tile_size × width × channels` bytes (besides
//! the caller's rows) whatever the height, an eighth of `tile_size × width` for binary
//! masks ([`Channels::Binary`]). All levels go in the main IFD chain, reduced ones with
//! NewSubfileType=1.
//!
//! ```no_run
//! use slidestream::tiff::{PyramidOptions, PyramidWriter};
//! # fn main() -> Result<(), slidestream::tiff::TiffWriteError> {
//! let (width, height) = (20_000, 15_000);
//! let options = PyramidOptions {
//!     mpp: Some((0.25, 0.25)),
//!     description: "nuclei mask of slide.svs, threshold 0.5".into(),
//!     ..PyramidOptions::default()
//! };
//! let mut writer = PyramidWriter::create("mask.tif".as_ref(), width, height, options)?;
//! while writer.rows_expected() > 0 {
//!     let rows = vec![0u8; width as usize * writer.rows_expected() as usize];
//!     writer.write_tile_row(&rows)?;
//! }
//! let path = writer.finish()?;
//! # Ok(()) }
//! ```

mod codec;
mod error;
mod options;
mod pyramid;
mod sink;
mod tags;

pub use error::TiffWriteError;
pub use options::{Channels, Compression, Downsample, PyramidOptions};

use crate::atomic_file::{CommitError, Durability, PartialFile};
use crate::bit_rows::BitRows;
use codec::{Encoded, PixelKey, TileCodec};
use pyramid::{Emit, Pyramid, Strip, TileRows};
use sink::{Chunk, Sink};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use tags::TagTemplate;

/// Writes one pyramidal tiled BigTIFF from level-0 tile rows.
///
/// The file is built as `NAME.partial` next to `NAME` and renamed by [`finish`]; an error,
/// or dropping the writer before `finish` (cancellation), removes the partial file, so
/// nothing ever exists under `NAME` unless it is complete. An existing `NAME` is replaced.
///
/// Output bytes depend only on the pixels and options (tiles are compressed in parallel but
/// written in order), given a fixed [`PyramidOptions::date_time`].
///
/// [`finish`]: PyramidWriter::finish
pub struct PyramidWriter {
    channels: usize,
    rows_written: u32,
    pyramid: Pyramid,
    /// The tile row being filled by [`write_rows`](Self::write_rows) (and, for binary
    /// images, where every tile row is packed): `buffered` rows so far.
    level0: TileRows,
    buffered: u32,
    /// `None` once finished or stopped by an error. Declared before `file`: dropping it
    /// stops the writer thread before the file it writes is removed.
    output: Option<Output>,
    /// Owns `NAME.partial`: removes it on drop unless committed.
    file: PartialFile,
}

impl PyramidWriter {
    /// Validates `options`, creates `path` + ".partial" and starts the writer thread.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        options: PyramidOptions,
    ) -> Result<Self, TiffWriteError> {
        options.validate(path)?;
        if width == 0 || height == 0 {
            return Err(TiffWriteError::EmptyImage {
                path: path.to_path_buf(),
                width,
                height,
            });
        }
        let Some(partial) = PartialFile::new(path) else {
            return Err(TiffWriteError::InvalidOptions {
                path: path.to_path_buf(),
                reason: "the output path has no file name".into(),
            });
        };

        let channels = options.channels.samples();
        let dims = pyramid::level_dimensions(width, height, options.tile_size);
        let codec = TileCodec::new(
            options.compression,
            options.predictor,
            options.tile_size,
            channels,
        );
        let tags = TagTemplate::new(&options, codec.predictor());
        let create_error = |source| TiffWriteError::Create {
            path: partial.partial().to_path_buf(),
            source,
        };
        let file = File::create(partial.partial()).map_err(create_error)?;
        // On failure `partial` is dropped, which removes the file.
        let sink = Sink::spawn(file, dims.clone(), tags).map_err(create_error)?;
        Ok(Self {
            channels,
            rows_written: 0,
            level0: match options.channels {
                // Bytes are only buffered once `write_rows` needs them.
                Channels::Binary => TileRows::new(width, options.tile_size, None),
                _ => TileRows::Bytes(Vec::new()),
            },
            buffered: 0,
            pyramid: Pyramid::new(
                dims,
                options.tile_size,
                options.channels,
                options.downsample,
            ),
            output: Some(Output {
                codec,
                sink,
                shared: HashSet::new(),
            }),
            file: partial,
        })
    }

    /// Sizes (width, height) of level 0 and every reduced level, largest first.
    pub fn level_dimensions(&self) -> Vec<(u32, u32)> {
        self.pyramid.dims().to_vec()
    }

    /// Rows the next [`write_tile_row`](Self::write_tile_row) must hold: `tile_size`, fewer
    /// for the last tile row, 0 once the image is complete.
    pub fn rows_expected(&self) -> u32 {
        let (_, height) = self.pyramid.dims()[0];
        let tile = self.pyramid.tile();
        tile.min(height - self.rows_written)
    }

    /// Appends the next tile row: [`rows_expected`](Self::rows_expected) full-width rows,
    /// `width × channels × rows` bytes, pixels interleaved (RGBRGB... for RGB).
    pub fn write_tile_row(&mut self, rows: &[u8]) -> Result<(), TiffWriteError> {
        let count = self.check_next_row()?;
        self.check_rows(rows, count)?;
        match &mut self.level0 {
            TileRows::Bits(bits) => {
                pack_rows(bits, 0, rows);
                self.push_level0(count)
            }
            TileRows::Bytes(_) => self.push(Strip::Pixels(rows), count),
        }
    }

    /// Appends whole rows, any number of them up to the image's end: each tile row goes out
    /// once complete. Costs one tile row of buffer (none for rows that arrive as whole tile
    /// rows) where [`write_tile_row`](Self::write_tile_row) costs none.
    pub fn write_rows(&mut self, rows: &[u8]) -> Result<(), TiffWriteError> {
        let row_bytes = self.pyramid.dims()[0].0 as usize * self.channels;
        let mut rest = rows;
        while !rest.is_empty() {
            let expected = self.check_next_row()?;
            let wanted = (expected - self.buffered) as usize * row_bytes;
            let (now, later) = rest.split_at(wanted.min(rest.len()));
            rest = later;
            if self.buffered == 0 && now.len() == wanted {
                self.write_tile_row(now)?;
                continue;
            }
            if now.len() % row_bytes != 0 {
                return Err(TiffWriteError::PartialRow {
                    path: self.file.path().to_path_buf(),
                    got: now.len(),
                    row_bytes,
                });
            }
            let first = self.buffered as usize;
            match &mut self.level0 {
                TileRows::Bits(bits) => pack_rows(bits, first, now),
                TileRows::Bytes(buf) => {
                    buf.resize(expected as usize * row_bytes, 0);
                    buf[first * row_bytes..][..now.len()].copy_from_slice(now);
                }
            }
            self.buffered += (now.len() / row_bytes) as u32;
            if self.buffered == expected {
                self.push_level0(expected)?;
            }
        }
        Ok(())
    }

    /// Sends the buffered tile row (`count` rows) on.
    fn push_level0(&mut self, count: u32) -> Result<(), TiffWriteError> {
        self.buffered = 0;
        let row_bytes = self.pyramid.dims()[0].0 as usize * self.channels;
        // Taken out so `push` can borrow `self` mutably; put back afterwards.
        let level0 = std::mem::replace(&mut self.level0, TileRows::Bytes(Vec::new()));
        let result = self.push(level0.strip(count, row_bytes), count);
        self.level0 = level0;
        result
    }

    /// Refuses `rows` unless it is `count` whole rows that begin a tile row.
    fn check_rows(&self, rows: &[u8], count: u32) -> Result<(), TiffWriteError> {
        self.check_whole_tile_row()?;
        let width = self.pyramid.dims()[0].0;
        let expected = width as usize * self.channels * count as usize;
        if rows.len() != expected {
            return Err(TiffWriteError::RowLength {
                path: self.file.path().to_path_buf(),
                index: self.rows_written / self.pyramid.tile(),
                got: rows.len(),
                expected,
                width,
                channels: self.channels,
                rows: count,
            });
        }
        Ok(())
    }

    /// Appends an all-zero tile row without the caller building one: no pixels are
    /// scanned or compressed, every tile points at one shared copy.
    pub fn write_empty_tile_row(&mut self) -> Result<(), TiffWriteError> {
        let count = self.check_next_row()?;
        self.check_whole_tile_row()?;
        self.push(Strip::Zeros, count)
    }

    /// Writes the IFDs and renames the partial file to its final name, which is returned.
    /// Fails (and removes the partial file) when rows are missing or writing fails.
    pub fn finish(mut self) -> Result<PathBuf, TiffWriteError> {
        let height = self.pyramid.dims()[0].1;
        if self.rows_written < height {
            return Err(TiffWriteError::Incomplete {
                path: self.file.path().to_path_buf(),
                written: self.rows_written,
                height,
            });
        }
        let output = self.output.take().ok_or_else(|| self.stopped())?;
        output.sink.finish().map_err(|e| self.write_error(e))?;
        let (partial, path) = (
            self.file.partial().to_path_buf(),
            self.file.path().to_path_buf(),
        );
        self.file
            .commit(Durability::RenameOnly)
            .map_err(|e| match e {
                CommitError::Rename(source) => TiffWriteError::Rename {
                    from: partial,
                    path,
                    source,
                },
                CommitError::Sync(e) | CommitError::SyncFolder(e) => TiffWriteError::Write {
                    path,
                    source: tiff::TiffError::IoError(e),
                },
            })
    }

    /// Refuses to start a tile row while `write_rows` has buffered part of one.
    fn check_whole_tile_row(&self) -> Result<(), TiffWriteError> {
        match self.buffered {
            0 => Ok(()),
            buffered => Err(TiffWriteError::MidTileRow {
                path: self.file.path().to_path_buf(),
                buffered,
            }),
        }
    }

    fn check_next_row(&self) -> Result<u32, TiffWriteError> {
        if self.output.is_none() {
            return Err(self.stopped());
        }
        match self.rows_expected() {
            0 => Err(TiffWriteError::TooManyRows {
                path: self.file.path().to_path_buf(),
                height: self.pyramid.dims()[0].1,
            }),
            count => Ok(count),
        }
    }

    fn push(&mut self, strip: Strip<'_>, count: u32) -> Result<(), TiffWriteError> {
        let Some(output) = self.output.as_mut() else {
            return Err(self.stopped());
        };
        if let Err(e) = self.pyramid.push(0, strip, count, output) {
            // The thread has stopped; the file is useless from here on.
            self.output = None;
            self.file.discard();
            return Err(self.write_error(e));
        }
        self.rows_written += count;
        Ok(())
    }

    fn stopped(&self) -> TiffWriteError {
        TiffWriteError::Stopped {
            path: self.file.path().to_path_buf(),
        }
    }

    fn write_error(&self, source: tiff::TiffError) -> TiffWriteError {
        TiffWriteError::Write {
            path: self.file.path().to_path_buf(),
            source,
        }
    }
}

impl std::fmt::Debug for PyramidWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyramidWriter")
            .field("path", &self.file.path())
            .field("levels", &self.pyramid.dims())
            .field("rows_written", &self.rows_written)
            .field("stopped", &self.output.is_none())
            .finish()
    }
}

/// Packs whole rows of 0/non-zero bytes into `bits` from row `first` on.
fn pack_rows(bits: &mut BitRows, first: usize, rows: &[u8]) {
    for (y, row) in rows.chunks_exact(bits.width()).enumerate() {
        bits.pack(first + y, 0, row);
    }
}

/// Encodes finished tile rows and hands them to the writer thread.
struct Output {
    codec: TileCodec,
    sink: Sink,
    /// Constant-tile keys whose bytes the thread already has.
    shared: HashSet<PixelKey>,
}

impl Emit<tiff::TiffError> for Output {
    fn emit(
        &mut self,
        level: usize,
        strip: Strip<'_>,
        width: u32,
        rows: u32,
    ) -> Result<(), tiff::TiffError> {
        let chunks = self
            .codec
            .encode_strip(strip, width, rows)
            .into_iter()
            .map(|tile| match tile {
                Encoded::Data(bytes) => Chunk::Data(bytes),
                Encoded::Constant(key) => Chunk::Shared {
                    key,
                    first: self
                        .shared
                        .insert(key)
                        .then(|| self.codec.encode_constant(key)),
                },
            })
            .collect();
        self.sink.send(level, chunks)
    }
}
