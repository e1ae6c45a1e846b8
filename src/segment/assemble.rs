//! From tile masks to mask rows: the cores of one grid row are pasted into a band (tiles
//! arrive in row-major order), and bands in model space are mapped to output rows.

use super::components::RowValues;
use super::pixel_values::CoreValues;
use crate::slide::geometry::Geometry;
use crate::slide::grid::{Tile, TileGrid};

/// A tile's final mask (0/255, the core's size) and, when nuclei are measured, the values
/// of its pixels.
pub struct CoreMask {
    pub mask: Vec<u8>,
    pub values: Option<CoreValues>,
}

/// Pastes the cores of one grid row at a time.
pub struct BandAssembler {
    width: usize,
    cols: u32,
    band: Vec<u8>,
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
    /// foreground (`height` rows of `width`).
    fn interleave(&mut self, band: &[u8], width: usize, height: usize) {
        self.rows.score.clear();
        self.rows.hematoxylin.clear();
        let mut taken = vec![0usize; self.tiles.len()];
        for row in band.chunks_exact(width).take(height) {
            for ((x, w, values), taken) in self.tiles.iter().zip(&mut taken) {
                let n = row[*x..x + w].iter().filter(|&&m| m != 0).count();
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

/// A completed band: model rows `y .. y + height`, `width` pixels each.
pub struct Band<'a> {
    pub y: u64,
    pub height: usize,
    pub rows: &'a [u8],
    pub values: Option<RowValues<'a>>,
}

/// Copies `core` (`w` wide, `None`: zeros) into `band` (`width` wide) at column `x`.
fn paste(band: &mut [u8], width: usize, x: usize, core: Option<&[u8]>, w: usize, h: usize) {
    for row in 0..h {
        let dst = &mut band[row * width + x..][..w];
        match core {
            Some(core) => dst.copy_from_slice(&core[row * w..][..w]),
            None => dst.fill(0),
        }
    }
}

impl BandAssembler {
    /// An assembler for `grid`'s tiles, of values too when `values`.
    pub fn new(grid: &TileGrid, model_width: u64, values: bool) -> Self {
        let width = model_width as usize;
        let len = width * grid.tile_size() as usize;
        Self {
            width,
            cols: grid.cols(),
            band: vec![0; len],
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
        paste(
            &mut self.band,
            self.width,
            x,
            core.as_ref().map(|c| &c.mask[..]),
            w,
            h,
        );
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
        let len = self.height * self.width;
        if let Some(values) = &mut self.values {
            values.interleave(&self.band, self.width, self.height);
        }
        Some(Band {
            y: core_rect.y as u64,
            height: self.height,
            rows: &self.band[..len],
            values: self.values.as_ref().map(|v| RowValues {
                score: &v.rows.score,
                hematoxylin: &v.rows.hematoxylin,
            }),
        })
    }
}

/// Maps model-space bands to output rows by nearest neighbour (the identity when the
/// model runs on the output level).
pub struct OutputRows {
    geometry: Geometry,
    /// Model column of every output column; `None` when native.
    columns: Option<Vec<u32>>,
    next_row: u64,
    row: Vec<u8>,
    values: CoreValues,
    /// Per row of the current band, the index of its first values in the band's.
    row_starts: Vec<usize>,
    /// Per pixel of the current source row, the index of its values in the band's.
    rank: Vec<usize>,
}

impl OutputRows {
    pub fn new(geometry: &Geometry) -> Self {
        let columns = (!geometry.is_native()).then(|| geometry.model_columns());
        Self {
            geometry: geometry.clone(),
            columns,
            next_row: 0,
            row: vec![0; geometry.output_width as usize],
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
        let Some(columns) = &self.columns else {
            self.next_row += band.height as u64;
            return out(band.rows, band.values);
        };
        let model_width = self.geometry.model_width as usize;
        let band_end = band.y + band.height as u64;
        if band.values.is_some() {
            // Where each row's values start among the band's.
            self.row_starts.clear();
            self.row_starts
                .extend(band.rows.chunks_exact(model_width).scan(0, |next, row| {
                    let here = *next;
                    *next += row.iter().filter(|&&m| m != 0).count();
                    Some(here)
                }));
        }
        while self.next_row < self.geometry.output_height {
            let source = self.geometry.model_row_of(self.next_row);
            if source >= band_end {
                break;
            }
            let at = (source - band.y) as usize * model_width;
            let src = &band.rows[at..at + model_width];
            self.row.clear();
            self.row.extend(columns.iter().map(|&x| src[x as usize]));
            let values = band.values.map(|v| {
                // Where each foreground pixel of the source row keeps its values.
                let first = self.row_starts[(source - band.y) as usize];
                self.rank.clear();
                self.rank.extend(src.iter().scan(first, |next, &m| {
                    let here = *next;
                    *next += usize::from(m != 0);
                    Some(here)
                }));
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
            out(&self.row, values)?;
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
                let want = CoreValues::coordinates(band.rows, 5, band.y as usize);
                let values = band.values.unwrap();
                assert_eq!(values.score, &want.score[..]);
                assert_eq!(values.hematoxylin, &want.hematoxylin[..]);
                bands.push((band.y, band.height, band.rows.to_vec()));
            }
        }
        assert_eq!(
            bands,
            vec![
                (0, 2, vec![0, 1, 2, 0, 3, 1, 1, 0, 2, 3]),
                (2, 1, vec![1, 0, 2, 2, 0]),
            ]
        );
    }
}
