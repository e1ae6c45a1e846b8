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
    values: Option<CoreValues>,
    height: usize,
    placed: u32,
}

/// A completed band: model rows `y .. y + height`, `width` pixels each.
pub struct Band<'a> {
    pub y: u64,
    pub height: usize,
    pub rows: &'a [u8],
    pub values: Option<RowValues<'a>>,
}

/// Copies `core` (`w` wide, `None`: zeros) into `band` (`width` wide) at column `x`.
fn paste<T: Copy + Default>(
    band: &mut [T],
    width: usize,
    x: usize,
    core: Option<&[T]>,
    w: usize,
    h: usize,
) {
    for row in 0..h {
        let dst = &mut band[row * width + x..][..w];
        match core {
            Some(core) => dst.copy_from_slice(&core[row * w..][..w]),
            None => dst.fill(T::default()),
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
            values: values.then(|| CoreValues {
                score: vec![0; len],
                hematoxylin: vec![0; len],
            }),
            height: 0,
            placed: 0,
        }
    }

    /// Places `tile`'s core (`None`: all background). Returns the band once the last
    /// tile of its row is placed; tiles must come in row-major order.
    pub fn place(&mut self, tile: &Tile, core: Option<&CoreMask>) -> Option<Band<'_>> {
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
            core.map(|c| &c.mask[..]),
            w,
            h,
        );
        if let Some(values) = &mut self.values {
            let core_values = core.and_then(|c| c.values.as_ref());
            let score = core_values.map(|v| &v.score[..]);
            let hematoxylin = core_values.map(|v| &v.hematoxylin[..]);
            paste(&mut values.score, self.width, x, score, w, h);
            paste(&mut values.hematoxylin, self.width, x, hematoxylin, w, h);
        }
        self.placed += 1;
        if self.placed < self.cols {
            return None;
        }
        self.placed = 0;
        let len = self.height * self.width;
        Some(Band {
            y: core_rect.y as u64,
            height: self.height,
            rows: &self.band[..len],
            values: self.values.as_ref().map(|v| RowValues {
                score: &v.score[..len],
                hematoxylin: &v.hematoxylin[..len],
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
        while self.next_row < self.geometry.output_height {
            let source = self.geometry.model_row_of(self.next_row);
            if source >= band_end {
                break;
            }
            let at = (source - band.y) as usize * model_width;
            let pick = |src: &[u8], dst: &mut Vec<u8>| {
                dst.clear();
                dst.extend(columns.iter().map(|&x| src[at + x as usize]));
            };
            pick(band.rows, &mut self.row);
            let values = band.values.map(|v| {
                pick(v.score, &mut self.values.score);
                self.values.hematoxylin.clear();
                self.values
                    .hematoxylin
                    .extend(columns.iter().map(|&x| v.hematoxylin[at + x as usize]));
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

    #[test]
    fn bands_hold_the_cores_of_a_grid_row_in_place() {
        let grid = TileGrid::new(5, 3, 2, 0);
        let mut assembler = BandAssembler::new(&grid, 5, true);
        let mut bands = Vec::new();
        for tile in grid.tiles() {
            let value = (tile.index.col + 1) as u8;
            let len = tile.core.area() as usize;
            let core = CoreMask {
                mask: vec![value; len],
                values: Some(CoreValues {
                    score: vec![value * 10; len],
                    hematoxylin: vec![u16::from(value) * 100; len],
                }),
            };
            if let Some(band) = assembler.place(&tile, Some(&core)) {
                let values = band.values.unwrap();
                assert!(values
                    .score
                    .iter()
                    .zip(band.rows)
                    .all(|(&s, &m)| s == m * 10));
                assert!(values
                    .hematoxylin
                    .iter()
                    .zip(band.rows)
                    .all(|(&h, &m)| h == u16::from(m) * 100));
                bands.push((band.y, band.height, band.rows.to_vec()));
            }
        }
        assert_eq!(
            bands,
            vec![
                (0, 2, vec![1, 1, 2, 2, 3, 1, 1, 2, 2, 3]),
                (2, 1, vec![1, 1, 2, 2, 3]),
            ]
        );
    }
}
