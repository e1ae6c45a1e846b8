//! Text and shapes on the pictures slidestream writes (training curves, the QC overlay),
//! through `plotters`. Text is drawn in DejaVu Sans embedded in the binary
//! (`assets/fonts`, licence alongside): plotters' `ab_glyph` backend then needs no system
//! font or fontconfig, so a bare machine draws the same pictures as a desktop.

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea};
use plotters::style::{register_font, FontDesc, FontStyle, IntoFont};

/// The family name the embedded font is registered under.
const FAMILY: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The embedded font at `size` pixels (registered with plotters on first use).
pub fn font(size: f64) -> FontDesc<'static> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // The bytes are part of the binary: a font that does not parse is a build defect.
        assert!(
            register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok(),
            "the embedded DejaVu Sans does not parse"
        );
    });
    (FAMILY, size).into_font()
}

/// Width in pixels of `text` set in `font`.
pub fn text_width(text: &str, font: &FontDesc<'_>) -> u32 {
    font.box_size(text).map_or(0, |(width, _)| width)
}

/// `text`, shortened with a leading `…` until it fits `max_width` pixels in `font` (the end
/// of a path or name is what tells files apart).
pub fn fit_text(text: &str, font: &FontDesc<'_>, max_width: u32) -> String {
    if text_width(text, font) <= max_width {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    (1..chars.len())
        .map(|skip| format!("…{}", chars[skip..].iter().collect::<String>()))
        .find(|short| text_width(short, font) <= max_width)
        .unwrap_or_else(|| "…".to_owned())
}

/// A plotters drawing area over `pixels`, row-major RGB of `width × height`.
pub fn rgb_area(
    pixels: &mut [u8],
    width: u32,
    height: u32,
) -> DrawingArea<BitMapBackend<'_>, Shift> {
    BitMapBackend::with_buffer(pixels, (width, height)).into_drawing_area()
}

/// A drawing error as one line, for the typed errors of the callers (which name the file).
pub fn drawing_failed(error: impl std::fmt::Display) -> String {
    format!("cannot draw the picture: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_measures_and_draws_text() {
        let font = font(20.0);
        let wide = text_width("slidestream 100 µm", &font);
        assert!(wide > 100 && wide < 300, "{wide} px");
        let mut pixels = vec![255u8; 200 * 40 * 3];
        let area = rgb_area(&mut pixels, 200, 40);
        area.draw_text("Dice", &font.color(&plotters::style::BLACK), (5, 10))
            .unwrap();
        area.present().unwrap();
        drop(area);
        let inked = pixels.chunks(3).filter(|p| p[0] < 128).count();
        assert!(inked > 50, "{inked} dark pixels: no text drawn");
    }

    #[test]
    fn long_text_is_shortened_from_the_start() {
        let font = font(12.0);
        let long = "/very/long/path/to/a/run/directory/model-run";
        let short = fit_text(long, &font, 120);
        assert!(
            short.starts_with('…') && short.ends_with("model-run"),
            "{short}"
        );
        assert!(text_width(&short, &font) <= 120);
        assert_eq!(fit_text("run", &font, 120), "run");
    }
}
