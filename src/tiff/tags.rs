//! The tags of each level's IFD.

use super::{Channels, Compression, PyramidOptions};
use std::io::{Seek, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use tiff::encoder::{DirectoryEncoder, Rational, TiffKindBig};
use tiff::tags::{
    CompressionMethod, PhotometricInterpretation, PlanarConfiguration, Predictor, ResolutionUnit,
    SampleFormat, Tag,
};
use tiff::TiffResult;

/// Tag values shared by all levels.
pub(crate) struct TagTemplate {
    channels: Channels,
    compression: Compression,
    predictor: bool,
    tile: u32,
    mpp: Option<(f64, f64)>,
    description: String,
    software: String,
    date_time: String,
}

/// Where one level's tiles are in the file, in row-major tile order.
#[derive(Default)]
pub(crate) struct TileTable {
    pub(crate) offsets: Vec<u64>,
    pub(crate) byte_counts: Vec<u64>,
}

impl TagTemplate {
    /// `predictor` is whether tiles really were predicted (never with no compression).
    pub(crate) fn new(options: &PyramidOptions, predictor: bool) -> Self {
        Self {
            channels: options.channels,
            compression: options.compression,
            predictor,
            tile: options.tile_size,
            mpp: options.mpp,
            description: options.description.clone(),
            software: options.software.clone(),
            date_time: format_date_time(options.date_time.unwrap_or_else(SystemTime::now)),
        }
    }

    pub(crate) fn write<W: Write + Seek>(
        &self,
        dir: &mut DirectoryEncoder<'_, W, TiffKindBig>,
        level: usize,
        (width, height): (u32, u32),
        tiles: &TileTable,
    ) -> TiffResult<()> {
        if level > 0 {
            // Reduced-resolution version of level 0: how OpenSlide and others tell pyramid
            // levels from unrelated pages.
            dir.write_tag(Tag::NewSubfileType, 1u32)?;
        }
        dir.write_tag(Tag::ImageWidth, width)?;
        dir.write_tag(Tag::ImageLength, height)?;
        let samples = self.channels.samples();
        dir.write_tag(Tag::BitsPerSample, &[8u16; 3][..samples])?;
        dir.write_tag(
            Tag::SampleFormat,
            &[SampleFormat::Uint.to_u16(); 3][..samples],
        )?;
        dir.write_tag(Tag::SamplesPerPixel, samples as u16)?;
        let photometric = match self.channels {
            Channels::Gray | Channels::Binary => PhotometricInterpretation::BlackIsZero,
            Channels::Rgb => PhotometricInterpretation::RGB,
        };
        dir.write_tag(Tag::PhotometricInterpretation, photometric.to_u16())?;
        dir.write_tag(
            Tag::PlanarConfiguration,
            PlanarConfiguration::Chunky.to_u16(),
        )?;
        let method = match self.compression {
            Compression::Deflate => CompressionMethod::Deflate,
            Compression::Lzw => CompressionMethod::LZW,
            Compression::None => CompressionMethod::None,
        };
        dir.write_tag(Tag::Compression, method.to_u16())?;
        if self.predictor {
            dir.write_tag(Tag::Predictor, Predictor::Horizontal.to_u16())?;
        }
        dir.write_tag(Tag::TileWidth, self.tile)?;
        dir.write_tag(Tag::TileLength, self.tile)?;
        dir.write_tag(Tag::TileOffsets, &tiles.offsets[..])?;
        dir.write_tag(Tag::TileByteCounts, &tiles.byte_counts[..])?;
        if let Some((mpp_x, mpp_y)) = self.mpp {
            // A level-k pixel covers 2^k level-0 pixels (only the last row/column is cut).
            let scale = f64::from(1u32 << level);
            dir.write_tag(Tag::ResolutionUnit, ResolutionUnit::Centimeter.to_u16())?;
            dir.write_tag(Tag::XResolution, pixels_per_cm(mpp_x * scale))?;
            dir.write_tag(Tag::YResolution, pixels_per_cm(mpp_y * scale))?;
        }
        if level == 0 && !self.description.is_empty() {
            dir.write_tag(Tag::ImageDescription, self.description.as_str())?;
        }
        if !self.software.is_empty() {
            dir.write_tag(Tag::Software, self.software.as_str())?;
        }
        dir.write_tag(Tag::DateTime, self.date_time.as_str())
    }
}

/// `10⁴ / mpp` pixels per centimetre as a fraction with the largest denominator (≤ 10⁶)
/// that keeps the numerator in a u32: relative error below 10⁻⁶ for any real pixel size.
fn pixels_per_cm(mpp: f64) -> Rational {
    let value = 10_000.0 / mpp;
    let d = (f64::from(u32::MAX) / value).floor().clamp(1.0, 1e6);
    let n = (value * d).round().clamp(1.0, f64::from(u32::MAX));
    Rational {
        n: n as u32,
        d: d as u32,
    }
}

/// TIFF DateTime, "YYYY:MM:DD HH:MM:SS", in UTC (the tag has no zone field).
pub(crate) fn format_date_time(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}:{month:02}:{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn date_time_matches_known_dates() {
        let at = |s| format_date_time(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970:01:01 00:00:00");
        assert_eq!(at(951_782_400), "2000:02:29 00:00:00");
        assert_eq!(at(1_709_251_199), "2024:02:29 23:59:59");
        assert_eq!(at(4_107_542_400), "2100:03:01 00:00:00");
    }

    #[test]
    fn resolution_is_precise() {
        for mpp in [0.2277, 0.25, 0.5, 1.0, 16.0, 512.0, 1e-3] {
            let r = pixels_per_cm(mpp);
            let back = 10_000.0 * f64::from(r.d) / f64::from(r.n);
            assert!((back / mpp - 1.0).abs() < 1e-6, "{mpp} -> {}/{}", r.n, r.d);
        }
    }
}
