//! Low-resolution overviews of a slide (for tissue detection and QC pictures), read band by
//! band so that a slide without a small pyramid level never has to fit in memory.

use super::{RgbRegion, Slide, SlideError};

/// Most level pixels decoded at once while reducing (≈ 48 MB of RGB).
const BAND_PIXELS: u64 = 16 << 20;

/// An overview and how it maps back to the slide.
#[derive(Debug, Clone)]
pub struct Overview {
    pub image: RgbRegion,
    /// Level-0 pixels per overview pixel.
    pub downsample: f64,
    /// The slide level it was reduced from.
    pub level: usize,
}

/// Level pixels above which reading an overview is announced: a slide without a coarse
/// pyramid level has to be decoded whole, which can take minutes to hours.
const SLOW_OVERVIEW_PIXELS: u64 = 1 << 30;

/// Reads the slide at roughly `target_downsample` (level-0 px per output px): the finest
/// level not finer than needed, reduced by an integer box average. `stopped` is asked
/// between bands; once it says true the read ends with [`SlideError::Interrupted`].
pub fn read_overview(
    slide: &dyn Slide,
    target_downsample: f64,
    stopped: &dyn Fn() -> bool,
) -> Result<Overview, SlideError> {
    let levels = slide.levels();
    let target = target_downsample.max(1.0);
    let level = levels
        .iter()
        .rposition(|l| l.downsample <= target * 1.01)
        .unwrap_or(0);
    let info = levels[level];
    let factor = (target / info.downsample).round().max(1.0) as u64;
    let out_w = info.width.div_ceil(factor);
    let out_h = info.height.div_ceil(factor);
    let mut image = RgbRegion::white(out_w as u32, out_h as u32);
    let rows_per_band = (BAND_PIXELS / (info.width * factor)).max(1) * factor;
    let level_pixels = info.width * info.height;
    if level_pixels > SLOW_OVERVIEW_PIXELS {
        tracing::warn!(
            slide = %slide.path().display(),
            "no pyramid level near 1/{target:.0} scale: its overview decodes all {:.1} Gpx of \
             level {level}, which can take long (a pyramidal TIFF avoids this)",
            level_pixels as f64 / 1e9
        );
    }
    let mut y = 0;
    while y < info.height {
        if stopped() {
            return Err(SlideError::Interrupted {
                path: slide.path().to_path_buf(),
            });
        }
        let h = rows_per_band.min(info.height - y);
        let band = slide.read_region(level, 0, y as i64, info.width as u32, h as u32)?;
        reduce_band(&band, factor, &mut image, y / factor);
        y += h;
    }
    Ok(Overview {
        image,
        downsample: info.downsample * factor as f64,
        level,
    })
}

/// Box-averages `factor × factor` blocks of `band` into rows of `out` from `out_row`;
/// edge blocks average only the pixels that exist.
fn reduce_band(band: &RgbRegion, factor: u64, out: &mut RgbRegion, out_row: u64) {
    let (bw, bh) = (band.width as usize, band.height as usize);
    let f = factor as usize;
    for oy in 0..bh.div_ceil(f) {
        let rows = (oy * f)..((oy + 1) * f).min(bh);
        let dst_row = (out_row as usize + oy) * out.width as usize * 3;
        for ox in 0..bw.div_ceil(f) {
            let cols = (ox * f)..((ox + 1) * f).min(bw);
            let mut sum = [0u32; 3];
            for y in rows.clone() {
                for x in cols.clone() {
                    let p = (y * bw + x) * 3;
                    for (total, &v) in sum.iter_mut().zip(&band.pixels[p..p + 3]) {
                        *total += u32::from(v);
                    }
                }
            }
            let n = (rows.len() * cols.len()) as u32;
            let dst = &mut out.pixels[dst_row + ox * 3..][..3];
            for (d, total) in dst.iter_mut().zip(sum) {
                *d = ((total + n / 2) / n) as u8;
            }
        }
    }
}
