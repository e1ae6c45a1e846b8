//! Level geometry, 2×2 reduction, and the row buffers that turn a stream of level-0 tile
//! rows into tile rows of every reduced level.

use super::{Channels, Downsample};
use crate::bit_rows::BitRows;
use rayon::prelude::*;
use std::mem;

/// Level sizes: level 0, then each level half the previous (rounded up) until one tile
/// holds the whole level.
pub(crate) fn level_dimensions(width: u32, height: u32, tile: u32) -> Vec<(u32, u32)> {
    let mut levels = vec![(width, height)];
    let mut last = (width, height);
    while last.0 > tile || last.1 > tile {
        last = (last.0.div_ceil(2), last.1.div_ceil(2));
        levels.push(last);
    }
    levels
}

/// One tile row of some level: `Zeros` lets an all-background row pass through the pyramid
/// without being materialised or scanned; `Bits` holds a binary image's rows (the first
/// `rows` of them, as the caller says).
#[derive(Clone, Copy)]
pub(crate) enum Strip<'a> {
    Zeros,
    Pixels(&'a [u8]),
    Bits(&'a BitRows),
}

/// Where a tile row goes once complete: `emit(level, strip, width, rows)`.
pub(crate) trait Emit<E> {
    fn emit(&mut self, level: usize, strip: Strip<'_>, width: u32, rows: u32) -> Result<(), E>;
}

/// Room for one tile row: bytes, or bits for binary images.
pub(crate) enum TileRows {
    Bytes(Vec<u8>),
    Bits(BitRows),
}

impl TileRows {
    /// Room for `rows` rows of `width` pixels of `channels` samples (`None`: binary).
    pub(crate) fn new(width: u32, rows: u32, channels: Option<usize>) -> Self {
        match channels {
            Some(channels) => TileRows::Bytes(vec![0; rows as usize * width as usize * channels]),
            None => TileRows::Bits(BitRows::new(width as usize, rows as usize)),
        }
    }

    /// The first `rows` rows (of `row_bytes` bytes each when bytes) as a strip.
    pub(crate) fn strip(&self, rows: u32, row_bytes: usize) -> Strip<'_> {
        match self {
            TileRows::Bytes(buf) => Strip::Pixels(&buf[..rows as usize * row_bytes]),
            TileRows::Bits(bits) => Strip::Bits(bits),
        }
    }
}

/// Rows of one reduced level waiting to fill a tile row.
struct Pending {
    buf: TileRows,
    filled: u32,
    done: u32,
    all_zero: bool,
}

/// Holds, for every reduced level, at most one tile row: as level widths halve, about
/// `tile × width × channels` bytes in all (an eighth of `tile × width` for binary images),
/// whatever the image height.
pub(crate) struct Pyramid {
    rule: Downsample,
    /// Samples per pixel; `None` for binary images, held as bits.
    channels: Option<usize>,
    tile: u32,
    dims: Vec<(u32, u32)>,
    /// `pending[k]` collects level `k + 1`.
    pending: Vec<Pending>,
}

impl Pyramid {
    pub(crate) fn new(
        dims: Vec<(u32, u32)>,
        tile: u32,
        channels: Channels,
        rule: Downsample,
    ) -> Self {
        let channels = (channels != Channels::Binary).then(|| channels.samples());
        let pending = dims[1..]
            .iter()
            .map(|&(w, _)| Pending {
                buf: TileRows::new(w, tile, channels),
                filled: 0,
                done: 0,
                all_zero: true,
            })
            .collect();
        Self {
            rule,
            channels,
            tile,
            dims,
            pending,
        }
    }

    pub(crate) fn dims(&self) -> &[(u32, u32)] {
        &self.dims
    }

    pub(crate) fn tile(&self) -> u32 {
        self.tile
    }

    /// Emits `strip` (`rows` rows of `level`), folds it into the next level, and emits that
    /// level's tile row too when it is complete — recursively up the pyramid. Level-0 tile
    /// rows start at multiples of the (even) tile size, so row pairs never straddle two
    /// calls.
    pub(crate) fn push<E>(
        &mut self,
        level: usize,
        strip: Strip<'_>,
        rows: u32,
        out: &mut impl Emit<E>,
    ) -> Result<(), E> {
        let width = self.dims[level].0;
        out.emit(level, strip, width, rows)?;
        let Some(&(next_width, next_height)) = self.dims.get(level + 1) else {
            return Ok(());
        };
        let row_bytes = next_width as usize * self.channels.unwrap_or(1);
        let next_rows = rows.div_ceil(2);
        let pending = &mut self.pending[level];
        let first = pending.filled as usize;
        match (strip, &mut pending.buf) {
            (Strip::Zeros, TileRows::Bytes(buf)) => {
                buf[first * row_bytes..][..next_rows as usize * row_bytes].fill(0);
            }
            (Strip::Zeros, TileRows::Bits(bits)) => bits.clear_rows(first, next_rows as usize),
            (Strip::Pixels(src), TileRows::Bytes(buf)) => {
                let dst = &mut buf[first * row_bytes..][..next_rows as usize * row_bytes];
                let channels = self.channels.expect("bytes are kept for non-binary images");
                reduce(self.rule, channels, src, width as usize, dst);
                pending.all_zero = false;
            }
            (Strip::Bits(src), TileRows::Bits(bits)) => {
                for y in 0..next_rows as usize {
                    let bottom = (2 * y + 1).min(rows as usize - 1);
                    src.reduce_into(2 * y, bottom, bits, first + y);
                }
                pending.all_zero = false;
            }
            _ => unreachable!("a pyramid's strips and rows are both bits or both bytes"),
        }
        pending.filled += next_rows;
        if pending.filled < self.tile && pending.done + pending.filled < next_height {
            return Ok(());
        }

        let filled = mem::take(&mut pending.filled);
        pending.done += filled;
        let all_zero = mem::replace(&mut pending.all_zero, true);
        // Taken out so the recursive call can borrow `self` mutably; put back afterwards.
        let buf = mem::replace(&mut pending.buf, TileRows::Bytes(Vec::new()));
        let strip = if all_zero {
            Strip::Zeros
        } else {
            buf.strip(filled, row_bytes)
        };
        let result = self.push(level + 1, strip, filled, out);
        self.pending[level].buf = buf;
        result
    }
}

/// Reduces `src` (full rows of `width` pixels) by 2×2 into `dst`, which holds
/// `ceil(rows / 2)` rows of `ceil(width / 2)` pixels.
fn reduce(rule: Downsample, channels: usize, src: &[u8], width: usize, dst: &mut [u8]) {
    match channels {
        1 => reduce_channels::<1>(rule, src, width, dst),
        3 => reduce_channels::<3>(rule, src, width, dst),
        _ => unreachable!("channels are 1 or 3"),
    }
}

fn reduce_channels<const C: usize>(rule: Downsample, src: &[u8], width: usize, dst: &mut [u8]) {
    match rule {
        Downsample::Max => reduce_with::<C>(src, width, dst, |[a, b, c, d]| {
            std::array::from_fn(|i| a[i].max(b[i]).max(c[i].max(d[i])))
        }),
        Downsample::Mode => reduce_with::<C>(src, width, dst, mode),
        Downsample::Nearest => reduce_with::<C>(src, width, dst, |[a, ..]| *a),
        Downsample::Mean => reduce_with::<C>(src, width, dst, |[a, b, c, d]| {
            std::array::from_fn(|i| {
                let sum = u16::from(a[i]) + u16::from(b[i]) + u16::from(c[i]) + u16::from(d[i]);
                ((sum + 2) / 4) as u8
            })
        }),
    }
}

/// Most frequent pixel of the block, ties to the larger one.
fn mode<const C: usize>(block: [&[u8; C]; 4]) -> [u8; C] {
    let mut best = block[0];
    let mut best_count = 0;
    for p in block {
        let count = block.iter().filter(|q| **q == p).count();
        if count > best_count || (count == best_count && p > best) {
            (best, best_count) = (p, count);
        }
    }
    *best
}

/// Applies `f` to each block [top-left, top-right, bottom-left, bottom-right]. Blocks cut
/// by the right or bottom edge repeat their existing pixels: that leaves the maximum, the
/// top-left pixel, the mean and the relative counts (hence the mode) of the pixels that do
/// exist unchanged.
fn reduce_with<const C: usize>(
    src: &[u8],
    width: usize,
    dst: &mut [u8],
    f: impl Fn([&[u8; C]; 4]) -> [u8; C] + Sync,
) {
    let stride = width * C;
    let rows = src.len() / stride;
    dst.par_chunks_mut(width.div_ceil(2) * C)
        .enumerate()
        .for_each(|(y, out)| {
            let top = &src[2 * y * stride..][..stride];
            let bottom = if 2 * y + 1 < rows {
                &src[(2 * y + 1) * stride..][..stride]
            } else {
                top
            };
            let pixel = |row: &[u8], x: usize| -> [u8; C] { row[x * C..][..C].try_into().unwrap() };
            for (x, o) in out.chunks_exact_mut(C).enumerate() {
                let left = 2 * x;
                let right = (left + 1).min(width - 1);
                let block = [
                    &pixel(top, left),
                    &pixel(top, right),
                    &pixel(bottom, left),
                    &pixel(bottom, right),
                ];
                o.copy_from_slice(&f(block));
            }
        });
}
