//! From tile masks to mask rows: the cores of one grid row are pasted into a band (tiles
//! arrive in row-major order), and bands in model space are mapped to output rows.

use super::components::RowValues;
use super::pixel_values::CoreValues;
use crate::bit_rows::BitRows;
use crate::slide::geometry::Geometry;
use crate::slide::grid::{Tile, TileGrid};

/// A tile's final mask (0/255, the core's size) and, when nuclei are measured, the values
/// of its pixels.
pub struct CoreMask {
    pub mask: Vec<u8>,
    pub values: Option<CoreValues>,
}

/// Pastes the cores of one grid row at a time, at one bit per pixel: the band spans the
/// slide's width, the rest of `segment` a few tiles.
pub struct BandAssembler {
    cols: u32,
    band: BitRows,
    /// The band's values; `None` when nuclei are not measured.
    values: Option<BandValues>,
    height: usize,
    placed: u32,
}

/// The values of a band's foreground pixels: kept per tile while the band fills (each in
/// its core's raster order), then put in the band's raster order once it is complete.
#[derive(Default)]
struct BandValues {
    /// Column and width of each placed core, with its values.
    tiles: Vec<(usize, usize, CoreValues)>,
    rows: CoreValues,
}

impl BandValues {
    /// Interleaves the tiles' values row by row into `self.rows`, following `band`'s
    /// foreground (its first `height` rows).
    fn interleave(&mut self, band: &BitRows, height: usize) {
        self.rows.score.clear();
        self.rows.hematoxylin.clear();
        let mut taken = vec![0usize; self.tiles.len()];
        for y in 0..height {
            for ((x, w, values), taken) in self.tiles.iter().zip(&mut taken) {
                let n = band.count_ones(y, *x, *w);
                let range = *taken..*taken + n;
                self.rows
                    .score
                    .extend_from_slice(&values.score[range.clone()]);
                self.rows
                    .hematoxylin
                    .extend_from_slice(&values.hematoxylin[range]);
                *taken += n;
            }
        }
        self.tiles.clear();
    }
}

/// A completed band: model rows `y .. y + height`, the first `height` of `rows`.
pub struct Band<'a> {
    pub y: u64,
    pub height: usize,
    pub rows: &'a BitRows,
    pub values: Option<RowValues<'a>>,
}

/// Copies `core` (`w` wide, `None`: zeros) into `band` at column `x`.
fn paste(band: &mut BitRows, x: usize, core: Option<&[u8]>, w: usize, h: usize) {
    for row in 0..h {
        match core {
            Some(core) => band.pack(row, x, &core[row * w..][..w]),
            None => band.clear(row, x, w),
        }
    }
}

impl BandAssembler {
    /// An assembler for `grid`'s tiles, of values too when `values`.
    pub fn new(grid: &TileGrid, model_width: u64, values: bool) -> Self {
        Self {
            cols: grid.cols(),
            band: BitRows::new(model_width as usize, grid.tile_size() as usize),
            values: values.then(BandValues::default),
            height: 0,
            placed: 0,
        }
    }

    /// Places `tile`'s core (`None`: all background). Returns the band once the last
    /// tile of its row is placed; tiles must come in row-major order.
    pub fn place(&mut self, tile: &Tile, core: Option<CoreMask>) -> Option<Band<'_>> {
        assert_eq!(
            tile.index.col, self.placed,
            "tiles must arrive in row-major order"
        );
        let core_rect = tile.core;
        let (w, h) = (core_rect.width as usize, core_rect.height as usize);
        if self.placed == 0 {
            self.height = h;
        }
        let x = core_rect.x as usize;
        paste(&mut self.band, x, core.as_ref().map(|c| &c.mask[..]), w, h);
        if let Some(values) = &mut self.values {
            if let Some(core_values) = core.and_then(|c| c.values) {
                values.tiles.push((x, w, core_values));
            }
        }
        self.placed += 1;
        if self.placed < self.cols {
            return None;
        }
        self.placed = 0;
        if let Some(values) = &mut self.values {
            values.interleave(&self.band, self.height);
        }
        Some(Band {
            y: core_rect.y as u64,
            height: self.height,
            rows: &self.band,
            values: self.values.as_ref().map(|v| RowValues {
                score: &v.rows.score,
                hematoxylin: &v.rows.hematoxylin,
            }),
        })
    }
}

/// Output rows handed on at a time on the native path: a small multiple of a row, however
/// long the band.
const CHUNK_ROWS: usize = 32;

/// Maps model-space bands to output rows (0/255 bytes) by nearest neighbour (the identity
/// when the model runs on the output level).
pub struct OutputRows {
    geometry: Geometry,
    /// Model column of every output column; `None` when native.
    columns: Option<Vec<u32>>,
    next_row: u64,
    /// The rows handed on: a chunk when native, one row when resampled.
    rows: Vec<u8>,
    /// The band row an output row is picked from, and which one it is.
    source: Vec<u8>,
    source_row: Option<u64>,
    values: CoreValues,
    /// Per row of the current band, the index of its first values in the band's (and, last,
    /// their count).
    row_starts: Vec<usize>,
    /// Per pixel of the source row, the index of its values in the band's.
    rank: Vec<usize>,
}

