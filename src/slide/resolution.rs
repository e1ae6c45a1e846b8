//! Microns per pixel from plain images' resolution tags: TIFF `XResolution`/`YResolution` with
//! `ResolutionUnit`, and PNG `pHYs` chunks. Image folders (MoNuSeg-like training data) and
//! plain-image slides get their scale from here.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tiff::decoder::{ifd::Value, Decoder};
use tiff::tags::Tag;

/// Scales outside this range (µm per pixel) are not a microscope's: they are a writer's
/// default such as 72 dpi (353 µm/px) or 1 px/mm, and say nothing about the specimen.
const PLAUSIBLE_MPP: std::ops::RangeInclusive<f64> = 0.05..=20.0;

/// Relative difference below which two scales are the same (scanners round differently).
pub const SAME_MPP_TOLERANCE: f64 = 0.02;

/// Failures reading resolution tags; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ResolutionError {
    #[error("{path}: cannot read its resolution tags: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{first} records {first_mpp:.4} µm/px but {other} records {}; one folder must hold \
         images of one scale", other_mpp.map_or("none".to_owned(), |m| format!("{m:.4} µm/px"))
    )]
    Mixed {
        first: PathBuf,
        first_mpp: f64,
        other: PathBuf,
        other_mpp: Option<f64>,
    },
}

/// The (x, y) microns per pixel `path` records, `None` when it records none (or an
/// implausible one); only TIFF and PNG carry tags, other formats give `None`.
pub fn image_mpp(path: &Path) -> Result<Option<(f64, f64)>, ResolutionError> {
    let failed = |reason: String| ResolutionError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let file = || File::open(path).map(BufReader::new);
    let mpp = match extension.as_deref() {
        Some("tif" | "tiff") => tiff_mpp(file().map_err(|e| failed(e.to_string()))?)
            .map_err(|e| failed(e.to_string()))?,
        Some("png") => png_mpp(file().map_err(|e| failed(e.to_string()))?)
            .map_err(|e| failed(e.to_string()))?,
        _ => None,
    };
    Ok(mpp.filter(|(x, y)| PLAUSIBLE_MPP.contains(x) && PLAUSIBLE_MPP.contains(y)))
}

/// The one scale all of `paths` record (their mean x/y), `None` when none records one.
/// Refused when some record a scale and others another one or none.
pub fn common_mpp(paths: &[PathBuf]) -> Result<Option<f64>, ResolutionError> {
    let mut first: Option<(&PathBuf, Option<f64>)> = None;
    for path in paths {
        let mpp = image_mpp(path)?.map(|(x, y)| (x + y) / 2.0);
        let Some((first_path, first_mpp)) = first else {
            first = Some((path, mpp));
            continue;
        };
        let same = match (first_mpp, mpp) {
            (Some(a), Some(b)) => (a - b).abs() <= SAME_MPP_TOLERANCE * a,
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            // Name the file with a scale first, so the message can say what it records.
            let (first, first_mpp, other, other_mpp) = match first_mpp {
                Some(m) => (first_path, m, path, mpp),
                None => (path, mpp.unwrap_or_default(), first_path, None),
            };
            return Err(ResolutionError::Mixed {
                first: first.clone(),
                first_mpp,
                other: other.clone(),
                other_mpp,
            });
        }
    }
    Ok(first.and_then(|(_, mpp)| mpp))
}

fn tiff_mpp(reader: impl Read + std::io::Seek) -> tiff::TiffResult<Option<(f64, f64)>> {
    let mut decoder = Decoder::new(reader)?;
    // TIFF's default unit is the inch; 1 means "no absolute unit".
    let microns_per_unit = match decoder.find_tag(Tag::ResolutionUnit)? {
        None => 25_400.0,
        Some(unit) => match unit.into_u16()? {
            2 => 25_400.0,
            3 => 10_000.0,
            _ => return Ok(None),
        },
    };
    let mut per_unit = |tag| -> tiff::TiffResult<Option<f64>> {
        Ok(match decoder.find_tag(tag)? {
            Some(Value::Rational(n, d)) if n > 0 && d > 0 => Some(f64::from(n) / f64::from(d)),
            _ => None,
        })
    };
    let (x, y) = (per_unit(Tag::XResolution)?, per_unit(Tag::YResolution)?);
    Ok(x.zip(y)
        .map(|(x, y)| (microns_per_unit / x, microns_per_unit / y)))
}

