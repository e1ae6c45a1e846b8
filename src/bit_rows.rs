//! Binary images at one bit per pixel: the rows a streaming mask has to hold across the
//! slide's whole width (the band of a tile row, the TIFF pyramid's pending tile rows) take
//! an eighth of the memory of 0/255 bytes.
//!
//! Pixel `x` of a row is bit `x % 64` of the row's word `x / 64`. Bits past the width stay
//! zero, so whole words can be compared, counted and reduced without masking the last one.

/// `rows` rows of `width` binary pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitRows {
    width: usize,
    stride: usize,
    words: Vec<u64>,
}

/// Eight pixels per byte of bits, as 0/255 bytes (little-endian: pixel 0 in the low byte).
const EXPAND: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut bits = 0;
    while bits < 256 {
        let mut bytes = 0u64;
        let mut i = 0;
        while i < 8 {
            if bits >> i & 1 == 1 {
                bytes |= 0xFF << (8 * i);
            }
            i += 1;
        }
        table[bits] = bytes;
        bits += 1;
    }
    table
};

impl BitRows {
    /// All-background rows.
    pub fn new(width: usize, rows: usize) -> Self {
        let stride = width.div_ceil(64);
        Self {
            width,
            stride,
            words: vec![0; stride * rows],
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn rows(&self) -> usize {
        self.words.len().checked_div(self.stride).unwrap_or(0)
    }

    /// Row `y`'s words.
    pub fn row(&self, y: usize) -> &[u64] {
        &self.words[y * self.stride..][..self.stride]
    }

    pub fn row_mut(&mut self, y: usize) -> &mut [u64] {
        &mut self.words[y * self.stride..][..self.stride]
    }

    /// Sets pixels `x .. x + src.len()` of row `y`: foreground where `src` is not zero.
    pub fn pack(&mut self, y: usize, x: usize, src: &[u8]) {
        assert!(x + src.len() <= self.width, "pixels past the row's end");
        let row = &mut self.words[y * self.stride..][..self.stride];
        let mut x = x;
        let mut src = src;
        // Up to the next multiple of 8 one pixel at a time, then whole bytes of bits.
        while x % 8 != 0 && !src.is_empty() {
            set(row, x, src[0] != 0);
            (x, src) = (x + 1, &src[1..]);
        }
        let mut chunks = src.chunks_exact(8);
        for chunk in &mut chunks {
            let bits = nonzero_bits(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
            let (word, shift) = (x / 64, x % 64);
            row[word] = (row[word] & !(0xFF << shift)) | (bits << shift);
            x += 8;
        }
        for &v in chunks.remainder() {
            set(row, x, v != 0);
            x += 1;
        }
    }

    /// Clears pixels `x .. x + len` of row `y`.
    pub fn clear(&mut self, y: usize, x: usize, len: usize) {
        assert!(x + len <= self.width, "pixels past the row's end");
        let row = &mut self.words[y * self.stride..][..self.stride];
        let end = x + len;
        let mut at = x;
        while at < end {
            let (word, shift) = (at / 64, at % 64);
            let take = (64 - shift).min(end - at);
            let bits = if take == 64 {
                !0
            } else {
                ((1 << take) - 1) << shift
            };
            row[word] &= !bits;
            at += take;
        }
    }

    /// Pixels `x .. x + dst.len()` of row `y` as 0/255 bytes.
    pub fn unpack(&self, y: usize, x: usize, dst: &mut [u8]) {
        assert!(x + dst.len() <= self.width, "pixels past the row's end");
        let row = self.row(y);
        let mut x = x;
        let mut dst = &mut dst[..];
        while x % 8 != 0 && !dst.is_empty() {
            dst[0] = byte(get(row, x));
            (x, dst) = (x + 1, &mut dst[1..]);
        }
        let mut chunks = dst.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let bits = (row[x / 64] >> (x % 64)) & 0xFF;
            chunk.copy_from_slice(&EXPAND[bits as usize].to_le_bytes());
            x += 8;
        }
        for v in chunks.into_remainder() {
            *v = byte(get(row, x));
            x += 1;
        }
    }

    /// Foreground pixels among `x .. x + len` of row `y`.
    pub fn count_ones(&self, y: usize, x: usize, len: usize) -> usize {
        let row = self.row(y);
        let end = x + len;
        let mut count = 0;
        let mut at = x;
        while at < end {
            let (word, shift) = (at / 64, at % 64);
            let take = (64 - shift).min(end - at);
            let bits = row[word] >> shift;
            let bits = if take == 64 {
                bits
            } else {
                bits & ((1 << take) - 1)
            };
            count += bits.count_ones() as usize;
            at += take;
        }
        count
    }

    /// The one value pixels `x .. x + len` of row `y` share, or `None` when they differ.
    pub fn uniform(&self, y: usize, x: usize, len: usize) -> Option<bool> {
        match self.count_ones(y, x, len) {
            0 => Some(false),
            n if n == len => Some(true),
            _ => None,
        }
    }

    /// Clears rows `first .. first + count`.
    pub fn clear_rows(&mut self, first: usize, count: usize) {
        self.words[first * self.stride..(first + count) * self.stride].fill(0);
    }

    /// Writes into row `y` of `dst` (half this width, rounded up) the 2×2 maximum of rows
    /// `top` and `bottom` (the same row at an odd bottom edge): a pixel is foreground when
    /// any pixel of its block is.
    pub fn reduce_into(&self, top: usize, bottom: usize, dst: &mut BitRows, y: usize) {
        debug_assert_eq!(dst.width, self.width.div_ceil(2));
        let (top, bottom) = (self.row(top), self.row(bottom));
        let pair = |k: usize| top.get(k).map_or(0, |t| t | bottom[k]);
        for (k, out) in dst.row_mut(y).iter_mut().enumerate() {
            *out = halve(pair(2 * k)) | (halve(pair(2 * k + 1)) << 32);
        }
    }
}

/// One bit per byte of `bytes` (little-endian), set where the byte is not zero: each byte
/// folded onto its lowest bit, then the eight bits gathered into the top byte by one
/// multiplication (every partial product lands on its own bit, so nothing carries).
fn nonzero_bits(bytes: u64) -> u64 {
    let mut t = bytes | (bytes >> 4);
    t |= t >> 2;
    t |= t >> 1;
    t &= 0x0101_0101_0101_0101;
    t.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

fn get(row: &[u64], x: usize) -> bool {
    row[x / 64] >> (x % 64) & 1 == 1
}

fn set(row: &mut [u64], x: usize, on: bool) {
    let bit = 1 << (x % 64);
    if on {
        row[x / 64] |= bit;
    } else {
        row[x / 64] &= !bit;
    }
}

fn byte(on: bool) -> u8 {
    if on {
        255
    } else {
        0
    }
}

/// The 32 pixels of a word's 64 taken in pairs: bit `i` is set when bit `2i` or `2i + 1`
/// is. (A lone last pixel pairs with a padding bit, which is zero.)
fn halve(word: u64) -> u64 {
    let mut t = (word | (word >> 1)) & 0x5555_5555_5555_5555;
    t = (t | (t >> 1)) & 0x3333_3333_3333_3333;
    t = (t | (t >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    t = (t | (t >> 4)) & 0x00FF_00FF_00FF_00FF;
    t = (t | (t >> 8)) & 0x0000_FFFF_0000_FFFF;
    (t | (t >> 16)) & 0x0000_0000_FFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of `width` pixels, foreground where `on(x)`.
    fn pixels(width: usize, on: impl Fn(usize) -> bool) -> Vec<u8> {
        (0..width).map(|x| if on(x) { 7 } else { 0 }).collect()
    }

    #[test]
    fn packing_and_unpacking_round_trip_at_any_offset() {
        let width = 203;
        let row = pixels(width, |x| (x * 7 + x / 5) % 3 == 0);
        for (x, len) in [(0, 203), (1, 150), (8, 64), (13, 77), (200, 3), (64, 0)] {
            let mut bits = BitRows::new(width, 2);
            bits.pack(1, x, &row[x..x + len]);
            let mut back = vec![1u8; width];
            bits.unpack(1, 0, &mut back);
            for (i, &v) in back.iter().enumerate() {
                let want = (x..x + len).contains(&i) && row[i] != 0;
                assert_eq!(v, if want { 255 } else { 0 }, "x {x} len {len} pixel {i}");
            }
            assert!(bits.row(0).iter().all(|&w| w == 0), "row 0 untouched");
            let mut part = vec![1u8; len];
            bits.unpack(1, x, &mut part);
            assert!(part
                .iter()
                .zip(&row[x..])
                .all(|(&a, &b)| (a == 255) == (b != 0)));
            let ones = row[x..x + len].iter().filter(|&&v| v != 0).count();
            assert_eq!(bits.count_ones(1, x, len), ones);
        }
    }

    #[test]
    fn every_byte_pattern_packs_to_its_bits() {
        for bits in 0..256u64 {
            for value in [1u8, 0x10, 0x80, 0xFF] {
                let bytes: Vec<u8> = (0..8)
                    .map(|i| if bits >> i & 1 == 1 { value } else { 0 })
                    .collect();
                let word = u64::from_le_bytes(bytes.try_into().unwrap());
                assert_eq!(nonzero_bits(word), bits, "bits {bits:08b} value {value}");
            }
        }
    }

    #[test]
    fn packing_overwrites_what_was_there() {
        let mut bits = BitRows::new(100, 1);
        bits.pack(0, 0, &[255; 100]);
        bits.pack(0, 5, &[0; 90]);
        assert_eq!(bits.count_ones(0, 0, 100), 10);
        assert_eq!(bits.uniform(0, 5, 90), Some(false));
        assert_eq!(bits.uniform(0, 95, 5), Some(true));
        assert_eq!(bits.uniform(0, 90, 10), None);
        bits.pack(0, 0, &[255; 100]);
        bits.clear(0, 3, 70);
        assert_eq!(bits.count_ones(0, 0, 100), 30);
        assert_eq!(bits.uniform(0, 3, 70), Some(false));
        assert_eq!(bits.uniform(0, 73, 27), Some(true));
        bits.clear_rows(0, 1);
        assert_eq!(bits.count_ones(0, 0, 100), 0);
    }

    /// The 2×2 maximum of bits equals the maximum of the bytes, odd edges included.
    #[test]
    fn reduction_is_the_block_maximum() {
        for width in [1, 2, 63, 64, 65, 129, 300] {
            let mut bits = BitRows::new(width, 3);
            let rows: Vec<Vec<u8>> = (0..3)
                .map(|y| pixels(width, |x| (x * 5 + y * 3) % 7 == 0))
                .collect();
            for (y, row) in rows.iter().enumerate() {
                bits.pack(y, 0, row);
            }
            let half = width.div_ceil(2);
            let mut out = BitRows::new(half, 2);
            bits.reduce_into(0, 1, &mut out, 0);
            bits.reduce_into(2, 2, &mut out, 1);
            for (y, (top, bottom)) in [(0, 1), (2, 2)].into_iter().enumerate() {
                let mut got = vec![0u8; half];
                out.unpack(y, 0, &mut got);
                for (x, &v) in got.iter().enumerate() {
                    let right = (2 * x + 1).min(width - 1);
                    let any = [top, bottom]
                        .iter()
                        .any(|&r| rows[r][2 * x] != 0 || rows[r][right] != 0);
                    assert_eq!(v == 255, any, "width {width} row {y} pixel {x}");
                }
            }
            // Bits past the width stay clear.
            let last = out.row(0).last().copied().unwrap_or(0);
            if half % 64 != 0 {
                assert_eq!(last >> (half % 64), 0, "width {width}");
            }
        }
    }
}
