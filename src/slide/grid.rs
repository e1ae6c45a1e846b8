//! The tiles a slide level is processed in.
//!
//! Each tile is *responsible* for its `core` (the cores partition the level exactly) and is
//! *read* with a `halo` of context on every side, so the network sees the neighbourhood of
//! pixels at the core's edge; the halo part of the prediction is cropped away again.
//! Tiles come in row-major order (left to right, top to bottom), which is also the order a
//! tiled TIFF writer wants them.

use serde::Serialize;

/// An axis-aligned rectangle in the pixel coordinates of one level. Signed, because read
/// rectangles of border tiles extend past the image (readers pad them with white).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// One past the last column.
    pub fn right(&self) -> i64 {
        self.x + i64::from(self.width)
    }

    /// One past the last row.
    pub fn bottom(&self) -> i64 {
        self.y + i64::from(self.height)
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The rectangle in the coordinates of a level `factor` times finer (e.g. a level's
    /// downsample, to get level-0 coordinates), rounded outwards so it covers every pixel
    /// the original touches.
    pub fn scaled(&self, factor: f64) -> Rect {
        let x = (self.x as f64 * factor).floor();
        let y = (self.y as f64 * factor).floor();
        let right = (self.right() as f64 * factor).ceil();
        let bottom = (self.bottom() as f64 * factor).ceil();
        Rect {
            x: x as i64,
            y: y as i64,
            width: (right - x) as u32,
            height: (bottom - y) as u32,
        }
    }
}

/// A tile's place in the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TileIndex {
    pub col: u32,
    pub row: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tile {
    pub index: TileIndex,
    /// The pixels this tile is responsible for, clipped to the level.
    pub core: Rect,
    /// What to read: the full `tile_size` cell (unclipped, so every read has the same size
    /// and tiles batch together) grown by the halo on every side. May extend past the level.
    pub read: Rect,
}

impl Tile {
    /// Where the core starts inside the read region: crop the prediction here.
    pub fn core_offset(&self) -> (u32, u32) {
        (
            (self.core.x - self.read.x) as u32,
            (self.core.y - self.read.y) as u32,
        )
    }
}

/// A grid of `tile_size` squares over a `width × height` level; the last column and row
/// are cut at the level's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    width: u64,
    height: u64,
    tile_size: u32,
    halo: u32,
    cols: u32,
    rows: u32,
}

impl TileGrid {
    /// # Panics
    /// If `tile_size` is 0, or the grid would have more than `u32::MAX` columns or rows.
    pub fn new(width: u64, height: u64, tile_size: u32, halo: u32) -> Self {
        assert!(tile_size > 0, "tile size must be at least 1 pixel");
        let count = |extent: u64| {
            u32::try_from(extent.div_ceil(u64::from(tile_size)))
                .expect("a grid has at most u32::MAX columns and rows")
        };
        Self {
            width,
            height,
            tile_size,
            halo,
            cols: count(width),
            rows: count(height),
        }
    }

    pub fn cols(&self) -> u32 {
        self.cols
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    pub fn len(&self) -> usize {
        self.cols as usize * self.rows as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tile_size(&self) -> u32 {
        self.tile_size
    }

    pub fn halo(&self) -> u32 {
        self.halo
    }

    /// The tile at `index`.
    ///
    /// # Panics
    /// If `index` is outside the grid.
    pub fn tile(&self, index: TileIndex) -> Tile {
        assert!(
            index.col < self.cols && index.row < self.rows,
            "tile {index:?} outside a {}x{} grid",
            self.cols,
            self.rows
        );
        let size = u64::from(self.tile_size);
        let x = u64::from(index.col) * size;
        let y = u64::from(index.row) * size;
        let core = Rect {
            x: x as i64,
            y: y as i64,
            // Bounded by `tile_size`, so it fits.
            width: (self.width - x).min(size) as u32,
            height: (self.height - y).min(size) as u32,
        };
        let halo = i64::from(self.halo);
        let read = Rect {
            x: core.x - halo,
            y: core.y - halo,
            width: self.tile_size + 2 * self.halo,
            height: self.tile_size + 2 * self.halo,
        };
        Tile { index, core, read }
    }

    /// Every tile, row by row.
    pub fn tiles(&self) -> impl ExactSizeIterator<Item = Tile> + '_ {
        let cols = self.cols as usize;
        (0..self.len()).map(move |i| {
            self.tile(TileIndex {
                col: (i % cols) as u32,
                row: (i / cols) as u32,
            })
        })
    }
}
