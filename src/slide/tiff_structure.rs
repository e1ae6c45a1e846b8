//! A minimal TIFF/BigTIFF directory walker: reads every IFD's strip/tile byte ranges and
//! checks they lie inside the file. It exists because a truncated slide often still opens
//! (its directories come first) and only fails hours later on a missing tile; the `tiff`
//! crate's decoder cannot be used for this as it rejects compressions it does not decode
//! (JPEG 2000, vendor codecs) that OpenSlide reads fine.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const TAG_STRIP_OFFSETS: u16 = 273;
const TAG_STRIP_BYTE_COUNTS: u16 = 279;
const TAG_TILE_OFFSETS: u16 = 324;
const TAG_TILE_BYTE_COUNTS: u16 = 325;
const TAG_TILE_WIDTH: u16 = 322;
/// More directories than any real slide has: guards against IFD cycles.
const MAX_DIRECTORIES: usize = 10_000;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiffSummary {
    pub directories: usize,
    /// Whether the first directory is tiled (OpenSlide's generic TIFF needs tiles).
    pub first_is_tiled: bool,
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

    /// The integer values of one IFD entry starting at `entry`.
    fn values(&mut self, entry: u64) -> Result<Vec<u64>, String> {
        let kind = self.u16_at(entry + 2)?;
        let size: u64 = match kind {
            3 => 2,  // SHORT
            4 => 4,  // LONG
            16 => 8, // LONG8
            13 => 4, // IFD
            18 => 8, // IFD8
            _ => return Ok(Vec::new()),
        };
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

/// Walks the IFD chain of a TIFF-family file and checks that every strip or tile lies
/// inside the file. Errors describe what is missing, for a "truncated or damaged" message.
pub fn check(path: &Path) -> Result<TiffSummary, String> {
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
    let mut summary = TiffSummary {
        directories: 0,
        first_is_tiled: false,
    };
    while next != 0 {
        if summary.directories == MAX_DIRECTORIES {
            return Err("the directory chain loops".into());
        }
        let (count, entries_at, entry_size) = if r.big_tiff {
            (r.offset_at(next)?, next + 8, 20)
        } else {
            (r.u16_at(next)?, next + 2, 12)
        };
        let mut offsets = Vec::new();
        let mut counts = Vec::new();
        for i in 0..count {
            let entry = entries_at + i * entry_size;
            match r.u16_at(entry)? as u16 {
                TAG_STRIP_OFFSETS | TAG_TILE_OFFSETS => offsets = r.values(entry)?,
                TAG_STRIP_BYTE_COUNTS | TAG_TILE_BYTE_COUNTS => counts = r.values(entry)?,
                TAG_TILE_WIDTH if summary.directories == 0 => summary.first_is_tiled = true,
                _ => {}
            }
        }
        let data_end = offsets
            .iter()
            .zip(&counts)
            .map(|(o, c)| o.saturating_add(*c))
            .max()
            .unwrap_or(0);
        if data_end > len {
            return Err(format!(
                "image data of directory {} ends at byte {data_end}, but the file has only {len} bytes",
                summary.directories
            ));
        }
        summary.directories += 1;
        next = r.offset_at(entries_at + count * entry_size)?;
    }
    Ok(summary)
}