/// Reads the `pHYs` chunk (pixels per metre) before the image data, if any.
fn png_mpp(mut reader: impl Read) -> std::io::Result<Option<(f64, f64)>> {
    let mut signature = [0; 8];
    reader.read_exact(&mut signature)?;
    if signature != *b"\x89PNG\r\n\x1a\n" {
        return Err(std::io::Error::other("not a PNG file"));
    }
    loop {
        let mut header = [0; 8];
        if reader.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        if kind == b"IDAT" || kind == b"IEND" {
            return Ok(None);
        }
        // The chunk and its CRC.
        let mut data = vec![0; length + 4];
        reader.read_exact(&mut data)?;
        if kind == b"pHYs" && length == 9 {
            let x = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let y = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            // Unit 1 is the metre; 0 gives only the aspect ratio.
            if data[8] != 1 || x == 0 || y == 0 {
                return Ok(None);
            }
            return Ok(Some((1e6 / f64::from(x), 1e6 / f64::from(y))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×2 PNG with a pHYs chunk of (pixels per unit, unit), spliced in after IHDR.
    fn png_with_phys(dir: &Path, name: &str, phys: Option<(u32, u8)>) -> PathBuf {
        let mut bytes = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        if let Some((ppu, unit)) = phys {
            let mut chunk = b"pHYs".to_vec();
            chunk.extend(ppu.to_be_bytes());
            chunk.extend(ppu.to_be_bytes());
            chunk.push(unit);
            let mut crc = flate2::Crc::new();
            crc.update(&chunk);
            let mut spliced = 9u32.to_be_bytes().to_vec();
            spliced.extend(&chunk);
            spliced.extend(crc.sum().to_be_bytes());
            // Signature (8) + IHDR (4 length + 4 type + 13 data + 4 CRC).
            bytes.splice(33..33, spliced);
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn png_scales_come_from_phys_in_metres_only() {
        let dir = tempfile::tempdir().unwrap();
        let at_40x = png_with_phys(dir.path(), "a.png", Some((4_000_000, 1)));
        let (x, y) = image_mpp(&at_40x).unwrap().unwrap();
        assert!((x - 0.25).abs() < 1e-12 && (y - 0.25).abs() < 1e-12);
        let aspect_only = png_with_phys(dir.path(), "b.png", Some((4_000_000, 0)));
        assert_eq!(image_mpp(&aspect_only).unwrap(), None);
        let screen = png_with_phys(dir.path(), "c.png", Some((2835, 1)));
        assert_eq!(
            image_mpp(&screen).unwrap(),
            None,
            "72 dpi is no microscope's"
        );
        assert_eq!(
            image_mpp(&png_with_phys(dir.path(), "d.png", None)).unwrap(),
            None
        );
    }

    #[test]
    fn a_folder_has_one_scale_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let a = png_with_phys(dir.path(), "a.png", Some((4_000_000, 1)));
        let b = png_with_phys(dir.path(), "b.png", Some((3_990_000, 1)));
        let twenty = png_with_phys(dir.path(), "c.png", Some((2_000_000, 1)));
        let none = png_with_phys(dir.path(), "d.png", None);
        let both = common_mpp(&[a.clone(), b]).unwrap().unwrap();
        assert!((both - 0.2503).abs() < 1e-3);
        assert_eq!(common_mpp(std::slice::from_ref(&none)).unwrap(), None);
        for mixed in [vec![a.clone(), twenty], vec![none, a]] {
            let message = common_mpp(&mixed).unwrap_err().to_string();
            assert!(message.contains("a.png records 0.2500 µm/px"), "{message}");
        }
    }
}
