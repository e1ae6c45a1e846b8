//! `curves.png`: loss (top panel) and validation Dice per channel (bottom panel, 0–1) per
//! epoch, drawn with plain line rasterisation since no font or plotting stack is available
//! offline. Channel c is drawn in `PALETTE[c % 8]` (c0 red, c1 green, c2 blue, c3 orange, …);
//! the loss is black; grid lines mark Dice 0.25, 0.5, 0.75.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::error::TrainError;
use super::metrics::EpochMetrics;

const WIDTH: u32 = 800;
const PANEL: u32 = 300;
const MARGIN: i64 = 20;
const PALETTE: [[u8; 3]; 8] = [
    [220, 40, 40],
    [40, 160, 40],
    [40, 80, 220],
    [240, 140, 20],
    [150, 60, 190],
    [20, 170, 170],
    [190, 170, 20],
    [120, 120, 120],
];

/// Bresenham line, clipped to the image.
fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: [u8; 3]) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        if (0..img.width() as i64).contains(&x) && (0..img.height() as i64).contains(&y) {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Draws one series into the panel starting at pixel row `top`, scaled to [lo, hi].
fn series(
    img: &mut RgbImage,
    top: i64,
    points: &[(usize, f64)],
    n_epochs: usize,
    (lo, hi): (f64, f64),
    colour: [u8; 3],
) {
    let w = WIDTH as i64 - 2 * MARGIN;
    let h = PANEL as i64 - 2 * MARGIN;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let to_px = |&(e, v): &(usize, f64)| {
        let x = MARGIN + (e as i64 * w) / (n_epochs.max(2) as i64 - 1);
        let y = top + MARGIN + h - (((v - lo) / span) * h as f64).round() as i64;
        (x, y)
    };
    let pixels: Vec<_> = points.iter().map(to_px).collect();
    for pair in pixels.windows(2) {
        line(img, pair[0], pair[1], colour);
    }
    if let [single] = pixels.as_slice() {
        line(img, *single, *single, colour);
    }
}

/// Renders the curves of `metrics` to `path`.
pub fn draw_curves(metrics: &[EpochMetrics], path: &Path) -> Result<(), TrainError> {
    let mut img = RgbImage::from_pixel(WIDTH, 2 * PANEL, Rgb([255, 255, 255]));
    let (right, axis) = (WIDTH as i64 - MARGIN, [0, 0, 0]);
    for top in [0, PANEL as i64] {
        let bottom = top + PANEL as i64 - MARGIN;
        line(&mut img, (MARGIN, top + MARGIN), (MARGIN, bottom), axis);
        line(&mut img, (MARGIN, bottom), (right, bottom), axis);
    }
    for q in [0.25, 0.5, 0.75] {
        let y = PANEL as i64 + MARGIN + ((1.0 - q) * (PANEL as i64 - 2 * MARGIN) as f64) as i64;
        line(&mut img, (MARGIN, y), (right, y), [210, 210, 210]);
    }
    let n = metrics.len();
    let losses: Vec<_> = metrics
        .iter()
        .filter_map(|m| m.loss.map(|l| (m.epoch, l)))
        .collect();
    let (lo, hi) = losses
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &(_, l)| {
            (lo.min(l), hi.max(l))
        });
    series(&mut img, 0, &losses, n, (lo, hi), axis);
    let channels = metrics.iter().map(|m| m.val_dice.len()).max().unwrap_or(0);
    for c in 0..channels {
        let dice: Vec<_> = metrics
            .iter()
            .filter_map(|m| m.val_dice.get(c).map(|&d| (m.epoch, d)))
            .collect();
        series(
            &mut img,
            PANEL as i64,
            &dice,
            n,
            (0.0, 1.0),
            PALETTE[c % PALETTE.len()],
        );
    }
    img.save(path).map_err(|e| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}
