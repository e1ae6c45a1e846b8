//! The QC overlay: a thumbnail of the slide with the nuclei mask drawn over it, so that a
//! glance tells whether a segmentation is plausible. The mask side is a coverage map (the
//! fraction of nuclei pixels per thumbnail cell) accumulated while the rows stream past.

use crate::slide::RgbRegion;

/// Longest side of the overlay in pixels.
pub const OVERLAY_SIDE: u64 = 2048;
/// Drawn where a cell holds nuclei and a 4-neighbour holds none.
const CONTOUR: [u8; 3] = [0, 230, 0];

/// Fraction of nuclei pixels in each `factor × factor` cell of the output mask.
#[derive(Debug, Clone)]
pub struct Coverage {
    factor: u64,
    width: usize,
    height: usize,
    /// Nuclei pixels per cell.
    counts: Vec<u32>,
    next_row: u64,
    output_width: u64,
}

impl Coverage {
    /// A map of an `output_width × output_height` mask at most `OVERLAY_SIDE` cells wide
    /// and tall.
    pub fn new(output_width: u64, output_height: u64) -> Self {
        let factor = output_width
            .max(output_height)
            .div_ceil(OVERLAY_SIDE)
            .max(1);
        let width = output_width.div_ceil(factor) as usize;
        let height = output_height.div_ceil(factor) as usize;
        Self {
            factor,
            width,
            height,
            counts: vec![0; width * height],
            next_row: 0,
            output_width,
        }
    }

    /// Output pixels per cell side.
    pub fn factor(&self) -> u64 {
        self.factor
    }

    pub fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Takes whole mask rows (nonzero = nucleus), top to bottom.
    pub fn push_rows(&mut self, rows: &[u8]) {
        for row in rows.chunks_exact(self.output_width as usize) {
            let cells = &mut self.counts[(self.next_row / self.factor) as usize * self.width..]
                [..self.width];
            for (cell, pixels) in cells.iter_mut().zip(row.chunks(self.factor as usize)) {
                *cell += pixels.iter().filter(|&&v| v != 0).count() as u32;
            }
            self.next_row += 1;
        }
    }

    /// Fraction of nuclei pixels in cell `(x, y)` (edge cells count their full area).
    fn fraction(&self, x: usize, y: usize) -> f32 {
        self.counts[y * self.width + x] as f32 / (self.factor * self.factor) as f32
    }

    /// Draws the map over `thumbnail` (any size; cells are sampled by nearest neighbour):
    /// nuclei tinted green in proportion to their coverage, outlines in bright green.
    pub fn draw_over(&self, thumbnail: &RgbRegion) -> RgbRegion {
        let (tw, th) = (thumbnail.width as usize, thumbnail.height as usize);
        let cell_of = |t: usize, thumb: usize, cells: usize| (t * cells / thumb).min(cells - 1);
        let has_nuclei = |x: usize, y: usize| self.counts[y * self.width + x] > 0;
        let mut out = thumbnail.clone();
        for ty in 0..th {
            let cy = cell_of(ty, th, self.height);
            for tx in 0..tw {
                let cx = cell_of(tx, tw, self.width);
                if !has_nuclei(cx, cy) {
                    continue;
                }
                let edge = [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| {
                        let (nx, ny) = (cx as i64 + dx, cy as i64 + dy);
                        nx < 0
                            || ny < 0
                            || nx >= self.width as i64
                            || ny >= self.height as i64
                            || !has_nuclei(nx as usize, ny as usize)
                    });
                let pixel = &mut out.pixels[(ty * tw + tx) * 3..][..3];
                if edge {
                    pixel.copy_from_slice(&CONTOUR);
                } else {
                    let alpha = (0.3 + self.fraction(cx, cy)).min(0.8);
                    for (value, tint) in pixel.iter_mut().zip(CONTOUR) {
                        *value = (f32::from(*value) * (1.0 - alpha) + f32::from(tint) * alpha)
                            .round() as u8;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_nuclei_pixels_per_cell() {
        let mut coverage = Coverage::new(4100, 3);
        assert_eq!(coverage.factor(), 3);
        assert_eq!(coverage.dimensions(), (1367, 1));
        let mut rows = vec![0u8; 4100 * 3];
        rows[0] = 255;
        rows[4100 + 4] = 255;
        rows[2 * 4100 + 4099] = 255;
        coverage.push_rows(&rows);
        assert_eq!(coverage.counts[0], 1);
        assert_eq!(coverage.counts[1], 1);
        assert_eq!(coverage.counts[1366], 1);
        assert_eq!(coverage.counts.iter().sum::<u32>(), 3);
    }

    #[test]
    fn the_overlay_outlines_nuclei_and_leaves_the_rest() {
        let mut coverage = Coverage::new(8, 8);
        let mut rows = vec![0u8; 64];
        for y in 2..6 {
            for x in 2..6 {
                rows[y * 8 + x] = 255;
            }
        }
        coverage.push_rows(&rows);
        let thumbnail = RgbRegion::white(8, 8);
        let out = coverage.draw_over(&thumbnail);
        let at = |x: usize, y: usize| &out.pixels[(y * 8 + x) * 3..][..3];
        assert_eq!(at(0, 0), &[255, 255, 255]);
        assert_eq!(at(2, 2), &CONTOUR);
        assert_ne!(at(3, 3), &CONTOUR);
        assert_ne!(at(3, 3), &[255, 255, 255]);
    }
}
