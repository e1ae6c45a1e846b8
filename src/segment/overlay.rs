//! The QC overlay: a thumbnail of the slide with the nuclei mask drawn over it, so that a
//! glance tells whether a segmentation is plausible, and a caption strip under it that
//! names the slide, model and nuclei count, says what the colours mean and carries a scale
//! bar in µm. The mask side is a coverage map (the fraction of nuclei pixels per thumbnail
//! cell) accumulated while the rows stream past.

use plotters::prelude::*;

use crate::picture::{drawing_failed, fit_text, font, rgb_area, text_width};
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

/// What the caption strip under an overlay says.
#[derive(Debug, Clone)]
pub struct Caption {
    /// The slide's file name.
    pub slide: String,
    /// The model, as the summary names it.
    pub model: String,
    pub nuclei: u64,
    /// Microns per overlay pixel; `None` when the slide's scale is unknown (no scale bar).
    pub microns_per_pixel: Option<f64>,
}

/// Text size of the caption of an overlay `width` pixels wide: legible at full size, and
/// still so once a 2048 px overlay is shown shrunk to a screen.
fn caption_font_size(width: u32) -> f64 {
    (f64::from(width) / 64.0).clamp(11.0, 20.0)
}

/// Height of the caption strip under an overlay `width` pixels wide (two lines of text).
pub fn caption_height(width: u32) -> u32 {
    (caption_font_size(width) * 4.0).round() as u32
}

/// The scale bar for `microns_per_pixel`: a round length (1, 2 or 5 × 10ⁿ µm) about a
/// fifth of `width`, its length in pixels and its label.
fn scale_bar(width: u32, microns_per_pixel: f64) -> (f64, String) {
    let target = f64::from(width) / 5.0 * microns_per_pixel;
    let power = 10f64.powf(target.log10().floor());
    let microns = [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&m| m <= target)
        .unwrap_or(power);
    let label = if microns >= 1000.0 {
        format!("{} mm", microns / 1000.0)
    } else {
        format!("{microns} µm")
    };
    (microns / microns_per_pixel, label)
}

/// `picture` with the caption strip of [`caption_height`] added below it.
pub fn with_caption(picture: &RgbRegion, caption: &Caption) -> Result<RgbRegion, String> {
    let (width, strip) = (picture.width, caption_height(picture.width));
    let height = picture.height + strip;
    let mut pixels = picture.pixels.clone();
    pixels.resize((width * height * 3) as usize, 255);
    {
        let root = rgb_area(&mut pixels, width, height);
        draw_caption(&root, picture.height, caption).map_err(drawing_failed)?;
        root.present().map_err(drawing_failed)?;
    }
    Ok(RgbRegion {
        width,
        height,
        pixels,
    })
}

fn draw_caption<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    top: u32,
    caption: &Caption,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let width = root.dim_in_pixel().0 as i32;
    let size = caption_font_size(width as u32);
    let text = font(size);
    let unit = size as i32;
    let (pad, top) = (unit / 2, top as i32);
    let grey = RGBColor(150, 150, 150);
    root.draw(&PathElement::new(vec![(0, top), (width, top)], grey))?;
    let line1 = format!(
        "{}  ·  model {}  ·  {} nuclei",
        caption.slide, caption.model, caption.nuclei
    );
    let fitted = fit_text(&line1, &text, (width - 2 * pad).max(0) as u32);
    root.draw_text(&fitted, &text.color(&BLACK), (pad, top + unit / 2))?;

    // Line 2: the legend on the left, the scale bar on the right.
    let row = top + 2 * unit + unit / 4;
    let [r, g, b] = CONTOUR;
    let swatch = [(pad, row), (pad + unit, row + unit)];
    root.draw(&Rectangle::new(
        swatch,
        RGBColor(r, g, b).mix(0.45).filled(),
    ))?;
    root.draw(&Rectangle::new(swatch, RGBColor(r, g, b).stroke_width(2)))?;
    let legend = "nuclei: bright green outline, green tint (stronger = denser)";
    let (bar_px, bar_label) = match caption.microns_per_pixel {
        Some(mpp) => {
            let (px, label) = scale_bar(width as u32, mpp);
            (px.round() as i32, label)
        }
        None => (
            0,
            "no scale bar: the slide records no µm per pixel".to_owned(),
        ),
    };
    let label_width = text_width(&bar_label, &text) as i32;
    let right = width - pad;
    let bar_left = right - bar_px;
    let label_left = bar_left - label_width - if bar_px > 0 { unit / 2 } else { 0 };
    let legend_room = (label_left - 2 * unit - 2 * pad).max(0) as u32;
    root.draw_text(
        &fit_text(legend, &text, legend_room),
        &text.color(&BLACK),
        (pad + unit + unit / 2, row + unit / 5),
    )?;
    root.draw_text(
        &bar_label,
        &text.color(&BLACK),
        (label_left, row + unit / 5),
    )?;
    if bar_px > 0 {
        let thick = (unit / 3).max(3);
        let y = row + unit / 2;
        root.draw(&Rectangle::new(
            [(bar_left, y - thick / 2), (right, y - thick / 2 + thick)],
            BLACK.filled(),
        ))?;
        for x in [bar_left, right - 1] {
            root.draw(&PathElement::new(vec![(x, row), (x, row + unit)], BLACK))?;
        }
    }
    Ok(())
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
    #[test]
    fn scale_bars_are_round_lengths_near_a_fifth_of_the_width() {
        // 800 px at 2 µm/px: a fifth is 320 µm, rounded down to 200 µm = 100 px.
        assert_eq!(scale_bar(800, 2.0), (100.0, "200 µm".to_owned()));
        assert_eq!(scale_bar(1000, 0.5), (200.0, "100 µm".to_owned()));
        assert_eq!(scale_bar(2000, 16.0), (312.5, "5 mm".to_owned()));
    }

    #[test]
    fn the_caption_strip_holds_text_the_legend_and_the_scale_bar() {
        let picture = RgbRegion::white(800, 300);
        let caption = Caption {
            slide: "slide.svs".to_owned(),
            model: "run".to_owned(),
            nuclei: 1234,
            microns_per_pixel: Some(2.0),
        };
        let out = with_caption(&picture, &caption).unwrap();
        let strip = caption_height(800);
        assert_eq!((out.width, out.height), (800, 300 + strip));
        assert_eq!(
            &out.pixels[..800 * 300 * 3],
            &picture.pixels[..],
            "the picture changed"
        );
        let below: Vec<&[u8]> = out.pixels[800 * 300 * 3..].chunks(3).collect();
        assert!(
            below.iter().filter(|p| p[0] < 80 && p[1] < 80).count() > 300,
            "no text"
        );
        assert!(
            below.contains(&&CONTOUR[..]),
            "no legend swatch in the overlay colour"
        );
        // The bar: 100 px of black in one row, ending a half-letter from the right edge.
        let rows = below.chunks(800);
        let longest_black_run = rows
            .map(|row| {
                row.iter()
                    .fold((0, 0), |(run, best), p| {
                        let run = if p == &[0, 0, 0] { run + 1 } else { 0 };
                        (run, best.max(run))
                    })
                    .1
            })
            .max()
            .unwrap();
        assert!(
            (99..=101).contains(&longest_black_run),
            "{longest_black_run} px"
        );
    }
}
