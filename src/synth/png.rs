//! PNG fixtures: a whole small slide as an RGB image plus its 8-bit 0/255 nuclei mask, the
//! layout of labelled folders (`DIR/images/<stem>.png`, `DIR/masks/<stem>.png`).

use std::path::Path;

use image::{ExtendedColorType, ImageFormat};

use super::{Synth, SynthError, SynthSpec};

/// Largest slide written as one PNG pair (an 8192 x 8192 px slide); bigger ones belong in
/// a pyramidal TIFF.
const MAX_PNG_PIXELS: u64 = 1 << 26;

/// Renders the whole slide of `spec` and writes its RGB image and nuclei mask as PNGs,
/// creating missing parent folders.
pub fn write_png_pair(
    spec: &SynthSpec,
    image_path: impl AsRef<Path>,
    mask_path: impl AsRef<Path>,
) -> Result<(), SynthError> {
    let synth = Synth::new(spec)?;
    if spec.width.saturating_mul(spec.height) > MAX_PNG_PIXELS {
        return Err(SynthError::TooLarge {
            width: spec.width,
            height: spec.height,
            limit: MAX_PNG_PIXELS,
        });
    }
    // Both sides are now below 2^26, so they fit in u32.
    let (w, h) = (spec.width as u32, spec.height as u32);
    let region = synth.render_region(0, 0, w, h);
    save(
        image_path.as_ref(),
        &region.rgb,
        w,
        h,
        ExtendedColorType::Rgb8,
    )?;
    save(
        mask_path.as_ref(),
        &region.mask,
        w,
        h,
        ExtendedColorType::L8,
    )
}

fn save(
    path: &Path,
    pixels: &[u8],
    w: u32,
    h: u32,
    colour: ExtendedColorType,
) -> Result<(), SynthError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    image::save_buffer_with_format(path, pixels, w, h, colour, ImageFormat::Png).map_err(|source| {
        SynthError::Image {
            path: path.to_owned(),
            source,
        }
    })
}
