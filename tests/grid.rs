//! The tile grid: exact coverage, order, halos, tissue filtering.

use slidestream::slide::grid::{Rect, Tile, TileGrid, TileIndex};
use slidestream::slide::tissue::TissueMask;

/// How many cores cover each pixel of a `width × height` level; also checks that every
/// core lies inside the level.
fn coverage(grid: &TileGrid, width: usize, height: usize) -> Vec<u32> {
    let mut counts = vec![0; width * height];
    for tile in grid.tiles() {
        let core = tile.core;
        assert!(core.x >= 0 && core.y >= 0, "{tile:?}");
        assert!(
            core.right() <= width as i64 && core.bottom() <= height as i64,
            "{tile:?}"
        );
        for y in core.y..core.bottom() {
            for x in core.x..core.right() {
                counts[y as usize * width + x as usize] += 1;
            }
        }
    }
    counts
}

#[test]
fn cores_cover_every_pixel_exactly_once() {
    // Multiples of the tile, remainders, a single pixel, a tile larger than the image.
    for (width, height, tile_size) in [
        (64, 48, 16),
        (37, 23, 8),
        (100, 7, 32),
        (1, 1, 512),
        (300, 200, 512),
        (65, 1, 64),
    ] {
        let grid = TileGrid::new(width, height, tile_size, 5);
        assert_eq!(
            grid.len(),
            width.div_ceil(u64::from(tile_size)) as usize
                * height.div_ceil(u64::from(tile_size)) as usize
        );
        assert_eq!(grid.tiles().len(), grid.len());
        assert_eq!(
            grid.tiles().map(|t| t.core.area()).sum::<u64>(),
            width * height
        );
        let counts = coverage(&grid, width as usize, height as usize);
        assert!(
            counts.iter().all(|&c| c == 1),
            "{width}x{height} with tile {tile_size}: some pixel is covered {:?} times",
            counts.iter().find(|&&c| c != 1)
        );
    }
}

#[test]
fn a_tile_larger_than_the_image_is_one_tile_clipped_to_it() {
    let grid = TileGrid::new(300, 200, 512, 0);
    let tiles: Vec<Tile> = grid.tiles().collect();
    assert_eq!(tiles.len(), 1);
    assert_eq!(
        tiles[0].core,
        Rect {
            x: 0,
            y: 0,
            width: 300,
            height: 200
        }
    );
}

#[test]
fn an_empty_level_has_no_tiles() {
    let grid = TileGrid::new(0, 100, 64, 8);
    assert!(grid.is_empty());
    assert_eq!(grid.tiles().count(), 0);
}

#[test]
fn tiles_come_in_row_major_order() {
    let grid = TileGrid::new(50, 30, 16, 4);
    assert_eq!((grid.cols(), grid.rows()), (4, 2));
    let indices: Vec<(u32, u32)> = grid
        .tiles()
        .map(|tile| (tile.index.col, tile.index.row))
        .collect();
    assert_eq!(
        indices,
        [
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 0),
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 1)
        ]
    );
    let tile = grid.tile(TileIndex { col: 2, row: 1 });
    assert_eq!((tile.core.x, tile.core.y), (32, 16));
}

#[test]
fn reads_are_the_full_cell_grown_by_the_halo_and_may_leave_the_image() {
    let grid = TileGrid::new(100, 70, 32, 8);
    assert_eq!((grid.tile_size(), grid.halo()), (32, 8));
    let first = grid.tile(TileIndex { col: 0, row: 0 });
    assert_eq!(
        first.read,
        Rect {
            x: -8,
            y: -8,
            width: 48,
            height: 48
        }
    );
    // The last tile's core is cut at the image edge (100 = 3 × 32 + 4), its read is not.
    let last = grid.tile(TileIndex { col: 3, row: 2 });
    assert_eq!(
        last.core,
        Rect {
            x: 96,
            y: 64,
            width: 4,
            height: 6
        }
    );
    assert_eq!(
        last.read,
        Rect {
            x: 88,
            y: 56,
            width: 48,
            height: 48
        }
    );
    for tile in grid.tiles() {
        assert_eq!(tile.core_offset(), (8, 8), "{tile:?}");
        assert_eq!((tile.read.width, tile.read.height), (48, 48));
        assert!(tile.core.right() <= tile.read.right() - 8);
        assert!(tile.core.bottom() <= tile.read.bottom() - 8);
    }
}

#[test]
fn without_halo_reads_are_the_cells_themselves() {
    let grid = TileGrid::new(40, 40, 16, 0);
    for tile in grid.tiles() {
        assert_eq!(tile.core_offset(), (0, 0));
        let cut_at_edge = tile.core.width < 16 || tile.core.height < 16;
        assert_eq!(tile.read == tile.core, !cut_at_edge, "{tile:?}");
    }
}

#[test]
fn rectangles_scale_outwards() {
    let rect = Rect {
        x: 3,
        y: 5,
        width: 7,
        height: 2,
    };
    assert_eq!(
        rect.scaled(0.5),
        Rect {
            x: 1,
            y: 2,
            width: 4,
            height: 2
        }
    );
    assert_eq!(
        rect.scaled(4.0),
        Rect {
            x: 12,
            y: 20,
            width: 28,
            height: 8
        }
    );
}

#[test]
fn the_tissue_under_a_tile_is_the_mask_fraction_of_its_level0_core() {
    // Level 0 is 100 × 80; the mask is at downsample 4 (25 × 20) with tissue in its first
    // 12 columns, i.e. level-0 x < 48.
    let (mask_width, mask_height) = (25, 20);
    let data = (0..mask_width * mask_height)
        .map(|i| if i % mask_width < 12 { 255 } else { 0 })
        .collect();
    let mask = TissueMask::new(mask_width as u32, mask_height as u32, data, 4.0);
    // The grid is on level 1 (downsample 2, 50 × 40) with 10-pixel tiles: column c covers
    // level-0 x in [20c, 20c + 20), so column 2 is 2/5 tissue.
    let grid = TileGrid::new(50, 40, 10, 3);

    // What `segment` asks of every tile: the mask's fraction under the core in level 0.
    let fraction = |col| {
        let tile = grid.tile(TileIndex { col, row: 0 });
        mask.fraction_in(tile.core.scaled(2.0))
    };
    assert_eq!(fraction(0), 1.0);
    assert_eq!(fraction(1), 1.0);
    assert!((fraction(2) - 0.4).abs() < 1e-9);
    assert_eq!(fraction(3), 0.0);
    assert_eq!(fraction(4), 0.0);
}
