//! The fast read path: JPEG tiles of Aperio SVS and generic tiled TIFF slides decoded
//! directly (zune-jpeg) instead of through OpenSlide's `read_region`, which also decodes
//! JPEG but adds per-call overhead and ARGB compositing; see `benches/read_throughput.rs`
//! for the two side by side. OpenSlide stays the reader for everything else.
//!
//! Colour follows the TIFF container, as OpenSlide does: Aperio writes JPEG tiles whose
//! samples are RGB while the JPEG stream looks like YCbCr, and marks that with
//! PhotometricInterpretation = RGB; such tiles are taken as decoded samples, unconverted.
//!
//! Damaged tiles: JPEG has no checksum. A strict decode catches some damage in the
//! entropy-coded data (a bad Huffman code, a marker inside the data, data running out), and
//! such a tile is decoded again leniently, as browsers show it, named in a warning once and
//! counted ([`JpegTiles::damaged_tiles`], reported in the summary): a lab wants a slide
//! with a few damaged tiles segmented rather than lost, but not garbage taken for tissue
//! silently. Most flipped bits decode without any sign here, while libjpeg (OpenSlide)
//! refuses them, so [`super::OpenOptions::strict_decoding`] reads through OpenSlide instead.

use super::region::Visible;
use super::tiff_structure::Directory;
use super::{Level, RgbRegion};
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zune_core::bytestream::ZCursor;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

const COMPRESSION_JPEG: u16 = 7;
const PHOTOMETRIC_RGB: u16 = 2;
const PHOTOMETRIC_YCBCR: u16 = 6;

/// One pyramid level stored as JPEG tiles.
struct JpegLevel {
    width: u64,
    height: u64,
    tile_w: u32,
    tile_h: u32,
    cols: u64,
    chunks: Vec<(u64, u64)>,
    /// The shared tables without their end-of-image marker, to prefix each tile.
    tables: Vec<u8>,
    /// Strict: every irregularity in the data is an error.
    options: DecoderOptions,
}

/// Where a tile is: slide level, column, row.
type TilePosition = (usize, u64, u64);

/// Direct JPEG tile access for the levels of a slide that allow it.
pub struct JpegTiles {
    path: PathBuf,
    file: File,
    /// Indexed by slide level; `None` where OpenSlide must read.
    levels: Vec<Option<JpegLevel>>,
    /// Damaged tiles seen so far (tiles are read more than once: halos, overviews).
    damaged: Mutex<BTreeSet<TilePosition>>,
}

impl JpegTiles {
    /// Maps each slide level onto a JPEG-compressed, tiled, 3-sample, chunky directory of
    /// the same size, and checks that its first stored tile decodes. `None` when no level
    /// qualifies (other compressions, stripped images, failures fall back to OpenSlide).
    pub fn new(path: &Path, directories: &[Directory], levels: &[Level]) -> Option<Self> {
        let file = File::open(path).ok()?;
        let levels: Vec<Option<JpegLevel>> = levels
            .iter()
            .map(|level| {
                let dir = directories.iter().find(|d| {
                    d.width == level.width
                        && d.height == level.height
                        && d.tile.is_some()
                        && d.compression == COMPRESSION_JPEG
                        && d.samples_per_pixel == 3
                        && d.planar_configuration == 1
                        && matches!(d.photometric, PHOTOMETRIC_RGB | PHOTOMETRIC_YCBCR)
                })?;
                JpegLevel::new(&file, dir)
            })
            .collect();
        levels.iter().any(Option::is_some).then_some(Self {
            path: path.to_path_buf(),
            file,
            levels,
            damaged: Mutex::default(),
        })
    }

    /// How many distinct tiles were found damaged so far.
    pub fn damaged_tiles(&self) -> u64 {
        self.damaged.lock().map_or(0, |set| set.len() as u64)
    }

    /// Decodes tile `(col, row)` of `level`, stored at `chunk`; a damaged one is decoded
    /// leniently, warned about once and counted.
    fn decode_tile(
        &self,
        level: usize,
        l: &JpegLevel,
        (col, row): (u64, u64),
        chunk: (u64, u64),
    ) -> Result<Vec<u8>, String> {
        let stream = l.stream(&self.file, chunk)?;
        let damage = match l.decode(&stream, l.options) {
            Ok(pixels) => return Ok(pixels),
            Err(damage) => damage,
        };
        let pixels = l.decode(&stream, l.options.set_strict_mode(false))?;
        let first_time = self
            .damaged
            .lock()
            .map_or(true, |mut set| set.insert((level, col, row)));
        if first_time {
            tracing::warn!(
                slide = %self.path.display(),
                "JPEG tile ({col}, {row}) of level {level} at byte {} is damaged ({damage}): \
                 its pixels are decoded as far as they go and may be wrong; \
                 --strict-decoding reads through libjpeg, which refuses damaged tiles",
                chunk.0
            );
        }
        Ok(pixels)
    }