impl OutputRows {
    pub fn new(geometry: &Geometry) -> Self {
        let columns = (!geometry.is_native()).then(|| geometry.model_columns());
        Self {
            geometry: geometry.clone(),
            columns,
            next_row: 0,
            rows: Vec::new(),
            source: vec![0; geometry.model_width as usize],
            source_row: None,
            values: CoreValues::default(),
            row_starts: Vec::new(),
            rank: Vec::new(),
        }
    }

    /// Emits, through `out`, every output row whose source row lies in `band` (in chunks
    /// of whole rows, with their values when the band has them). Bands must come top to
    /// bottom.
    pub fn push(
        &mut self,
        band: &Band<'_>,
        mut out: impl FnMut(&[u8], Option<RowValues<'_>>) -> Result<(), super::SegmentError>,
    ) -> Result<(), super::SegmentError> {
        let model_width = self.geometry.model_width as usize;
        self.row_starts.clear();
        if band.values.is_some() {
            self.row_starts.push(0);
            for y in 0..band.height {
                let next = self.row_starts[y] + band.rows.count_ones(y, 0, model_width);
                self.row_starts.push(next);
            }
        }
        let Some(columns) = &self.columns else {
            for first in (0..band.height).step_by(CHUNK_ROWS) {
                let count = CHUNK_ROWS.min(band.height - first);
                self.rows.resize(count * model_width, 0);
                for (y, row) in self.rows.chunks_exact_mut(model_width).enumerate() {
                    band.rows.unpack(first + y, 0, row);
                }
                let values = band.values.map(|v| {
                    let range = self.row_starts[first]..self.row_starts[first + count];
                    RowValues {
                        score: &v.score[range.clone()],
                        hematoxylin: &v.hematoxylin[range],
                    }
                });
                out(&self.rows, values)?;
            }
            self.next_row += band.height as u64;
            return Ok(());
        };
        let band_end = band.y + band.height as u64;
        while self.next_row < self.geometry.output_height {
            let source = self.geometry.model_row_of(self.next_row);
            if source >= band_end {
                break;
            }
            let in_band = (source - band.y) as usize;
            // Upsampling repeats source rows: unpack (and rank) each once.
            if self.source_row != Some(source) {
                band.rows.unpack(in_band, 0, &mut self.source);
                self.source_row = Some(source);
                if band.values.is_some() {
                    // Where each foreground pixel of the source row keeps its values.
                    let first = self.row_starts[in_band];
                    self.rank.clear();
                    self.rank.extend(self.source.iter().scan(first, |next, &m| {
                        let here = *next;
                        *next += usize::from(m != 0);
                        Some(here)
                    }));
                }
            }
            let src = &self.source;
            self.rows.clear();
            self.rows.extend(columns.iter().map(|&x| src[x as usize]));
            let values = band.values.map(|v| {
                self.values.score.clear();
                self.values.hematoxylin.clear();
                for &x in columns.iter().filter(|&&x| src[x as usize] != 0) {
                    let i = self.rank[x as usize];
                    self.values.score.push(v.score[i]);
                    self.values.hematoxylin.push(v.hematoxylin[i]);
                }
                RowValues {
                    score: &self.values.score,
                    hematoxylin: &self.values.hematoxylin,
                }
            });
            out(&self.rows, values)?;
            self.next_row += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cores with background between their pixels: the band's values come out in the
    /// band's raster order, one per foreground pixel, each its own pixel's.
    #[test]
    fn bands_hold_the_cores_of_a_grid_row_in_place() {
        let grid = TileGrid::new(5, 3, 2, 0);
        let mut assembler = BandAssembler::new(&grid, 5, true);
        let mut bands = Vec::new();
        for tile in grid.tiles() {
            let value = (tile.index.col + 1) as u8;
            let core = tile.core;
            let (w, h) = (core.width as usize, core.height as usize);
            // Foreground where (x + y) % 3 != 0 in slide coordinates.
            let mask: Vec<u8> = (0..w * h)
                .map(|i| {
                    let (x, y) = (core.x as usize + i % w, core.y as usize + i / w);
                    if (x + y) % 3 == 0 {
                        0
                    } else {
                        value
                    }
                })
                .collect();
            // Values naming each pixel by its slide coordinates.
            let foreground: Vec<(usize, usize)> = (0..w * h)
                .filter(|&i| mask[i] != 0)
                .map(|i| (core.x as usize + i % w, core.y as usize + i / w))
                .collect();
            let values = CoreValues {
                score: foreground.iter().map(|&(x, _)| x as u8).collect(),
                hematoxylin: foreground.iter().map(|&(_, y)| y as u16).collect(),
            };
            let core_mask = CoreMask {
                mask,
                values: Some(values),
            };
            if let Some(band) = assembler.place(&tile, Some(core_mask)) {
                let mut rows = vec![0; band.height * 5];
                for (y, row) in rows.chunks_exact_mut(5).enumerate() {
                    band.rows.unpack(y, 0, row);
                }
                let want = CoreValues::coordinates(&rows, 5, band.y as usize);
                let values = band.values.unwrap();
                assert_eq!(values.score, &want.score[..]);
                assert_eq!(values.hematoxylin, &want.hematoxylin[..]);
                bands.push((band.y, band.height, rows));
            }
        }
        assert_eq!(
            bands,
            vec![
                (
                    0,
                    2,
                    [0, 1, 1, 0, 1, 1, 1, 0, 1, 1].map(|v| v * 255).to_vec()
                ),
                (2, 1, [1, 0, 1, 1, 0].map(|v| v * 255).to_vec()),
            ]
        );
    }
}
