//! A minimal TIFF/BigTIFF directory walker: reads every IFD's layout (size, tiling, strip or
//! tile byte ranges, compression, JPEG tables) and checks that all image data lies inside
//! the file. A truncated slide often still opens (its directories come first) and would
//! only fail hours later on a missing tile; the layout also feeds the fast JPEG tile path.
//! The `tiff` crate's decoder cannot do this: it rejects compressions it does not decode
//! (JPEG 2000, vendor codecs) that OpenSlide reads fine.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
// The tag and type numbers the writer (`crate::tiff::tags`) uses, from the same crate.
use tiff::tags::{Tag, Type};

const MAX_DIRECTORIES: usize = 10_000;

/// One image file directory (IFD): what is needed to locate and decode its pixels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub width: u64,
    pub height: u64,
    /// `(width, height)` of a tile; `None` for strip images.
    pub tile: Option<(u32, u32)>,
    /// Byte offset and length of every strip or tile, row-major.
    pub chunks: Vec<(u64, u64)>,
    pub compression: u16,
    pub photometric: u16,
    pub samples_per_pixel: u16,
    pub planar_configuration: u16,
    /// Offset and length of the shared JPEG quantisation/Huffman tables, if any.
    pub jpeg_tables: Option<(u64, u64)>,
}

struct Reader {
    file: File,
    len: u64,
    little_endian: bool,
    big_tiff: bool,
}

impl Reader {
    fn bytes<const N: usize>(&mut self, offset: u64) -> Result<[u8; N], String> {
        if offset + N as u64 > self.len {
            return Err(format!(
                "offset {offset} is past the end of the file ({} bytes)",
                self.len
            ));
        }
        let mut buf = [0u8; N];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }

    fn uint(&self, bytes: &[u8]) -> u64 {
        let mut v = 0u64;
        for (i, &b) in bytes.iter().enumerate() {
            let shift = if self.little_endian {
                i
            } else {
                bytes.len() - 1 - i
            };
            v |= u64::from(b) << (8 * shift);
        }
        v
    }

    fn u16_at(&mut self, offset: u64) -> Result<u64, String> {
        let b = self.bytes::<2>(offset)?;
        Ok(self.uint(&b))
    }

    /// An offset-sized value: 4 bytes in classic TIFF, 8 in BigTIFF.
    fn offset_at(&mut self, offset: u64) -> Result<u64, String> {
        if self.big_tiff {
            let b = self.bytes::<8>(offset)?;
            Ok(self.uint(&b))
        } else {
            let b = self.bytes::<4>(offset)?;
            Ok(self.uint(&b))
        }
    }

    /// Where the values of the IFD entry at `entry` start, and their total byte length.
    fn value_span(&mut self, entry: u64, size: u64) -> Result<(u64, u64), String> {
        let (count, inline_at, slot) = if self.big_tiff {
            (self.offset_at(entry + 4)?, entry + 12, 8)
        } else {
            (self.offset_at(entry + 4)?, entry + 8, 4)
        };
        let total = count.saturating_mul(size);
        let start = if total <= slot {
            inline_at
        } else {
            self.offset_at(inline_at)?
        };
        Ok((start, total))
    }

    /// The integer values of one IFD entry starting at `entry`.
    fn values(&mut self, entry: u64) -> Result<Vec<u64>, String> {
        let kind = self.u16_at(entry + 2)?;
        let size: u64 = match Type::from_u16(kind as u16) {
            Some(Type::SHORT) => 2,
            Some(Type::LONG | Type::IFD) => 4,
            Some(Type::LONG8 | Type::IFD8) => 8,
            _ => return Ok(Vec::new()),
        };
        let (start, total) = self.value_span(entry, size)?;
        if start.saturating_add(total) > self.len {
            return Err(format!(
                "a tag's values at offset {start} run past the end of the file"
            ));
        }
        let mut raw = vec![0u8; total as usize];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut raw))
            .map_err(|e| e.to_string())?;
        Ok(raw
            .chunks_exact(size as usize)
            .map(|c| self.uint(c))
            .collect())
    }
}

/// Reads every directory of a TIFF-family file and checks that all strips and tiles lie
/// inside the file. Errors describe what is missing, for a "truncated or damaged" message.
pub fn read_directories(path: &Path) -> Result<Vec<Directory>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = Reader {
        file,
        len,
        little_endian: true,
        big_tiff: false,
    };
    let header = r.bytes::<4>(0)?;
    r.little_endian = match &header[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return Err("not a TIFF file".into()),
    };
    r.big_tiff = match r.uint(&header[2..4]) {
        42 => false,
        43 => true,
        _ => return Err("not a TIFF file".into()),
    };
    let mut next = r.offset_at(if r.big_tiff { 8 } else { 4 })?;
    let mut directories = Vec::new();
    while next != 0 {
        if directories.len() == MAX_DIRECTORIES {
            return Err("the directory chain loops".into());
        }
        let (count, entries_at, entry_size) = if r.big_tiff {
            (r.offset_at(next)?, next + 8, 20)
        } else {
            (r.u16_at(next)?, next + 2, 12)
        };
        let mut dir = Directory {
            samples_per_pixel: 1,
            planar_configuration: 1,
            ..Directory::default()
        };
        let (mut offsets, mut counts, mut tile_w, mut tile_h) = (Vec::new(), Vec::new(), 0, 0);
        for i in 0..count {
            let entry = entries_at + i * entry_size;
            let tag = r.u16_at(entry)? as u16;
            let first = |r: &mut Reader| -> Result<u64, String> {
                Ok(r.values(entry)?.first().copied().unwrap_or(0))
            };
            match Tag::from_u16_exhaustive(tag) {
                Tag::ImageWidth => dir.width = first(&mut r)?,
                Tag::ImageLength => dir.height = first(&mut r)?,
                Tag::Compression => dir.compression = first(&mut r)? as u16,
                Tag::PhotometricInterpretation => dir.photometric = first(&mut r)? as u16,
                Tag::SamplesPerPixel => dir.samples_per_pixel = first(&mut r)? as u16,
                Tag::PlanarConfiguration => dir.planar_configuration = first(&mut r)? as u16,
                Tag::TileWidth => tile_w = first(&mut r)? as u32,
                Tag::TileLength => tile_h = first(&mut r)? as u32,
                Tag::StripOffsets | Tag::TileOffsets => offsets = r.values(entry)?,
                Tag::StripByteCounts | Tag::TileByteCounts => counts = r.values(entry)?,
                // UNDEFINED bytes: one byte each.
                Tag::JPEGTables => dir.jpeg_tables = Some(r.value_span(entry, 1)?),
                _ => {}
            }
        }
        dir.tile = (tile_w > 0 && tile_h > 0).then_some((tile_w, tile_h));
        dir.chunks = offsets.into_iter().zip(counts).collect();
        let data_end = dir
            .chunks
            .iter()
            .chain(dir.jpeg_tables.as_ref())
            .map(|(o, c)| o.saturating_add(*c))
            .max()
            .unwrap_or(0);
        if data_end > len {
            return Err(format!(
                "image data of directory {} ends at byte {data_end}, but the file has only {len} bytes",
                directories.len()
            ));
        }
        directories.push(dir);
        next = r.offset_at(entries_at + count * entry_size)?;
    }
    Ok(directories)
}