    pub fn covers(&self, level: usize) -> bool {
        matches!(self.levels.get(level), Some(Some(_)))
    }

    /// Decodes the tiles under `visible` (level coordinates) into `out`, whose top-left
    /// corner is `(x, y)`. Missing (zero-length) tiles stay white, as OpenSlide shows them.
    pub fn read_into(
        &self,
        level: usize,
        visible: &Visible,
        x: i64,
        y: i64,
        out: &mut RgbRegion,
    ) -> Result<(), String> {
        let l = self.levels[level]
            .as_ref()
            .expect("caller checked covers()");
        let (tw, th) = (u64::from(l.tile_w), u64::from(l.tile_h));
        let (x0, y0) = (visible.x, visible.y);
        let (x1, y1) = (x0 + u64::from(visible.w), y0 + u64::from(visible.h));
        for row in y0 / th..y1.div_ceil(th) {
            for col in x0 / tw..x1.div_ceil(tw) {
                let tile = match l.chunks.get((row * l.cols + col) as usize) {
                    Some(&(_, 0)) => continue,
                    Some(&chunk) => self.decode_tile(level, l, (col, row), chunk)?,
                    None => return Err(format!("tile ({col}, {row}) is missing")),
                };
                // Intersection of this tile with the visible block, in level coordinates.
                let (tx, ty) = (col * tw, row * th);
                let (ix0, iy0) = (tx.max(x0), ty.max(y0));
                let (ix1, iy1) = (
                    (tx + tw).min(x1).min(l.width),
                    (ty + th).min(y1).min(l.height),
                );
                let n = (ix1 - ix0) as usize * 3;
                for py in iy0..iy1 {
                    let src = (((py - ty) * tw + (ix0 - tx)) * 3) as usize;
                    let dst = (((py as i64 - y) as usize) * out.width as usize
                        + (ix0 as i64 - x) as usize)
                        * 3;
                    out.pixels[dst..dst + n].copy_from_slice(&tile[src..src + n]);
                }
            }
        }
        Ok(())
    }
}

impl JpegLevel {
    fn new(file: &File, dir: &Directory) -> Option<Self> {
        let (tile_w, tile_h) = dir.tile?;
        let mut tables = match dir.jpeg_tables {
            Some((offset, len)) if len >= 4 => read_at(file, offset, len).ok()?,
            _ => Vec::new(),
        };
        if tables.ends_with(&[0xFF, 0xD9]) {
            tables.truncate(tables.len() - 2);
        }
        let mut level = Self {
            width: dir.width,
            height: dir.height,
            tile_w,
            tile_h,
            cols: dir.width.div_ceil(u64::from(tile_w)),
            chunks: dir.chunks.clone(),
            tables,
            options: DecoderOptions::default().set_strict_mode(true),
        };
        let first = *level.chunks.iter().find(|c| c.1 > 0)?;
        // RGB-photometric tiles are used as stored: ask the decoder for its input colour
        // space, which disables its YCbCr→RGB conversion.
        if dir.photometric == PHOTOMETRIC_RGB {
            let stream = level.stream(file, first).ok()?;
            let mut probe = JpegDecoder::new(ZCursor::new(&stream));
            probe.decode_headers().ok()?;
            let input = probe.input_colorspace()?;
            level.options = level.options.jpeg_set_out_colorspace(input);
        }
        let decoded = level
            .decode(&level.stream(file, first).ok()?, level.options)
            .ok()?;
        (decoded.len() == (tile_w * tile_h * 3) as usize).then_some(level)
    }

    /// A complete JPEG stream for one tile: shared tables + the tile without its SOI.
    fn stream(&self, file: &File, (offset, len): (u64, u64)) -> Result<Vec<u8>, String> {
        let tile = read_at(file, offset, len)?;
        if self.tables.is_empty() {
            return Ok(tile);
        }
        let mut stream = Vec::with_capacity(self.tables.len() + tile.len());
        stream.extend_from_slice(&self.tables);
        stream.extend_from_slice(tile.strip_prefix(&[0xFF, 0xD8]).unwrap_or(&tile));
        Ok(stream)
    }

    /// Decodes one tile's JPEG `stream` with `options`.
    fn decode(&self, stream: &[u8], options: DecoderOptions) -> Result<Vec<u8>, String> {
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(stream), options);
        let pixels = decoder.decode().map_err(|e| format!("{e:?}"))?;
        let expected = (self.tile_w * self.tile_h * 3) as usize;
        if pixels.len() != expected {
            return Err(format!(
                "decoded to {} bytes, expected {expected}",
                pixels.len()
            ));
        }
        Ok(pixels)
    }
}

fn read_at(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("reading {len} bytes at {offset}: {e}"))?;
    Ok(buf)
}
