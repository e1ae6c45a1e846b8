//! From tile masks to mask rows: the cores of one grid row are pasted into a band (tiles
//! arrive in row-major order), and bands in model space are mapped to output rows.

use super::geometry::Geometry;
use crate::slide::grid::{Tile, TileGrid};

/// Pastes the cores of one grid row at a time.
pub struct BandAssembler {
    width: usize,
    cols: u32,
    band: Vec<u8>,
    height: usize,
    placed: u32,
}

/// A completed band: model rows `y .. y + height`, `width` bytes each.
pub struct Band<'a> {
    pub y: u64,
    pub height: usize,
    pub rows: &'a [u8],
}

impl BandAssembler {
    pub fn new(grid: &TileGrid, model_width: u64) -> Self {
        let width = model_width as usize;
        Self {
            width,
            cols: grid.cols(),
            band: vec![0; width * grid.tile_size() as usize],
            height: 0,
            placed: 0,
        }
    }

    /// Places `tile`'s core mask (`None`: all background). Returns the band once the last
    /// tile of its row is placed; tiles must come in row-major order.
    pub fn place(&mut self, tile: &Tile, core: Option<&[u8]>) -> Option<Band<'_>> {
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
        for row in 0..h {
            let dst = &mut self.band[row * self.width + x..][..w];
            match core {
                Some(mask) => dst.copy_from_slice(&mask[row * w..][..w]),
                None => dst.fill(0),
            }
        }
        self.placed += 1;
        if self.placed < self.cols {
            return None;
        }
        self.placed = 0;
        Some(Band {
            y: core_rect.y as u64,
            height: self.height,
            rows: &self.band[..self.height * self.width],
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
}

impl OutputRows {
    pub fn new(geometry: &Geometry) -> Self {
        let columns = (!geometry.is_native()).then(|| geometry.model_columns());
        Self {
            geometry: geometry.clone(),
            columns,
            next_row: 0,
            row: vec![0; geometry.output_width as usize],
        }
    }

    /// Emits, through `out`, every output row whose source row lies in `band` (in chunks
    /// of whole rows). Bands must come top to bottom.
    pub fn push(
        &mut self,
        band: &Band<'_>,
        mut out: impl FnMut(&[u8]) -> Result<(), super::SegmentError>,
    ) -> Result<(), super::SegmentError> {
        let Some(columns) = &self.columns else {
            self.next_row += band.height as u64;
            return out(band.rows);
        };
        let model_width = self.geometry.model_width as usize;
        let band_end = band.y + band.height as u64;
        while self.next_row < self.geometry.output_height {
            let source = self.geometry.model_row_of(self.next_row);
            if source >= band_end {
                break;
            }
            let src = &band.rows[(source - band.y) as usize * model_width..][..model_width];
            for (dst, &x) in self.row.iter_mut().zip(columns) {
                *dst = src[x as usize];
            }
            out(&self.row)?;
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
        let mut assembler = BandAssembler::new(&grid, 5);
        let mut bands = Vec::new();
        for tile in grid.tiles() {
            let value = (tile.index.col + 1) as u8;
            let core = vec![value; tile.core.area() as usize];
            if let Some(band) = assembler.place(&tile, Some(&core)) {
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
