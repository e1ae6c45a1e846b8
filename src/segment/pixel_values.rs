//! The per-pixel values nuclei are measured on, besides the mask: the model's nucleus score
//! and the hematoxylin optical density of the slide's pixel. They travel from the tiles to
//! the component tracker next to the mask rows, so they are quantised to keep that traffic
//! and the open components' memory small: the score to a byte (steps of 1/255, far below
//! what a mean over a nucleus's hundreds of pixels can resolve), the density to a `u16` in
//! thousandths (no clamping: the darkest pixel is below 12 OD). The same hematoxylin
//! density, smoothed, is what the stain re-cut of the post-processing reads
//! ([`recut_density`]; [`finish_whole_region`] for an image finished whole).

use crate::morphology::Postprocess;
use crate::segment::predict::Window;
use crate::slide::RgbRegion;
use crate::stain::{inverse, MIN_INTENSITY, RGB_FROM_HED};
use crate::stain_recut::StainRecut;

/// Quantisation steps of the score (a probability in [0, 1]).
pub const SCORE_STEPS: f64 = 255.0;
/// Quantisation steps of the hematoxylin density per optical-density unit.
pub const HEMATOXYLIN_STEPS: f64 = 1000.0;

/// A score in [0, 1] quantised (scores outside saturate).
pub fn quantised_score(score: f32) -> u8 {
    (f64::from(score) * SCORE_STEPS).round() as u8
}

/// The score of quantised `q`.
pub fn score_of(q: f64) -> f64 {
    q / SCORE_STEPS
}

/// The hematoxylin density of quantised `q`.
pub fn hematoxylin_of(q: f64) -> f64 {
    q / HEMATOXYLIN_STEPS
}

/// Hematoxylin optical density of 8-bit RGB pixels, in decadic units (−log10 of the
/// transmitted fraction, as QuPath's "OD"): skimage's `rgb2hed` hematoxylin channel
/// ([`crate::stain::hematoxylin`]) times 6, since `rgb2hed` divides natural-log densities
/// by ln(10⁻⁶). A byte has 256 values, so each channel's density is a table lookup.
#[derive(Debug, Clone)]
pub struct HematoxylinDensity {
    /// Weighted density of each byte value, per channel.
    table: [[f32; 256]; 3],
}

impl Default for HematoxylinDensity {
    fn default() -> Self {
        let hed_from_rgb = inverse(RGB_FROM_HED);
        let mut table = [[0f32; 256]; 3];
        for (channel, row) in table.iter_mut().enumerate() {
            // Column 0 of hed_from_rgb maps each RGB density to hematoxylin.
            let weight = hed_from_rgb[channel][0];
            for (value, entry) in row.iter_mut().enumerate() {
                let intensity = (value as f64 / 255.0).max(MIN_INTENSITY);
                *entry = (-intensity.log10() * weight) as f32;
            }
        }
        Self { table }
    }
}

impl HematoxylinDensity {
    /// The density of one pixel (≥ 0).
    pub fn of(&self, rgb: [u8; 3]) -> f32 {
        let [r, g, b] = rgb.map(usize::from);
        (self.table[0][r] + self.table[1][g] + self.table[2][b]).max(0.0)
    }

    /// Quantised densities of the `width`×`height` rectangle at `(x, y)` of `region`.
    pub fn quantised(
        &self,
        region: &RgbRegion,
        (x, y): (u32, u32),
        (width, height): (u32, u32),
    ) -> Vec<u16> {
        let stride = region.width as usize * 3;
        let mut out = Vec::with_capacity(width as usize * height as usize);
        for row in region.pixels[y as usize * stride..]
            .chunks_exact(stride)
            .take(height as usize)
        {
            let row = &row[x as usize * 3..][..width as usize * 3];
            out.extend(row.chunks_exact(3).map(|p| {
                let density = f64::from(self.of([p[0], p[1], p[2]]));
                (density * HEMATOXYLIN_STEPS).round() as u16
            }));
        }
        out
    }
}

