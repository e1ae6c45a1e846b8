//! Cutting a tile row into tiles, spotting constant tiles, predictor and compression.

use super::pyramid::Strip;
use super::Compression;
use crate::bit_rows::BitRows;
use rayon::prelude::*;
use std::io::Write;

/// Value of a tile whose pixels are all equal, unused samples zero.
pub(crate) type PixelKey = [u8; 3];

pub(crate) enum Encoded {
    /// Every pixel inside the image equals this one. Padding beyond the image edge is
    /// unspecified in TIFF, so an edge tile can share the full constant tile's bytes.
    Constant(PixelKey),
    Data(Vec<u8>),
}

pub(crate) struct TileCodec {
    compression: Compression,
    predictor: bool,
    tile: usize,
    channels: usize,
}

impl TileCodec {
    pub(crate) fn new(
        compression: Compression,
        predictor: bool,
        tile: u32,
        channels: usize,
    ) -> Self {
        Self {
            compression,
            predictor: predictor && compression != Compression::None,
            tile: tile as usize,
            channels,
        }
    }

    /// Whether tiles are written with TIFF Predictor=2.
    pub(crate) fn predictor(&self) -> bool {
        self.predictor
    }

    /// Encodes the tiles of a tile row (`rows` rows of `width` pixels), left to right; tiles
    /// are compressed in parallel, the order of the result is fixed.
    pub(crate) fn encode_strip(&self, strip: Strip<'_>, width: u32, rows: u32) -> Vec<Encoded> {
        let across = (width as usize).div_ceil(self.tile);
        let rows = rows as usize;
        let encode = |tile: &(dyn Fn(usize, &mut Vec<u8>) -> Encoded + Sync)| {
            (0..across)
                .into_par_iter()
                .map_init(Vec::new, |scratch, column| tile(column, scratch))
                .collect()
        };
        match strip {
            Strip::Zeros => (0..across).map(|_| Encoded::Constant([0; 3])).collect(),
            Strip::Pixels(pixels) => {
                let stride = width as usize * self.channels;
                encode(&|column, scratch| self.encode_tile(pixels, stride, rows, column, scratch))
            }
            Strip::Bits(bits) => {
                encode(&|column, scratch| self.encode_bit_tile(bits, rows, column, scratch))
            }
        }
    }

    fn encode_tile(
        &self,
        pixels: &[u8],
        stride: usize,
        rows: usize,
        column: usize,
        scratch: &mut Vec<u8>,
    ) -> Encoded {
        let tile_row_bytes = self.tile * self.channels;
        let start = column * tile_row_bytes;
        let end = (start + tile_row_bytes).min(stride);
        let row = |y: usize| &pixels[y * stride..][start..end];
        if let Some(key) = self.constant_key(row(0)) {
            if (1..rows).all(|y| row(y) == row(0)) {
                return Encoded::Constant(key);
            }
        }
        self.tile_from(scratch, rows, |y, dst| {
            dst[..end - start].copy_from_slice(row(y))
        });
        Encoded::Data(self.compress(scratch))
    }

    /// The same bytes as [`encode_tile`](Self::encode_tile) gives for the 0/255 pixels
    /// `bits` stands for.
    fn encode_bit_tile(
        &self,
        bits: &BitRows,
        rows: usize,
        column: usize,
        scratch: &mut Vec<u8>,
    ) -> Encoded {
        let start = column * self.tile;
        let len = self.tile.min(bits.width() - start);
        if let Some(on) = bits.uniform(0, start, len) {
            if (1..rows).all(|y| bits.uniform(y, start, len) == Some(on)) {
                return Encoded::Constant([if on { 255 } else { 0 }, 0, 0]);
            }
        }
        self.tile_from(scratch, rows, |y, dst| {
            bits.unpack(y, start, &mut dst[..len])
        });
        Encoded::Data(self.compress(scratch))
    }

    /// Fills `scratch` with a full tile, zero-padded, whose first `rows` rows `fill` writes.
    fn tile_from(&self, scratch: &mut Vec<u8>, rows: usize, fill: impl Fn(usize, &mut [u8])) {
        let tile_row_bytes = self.tile * self.channels;
        scratch.clear();
        scratch.resize(self.tile * tile_row_bytes, 0);
        for (y, dst) in scratch
            .chunks_exact_mut(tile_row_bytes)
            .take(rows)
            .enumerate()
        {
            fill(y, dst);
        }
    }

    /// The pixel `row` is made of, if it repeats one pixel: equal to itself shifted by one
    /// pixel, which is a plain memcmp.
    fn constant_key(&self, row: &[u8]) -> Option<PixelKey> {
        let c = self.channels;
        (row[c..] == row[..row.len() - c]).then(|| {
            let mut key = [0; 3];
            key[..c].copy_from_slice(&row[..c]);
            key
        })
    }

    /// Compressed bytes of a full tile of pixel `key`.
    pub(crate) fn encode_constant(&self, key: PixelKey) -> Vec<u8> {
        let pixel = &key[..self.channels];
        let mut tile: Vec<u8> = pixel.repeat(self.tile * self.tile);
        self.compress(&mut tile)
    }

    /// Compresses one full tile; `tile` is overwritten by the predictor.
    fn compress(&self, tile: &mut [u8]) -> Vec<u8> {
        if self.predictor {
            let c = self.channels;
            for row in tile.chunks_exact_mut(self.tile * c) {
                for i in (c..row.len()).rev() {
                    row[i] = row[i].wrapping_sub(row[i - c]);
                }
            }
        }
        match self.compression {
            Compression::Deflate => {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
                // Writing into a Vec cannot fail.
                z.write_all(tile).expect("deflate into memory");
                z.finish().expect("deflate into memory")
            }
            Compression::Lzw => {
                weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                    .encode(tile)
                    .expect("LZW into memory")
            }
            Compression::None => tile.to_vec(),
        }
    }
}