/// The smoothed hematoxylin density of `window` of `region` that `recut` reads (every
/// pixel of `region` is context for the smoothing). The same for a tile of a slide and for
/// a whole image: beyond `region` is white, whose density is 0.
pub fn recut_density(recut: &StainRecut, region: &RgbRegion, window: Window) -> Vec<u16> {
    let density = HematoxylinDensity::default();
    let raw: Vec<f32> = region
        .pixels
        .chunks_exact(3)
        .map(|p| density.of([p[0], p[1], p[2]]))
        .collect();
    recut.smoothed_density(
        &raw,
        region.width as usize,
        region.height as usize,
        (
            window.x as usize,
            window.y as usize,
            window.width as usize,
            window.height as usize,
        ),
    )
}

/// `mask`, the model's over all of `region`, finished by `finish` (re-cut by the region's own
/// hematoxylin where `finish` re-cuts, then holes, opening and closing): what `segment`
/// writes for an image read whole, as `eval` and the benchmarks score it.
pub fn finish_whole_region(finish: &Postprocess, mask: &[u8], region: &RgbRegion) -> Vec<u8> {
    let whole = Window {
        x: 0,
        y: 0,
        width: region.width,
        height: region.height,
    };
    let density = finish
        .stain_recut()
        .map(|recut| recut_density(recut, region, whole));
    finish.apply(
        mask,
        region.width as usize,
        region.height as usize,
        density.as_deref(),
    )
}

/// Values of the foreground pixels of a tile's core (or of a band of rows), in raster
/// order, next to its mask: one entry per nonzero mask pixel.
#[derive(Debug, Clone, Default)]
pub struct CoreValues {
    pub score: Vec<u8>,
    pub hematoxylin: Vec<u16>,
}

impl CoreValues {
    /// Test values that name their pixel: score = x (mod 256) and hematoxylin = y of every
    /// foreground pixel of `mask` (`width` wide, its first row at `first_row`).
    #[cfg(test)]
    pub(crate) fn coordinates(mask: &[u8], width: usize, first_row: usize) -> Self {
        let foreground = mask.iter().enumerate().filter(|&(_, &m)| m != 0);
        Self {
            score: foreground.clone().map(|(i, _)| (i % width) as u8).collect(),
            hematoxylin: foreground
                .map(|(i, _)| (first_row + i / width) as u16)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn densities_are_six_times_rgb2hed_hematoxylin() {
        let density = HematoxylinDensity::default();
        let pixels: [[u8; 3]; 5] = [
            [255, 255, 255],
            [230, 150, 190],
            [75, 40, 125],
            [0, 0, 0],
            [0, 255, 255],
        ];
        let unit: Vec<f32> = pixels
            .iter()
            .flatten()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let images = Tensor::from_slice(&unit)
            .view([1, 5, 3])
            .permute([2, 0, 1])
            .unsqueeze(0);
        let reference = Vec::<f32>::try_from(crate::stain::hematoxylin(&images).reshape([-1]))
            .expect("five densities");
        for (pixel, want) in pixels.iter().zip(reference) {
            let got = density.of(*pixel);
            assert!(
                (got - 6.0 * want).abs() < 1e-4,
                "{pixel:?}: {got} vs 6 × {want}"
            );
        }
        assert_eq!(density.of([255, 255, 255]), 0.0);
        // The darkest possible red channel gives the largest density; it fits a u16.
        let most = density.of([0, 255, 255]);
        assert!(
            f64::from(most) * HEMATOXYLIN_STEPS < f64::from(u16::MAX),
            "{most}"
        );
        assert!(density.of([75, 40, 125]) > 2.0 * density.of([230, 150, 190]));
    }

    #[test]
    fn quantised_takes_the_asked_rectangle() {
        let density = HematoxylinDensity::default();
        // 3×2 region: white everywhere but a purple pixel at (2, 1).
        let mut pixels = vec![255u8; 3 * 2 * 3];
        pixels[(3 + 2) * 3..(3 + 2) * 3 + 3].copy_from_slice(&[75, 40, 125]);
        let region = RgbRegion {
            width: 3,
            height: 2,
            pixels,
        };
        let q = density.quantised(&region, (1, 0), (2, 2));
        let purple = (f64::from(density.of([75, 40, 125])) * HEMATOXYLIN_STEPS).round() as u16;
        assert_eq!(q, vec![0, 0, 0, purple]);
        assert_eq!(
            [0.0, 0.5, 0.999, 1.0, 1.5].map(quantised_score),
            [0, 128, 255, 255, 255]
        );
        assert!(
            (hematoxylin_of(f64::from(purple)) - f64::from(density.of([75, 40, 125]))).abs() < 1e-3
        );
    }
}
