//! Round-trip, tag, error and interoperability tests of the pyramidal TIFF writer.
//!
//! Every pyramid is checked against a reference computed here over the whole image, pixel
//! block by pixel block, independently of the writer's streaming code.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::tiff::{
    Channels, Compression, Downsample, PyramidOptions, PyramidWriter, TiffWriteError,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

/// A whole image in memory, pixels interleaved.
#[derive(Clone, Debug, PartialEq)]
struct Image {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let i = (y as usize * self.width as usize + x as usize) * self.channels;
        &self.pixels[i..i + self.channels]
    }

    fn row_bytes(&self) -> usize {
        self.width as usize * self.channels
    }
}

/// Background with filled rectangles (mask- or label-like, so many tiles are constant) and
/// a patch of noise (so blocks hold four different values).
fn synthetic(rng: &mut ChaCha8Rng, width: u32, height: u32, channels: Channels) -> Image {
    let c = channels.samples();
    let background = if c == 3 && rng.random_bool(0.5) {
        255
    } else {
        0
    };
    let mut image = Image {
        width,
        height,
        channels: c,
        pixels: vec![background; width as usize * height as usize * c],
    };
    let mut fill = |rng: &mut ChaCha8Rng, noise: bool| {
        let (x0, y0) = (rng.random_range(0..width), rng.random_range(0..height));
        let x1 = (x0 + rng.random_range(1..=width.div_ceil(3))).min(width);
        let y1 = (y0 + rng.random_range(1..=height.div_ceil(3))).min(height);
        let colour: Vec<u8> = (0..c).map(|_| rng.random_range(1..=255)).collect();
        for y in y0..y1 {
            for x in x0..x1 {
                let i = (y as usize * width as usize + x as usize) * c;
                for (s, sample) in image.pixels[i..i + c].iter_mut().enumerate() {
                    *sample = if noise { rng.random() } else { colour[s] };
                }
            }
        }
    };
    for _ in 0..rng.random_range(0..6) {
        fill(rng, false);
    }
    fill(rng, true);
    image
}

fn reference_levels(image: &Image, tile: u32, rule: Downsample) -> Vec<Image> {
    let mut levels = vec![image.clone()];
    loop {
        let last = levels.last().unwrap();
        if last.width <= tile && last.height <= tile {
            return levels;
        }
        let next = reference_reduce(last, rule);
        levels.push(next);
    }
}

/// Each output pixel from the 1, 2 or 4 pixels of its block that exist.
fn reference_reduce(image: &Image, rule: Downsample) -> Image {
    let (width, height) = (image.width.div_ceil(2), image.height.div_ceil(2));
    let mut pixels = Vec::with_capacity(width as usize * height as usize * image.channels);
    for y in 0..height {
        for x in 0..width {
            let mut block: Vec<&[u8]> = Vec::new();
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (sx, sy) = (2 * x + dx, 2 * y + dy);
                if sx < image.width && sy < image.height {
                    block.push(image.pixel(sx, sy));
                }
            }
            let n = block.len() as u32;
            let per_sample = |f: &dyn Fn(Vec<u8>) -> u8| -> Vec<u8> {
                (0..image.channels)
                    .map(|s| f(block.iter().map(|p| p[s]).collect()))
                    .collect()
            };
            let out = match rule {
                Downsample::Max => per_sample(&|v| *v.iter().max().unwrap()),
                Downsample::Nearest => block[0].to_vec(),
                Downsample::Mean => per_sample(&|v| {
                    let sum: u32 = v.iter().map(|&s| u32::from(s)).sum();
                    ((sum + n / 2) / n) as u8
                }),
                Downsample::Mode => {
                    let count = |p: &[u8]| block.iter().filter(|q| **q == p).count();
                    block
                        .iter()
                        .max_by(|a, b| count(a).cmp(&count(b)).then(a.cmp(b)))
                        .unwrap()
                        .to_vec()
                }
            };
            pixels.extend(out);
        }
    }
    Image {
        width,
        height,
        channels: image.channels,
        pixels,
    }
}

fn fixed_time() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Streams `image` tile row by tile row; all-zero rows go through `write_empty_tile_row`
/// when `use_empty`.
fn write(path: &Path, image: &Image, options: PyramidOptions, use_empty: bool) -> PathBuf {
    let tile = options.tile_size;
    let rule = options.downsample;
    let mut writer = PyramidWriter::create(path, image.width, image.height, options).unwrap();
    let expected: Vec<_> = reference_levels(image, tile, rule)
        .iter()
        .map(|l| (l.width, l.height))
        .collect();
    assert_eq!(writer.level_dimensions(), expected);
    let mut y = 0;
    while writer.rows_expected() > 0 {
        let rows = writer.rows_expected() as usize;
        let bytes = &image.pixels[y * image.row_bytes()..(y + rows) * image.row_bytes()];
        if use_empty && bytes.iter().all(|&b| b == 0) {
            writer.write_empty_tile_row().unwrap();
        } else {
            writer.write_tile_row(bytes).unwrap();
        }
        y += rows;
    }
    assert_eq!(y, image.height as usize);
    let written = writer.finish().unwrap();
    assert_eq!(written, path);
    written
}

/// Decodes every page tile by tile with the `tiff` crate.
fn read_levels(path: &Path, tile: u32) -> Vec<Image> {
    let mut decoder = Decoder::new(File::open(path).unwrap()).unwrap();
    let mut levels = Vec::new();
    loop {
        let (width, height) = decoder.dimensions().unwrap();
        assert_eq!(decoder.chunk_dimensions(), (tile, tile));
        let channels = decoder.get_tag_u32(Tag::SamplesPerPixel).unwrap() as usize;
        let mut image = Image {
            width,
            height,
            channels,
            pixels: vec![0; width as usize * height as usize * channels],
        };
        let across = width.div_ceil(tile);
        assert_eq!(
            decoder.tile_count().unwrap(),
            across * height.div_ceil(tile)
        );
        let tile_row = tile as usize * channels;
        let mut data = DecodingResult::U8(Vec::new());
        for index in 0..decoder.tile_count().unwrap() {
            // Full-tile-width rows: tiff 0.11.3's `read_chunk` fails ("no lzw end code
            // found") on LZW tiles narrower than the tile width, libtiff-written ones too.
            decoder
                .read_chunk_to_buffer(&mut data, index, tile_row)
                .unwrap();
            let DecodingResult::U8(data) = &data else {
                panic!("not 8-bit");
            };
            let (tw, th) = decoder.chunk_data_dimensions(index);
            let (x0, y0) = ((index % across) * tile, (index / across) * tile);
            let row = tw as usize * channels;
            for (r, src) in data.chunks(tile_row).take(th as usize).enumerate() {
                let src = &src[..row];
                let start = ((y0 as usize + r) * width as usize + x0 as usize) * channels;
                image.pixels[start..start + row].copy_from_slice(src);
            }
        }
        levels.push(image);
        if !decoder.more_images() {
            return levels;
        }
        decoder.next_image().unwrap();
    }
}

fn round_trip(dir: &Path, rng: &mut ChaCha8Rng, size: (u32, u32), options: PyramidOptions) {
    let image = synthetic(rng, size.0, size.1, options.channels);
    let name = format!("{}x{}-{:?}.tif", size.0, size.1, options.compression);
    let path = dir.join(name);
    let (tile, rule) = (options.tile_size, options.downsample);
    let use_empty = rng.random_bool(0.5);
    write(&path, &image, options.clone(), use_empty);
    let got = read_levels(&path, tile);
    let want = reference_levels(&image, tile, rule);
    assert_eq!(got.len(), want.len(), "level count for {options:?}");
    for (level, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "level {level} differs for {size:?} {options:?}");
    }
}

#[test]
fn round_trips_edge_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let shapes = [
        (1, 1),
        (5000, 3),
        (3, 5000),
        (512, 512),
        (513, 511),
        (1024, 1024),
        (1025, 257),
    ];
    let compressions = [Compression::Deflate, Compression::Lzw, Compression::None];
    let rules = [
        Downsample::Max,
        Downsample::Mode,
        Downsample::Nearest,
        Downsample::Mean,
    ];
    for (i, &size) in shapes.iter().enumerate() {
        for (j, channels) in [Channels::Gray, Channels::Rgb].into_iter().enumerate() {
            let k = i * 2 + j;
            let options = PyramidOptions {
                tile_size: if k % 2 == 0 { 256 } else { 512 },
                compression: compressions[k % 3],
                predictor: k % 5 != 0,
                downsample: rules[k % 4],
                channels,
                ..PyramidOptions::default()
            };
            round_trip(dir.path(), &mut rng, size, options);
        }
    }
}

/// Random sizes, tile sizes (small ones give deep pyramids) and options.
#[test]
fn round_trips_random_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..60 {
        let side = |rng: &mut ChaCha8Rng| match rng.random_range(0..4) {
            0 => rng.random_range(1..40),
            1 => rng.random_range(1..=4) * 256 + rng.random_range(0..3) - 1,
            _ => rng.random_range(1..1300),
        };
        let size = (side(&mut rng), side(&mut rng));
        let options = PyramidOptions {
            tile_size: [16, 48, 256, 512][rng.random_range(0..4)],
            compression: [Compression::Deflate, Compression::Lzw, Compression::None]
                [rng.random_range(0..3)],
            predictor: rng.random_bool(0.7),
            downsample: [
                Downsample::Max,
                Downsample::Mode,
                Downsample::Nearest,
                Downsample::Mean,
            ][rng.random_range(0..4)],
            channels: [Channels::Gray, Channels::Rgb][rng.random_range(0..2)],
            ..PyramidOptions::default()
        };
        round_trip(dir.path(), &mut rng, size, options);
    }
}

#[test]
fn writes_tags_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.tif");
    let image = synthetic(&mut ChaCha8Rng::seed_from_u64(3), 700, 300, Channels::Rgb);
    let options = PyramidOptions {
        tile_size: 256,
        channels: Channels::Rgb,
        downsample: Downsample::Mean,
        compression: Compression::Lzw,
        mpp: Some((0.25, 0.5)),
        description: "slidestream mask of a.svs; channel 0, threshold 0.5".into(),
        software: "slidestream test".into(),
        date_time: Some(fixed_time()),
        ..PyramidOptions::default()
    };
    write(&path, &image, options, false);

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"II\x2b\x00", "little-endian BigTIFF header");

    let mut decoder = Decoder::new(File::open(&path).unwrap()).unwrap();
    for level in 0..3u32 {
        let u = |d: &mut Decoder<File>, tag| d.get_tag_u32(tag).unwrap();
        let subfile = decoder
            .find_tag_unsigned::<u32>(Tag::NewSubfileType)
            .unwrap();
        assert_eq!(subfile.unwrap_or(0), u32::from(level > 0));
        assert_eq!(u(&mut decoder, Tag::PhotometricInterpretation), 2);
        assert_eq!(u(&mut decoder, Tag::Compression), 5);
        assert_eq!(u(&mut decoder, Tag::Predictor), 2);
        assert_eq!(u(&mut decoder, Tag::SamplesPerPixel), 3);
        assert_eq!(u(&mut decoder, Tag::PlanarConfiguration), 1);
        assert_eq!(u(&mut decoder, Tag::ResolutionUnit), 3);
        assert_eq!(
            decoder.get_tag_u16_vec(Tag::BitsPerSample).unwrap(),
            [8, 8, 8]
        );
        let scale = f64::from(1 << level);
        let mut rational = |tag| match decoder.get_tag(tag).unwrap() {
            tiff::decoder::ifd::Value::Rational(n, d) => f64::from(n) / f64::from(d),
            other => panic!("{tag:?} is {other:?}"),
        };
        let (x, y) = (rational(Tag::XResolution), rational(Tag::YResolution));
        assert!(
            (10_000.0 / x - 0.25 * scale).abs() < 1e-6,
            "level {level}: {x}"
        );
        assert!(
            (10_000.0 / y - 0.5 * scale).abs() < 1e-6,
            "level {level}: {y}"
        );
        let text = |d: &mut Decoder<File>, tag| d.get_tag_ascii_string(tag).unwrap();
        assert_eq!(text(&mut decoder, Tag::Software), "slidestream test");
        assert_eq!(text(&mut decoder, Tag::DateTime), "2023:11:14 22:13:20");
        let description = decoder.find_tag(Tag::ImageDescription).unwrap();
        assert_eq!(description.is_some(), level == 0);
        if level == 0 {
            assert_eq!(
                text(&mut decoder, Tag::ImageDescription),
                "slidestream mask of a.svs; channel 0, threshold 0.5"
            );
        }
        if level < 2 {
            decoder.next_image().unwrap();
        }
    }
    assert!(!decoder.more_images());
}

#[test]
fn omits_resolution_without_mpp_and_predictor_without_compression() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.tif");
    let image = synthetic(&mut ChaCha8Rng::seed_from_u64(4), 300, 40, Channels::Gray);
    let options = PyramidOptions {
        tile_size: 256,
        compression: Compression::None,
        ..PyramidOptions::default()
    };
    write(&path, &image, options, false);
    let mut decoder = Decoder::new(File::open(&path).unwrap()).unwrap();
    for _ in 0..2 {
        for tag in [
            Tag::XResolution,
            Tag::YResolution,
            Tag::ResolutionUnit,
            Tag::Predictor,
            Tag::ImageDescription,
        ] {
            assert!(decoder.find_tag(tag).unwrap().is_none(), "{tag:?}");
        }
        assert_eq!(decoder.get_tag_u32(Tag::Compression).unwrap(), 1);
        assert_eq!(
            decoder.get_tag_u32(Tag::PhotometricInterpretation).unwrap(),
            1
        );
        let software = decoder.get_tag_ascii_string(Tag::Software).unwrap();
        assert!(software.starts_with("slidestream "), "{software}");
        if decoder.more_images() {
            decoder.next_image().unwrap();
        }
    }
}

#[test]
fn output_is_deterministic_and_empty_rows_match_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = synthetic(
        &mut ChaCha8Rng::seed_from_u64(5),
        1500,
        1300,
        Channels::Gray,
    );
    // Blank the first two tile rows so `write_empty_tile_row` has something to do.
    image.pixels[..1500 * 512].fill(0);
    let options = PyramidOptions {
        tile_size: 256,
        date_time: Some(fixed_time()),
        ..PyramidOptions::default()
    };
    let a = write(&dir.path().join("a.tif"), &image, options.clone(), false);
    let b = write(&dir.path().join("b.tif"), &image, options.clone(), true);
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = single.install(|| write(&dir.path().join("c.tif"), &image, options, false));
    let a = std::fs::read(a).unwrap();
    assert!(
        a == std::fs::read(b).unwrap(),
        "empty rows changed the output"
    );
    assert!(
        a == std::fs::read(c).unwrap(),
        "thread count changed the output"
    );
}

/// All tiles of a blank image, on every level, point at one compressed tile.
#[test]
fn constant_tiles_share_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.tif");
    let (width, height) = (6000, 5000);
    let mut writer =
        PyramidWriter::create(&path, width, height, PyramidOptions::default()).unwrap();
    let full = vec![0u8; width as usize * 512];
    let mut first = true;
    while writer.rows_expected() > 0 {
        let rows = writer.rows_expected() as usize;
        if first {
            // Real zero pixels must end up sharing the same bytes as empty rows.
            writer
                .write_tile_row(&full[..width as usize * rows])
                .unwrap();
            first = false;
        } else {
            writer.write_empty_tile_row().unwrap();
        }
    }
    writer.finish().unwrap();

    let mut decoder = Decoder::new(File::open(&path).unwrap()).unwrap();
    let mut offsets = Vec::new();
    loop {
        offsets.extend(decoder.get_tag_u64_vec(Tag::TileOffsets).unwrap());
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().unwrap();
    }
    assert!(offsets.len() > 120);
    assert!(offsets.iter().all(|&o| o == offsets[0]));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 8_000, "blank pyramid takes {size} bytes");
}

/// Streams `image` through `write_rows` in chunks of random whole-row counts.
fn write_in_chunks(path: &Path, image: &Image, options: PyramidOptions, rng: &mut ChaCha8Rng) {
    let mut writer = PyramidWriter::create(path, image.width, image.height, options).unwrap();
    let mut y = 0;
    while y < image.height as usize {
        let rows = rng.random_range(1..=700).min(image.height as usize - y);
        let bytes = &image.pixels[y * image.row_bytes()..(y + rows) * image.row_bytes()];
        writer.write_rows(bytes).unwrap();
        y += rows;
    }
    assert_eq!(writer.rows_expected(), 0);
    writer.finish().unwrap();
}

/// A mask held as bits is written byte for byte as the same 0/255 mask held as bytes,
/// whether it comes in tile rows or in chunks of any number of rows (any non-zero pixel
/// counts as 255); so are grey and RGB images through `write_rows`.
#[test]
fn binary_and_chunked_rows_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for case in 0..6 {
        let size = (rng.random_range(1..1400), rng.random_range(1..1400));
        let channels = [Channels::Gray, Channels::Rgb][case % 2];
        let image = synthetic(&mut rng, size.0, size.1, channels);
        let options = PyramidOptions {
            tile_size: [16, 48, 256, 512][rng.random_range(0..4)],
            compression: [Compression::Deflate, Compression::Lzw, Compression::None]
                [rng.random_range(0..3)],
            channels,
            date_time: Some(fixed_time()),
            ..PyramidOptions::default()
        };
        let whole = write(
            &dir.path().join("whole.tif"),
            &image,
            options.clone(),
            false,
        );
        let chunked = dir.path().join("chunked.tif");
        write_in_chunks(&chunked, &image, options.clone(), &mut rng);
        let want = std::fs::read(whole).unwrap();
        assert!(
            want == std::fs::read(&chunked).unwrap(),
            "case {case}: chunks"
        );
        if channels == Channels::Rgb {
            continue;
        }
        let mask = Image {
            pixels: image
                .pixels
                .iter()
                .map(|&v| if v != 0 { 255 } else { 0 })
                .collect(),
            ..image.clone()
        };
        let gray = write(&dir.path().join("gray.tif"), &mask, options.clone(), false);
        let want = std::fs::read(gray).unwrap();
        let binary = PyramidOptions {
            channels: Channels::Binary,
            ..options
        };
        let tiles = write(&dir.path().join("bits.tif"), &image, binary.clone(), true);
        assert!(want == std::fs::read(tiles).unwrap(), "case {case}: bits");
        write_in_chunks(&chunked, &image, binary, &mut rng);
        assert!(
            want == std::fs::read(&chunked).unwrap(),
            "case {case}: bits, chunks"
        );
    }
}

#[test]
fn rows_that_are_not_whole_or_break_a_tile_row_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunks.tif");
    let mut writer = PyramidWriter::create(&path, 100, 600, PyramidOptions::default()).unwrap();
    let err = writer.write_rows(&[0; 150]).unwrap_err();
    assert!(
        err.to_string().contains("chunks.tif")
            && err
                .to_string()
                .contains("150 bytes are not whole rows of 100 bytes"),
        "{err}"
    );
    writer.write_rows(&[0; 300]).unwrap();
    for err in [
        writer.write_tile_row(&[0; 51_200]).unwrap_err(),
        writer.write_empty_tile_row().unwrap_err(),
    ] {
        assert!(
            matches!(err, TiffWriteError::MidTileRow { buffered: 3, .. }),
            "{err}"
        );
    }
    // The refused calls changed nothing: the rest of the image still fits.
    writer.write_rows(&vec![0; 100 * 597]).unwrap();
    assert_eq!(writer.rows_expected(), 0);
    writer.finish().unwrap();
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn partial_file_until_finish_and_removed_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mask.tif");
    let mut writer = PyramidWriter::create(&path, 600, 600, PyramidOptions::default()).unwrap();
    writer.write_empty_tile_row().unwrap();
    assert_eq!(leftovers(dir.path()), ["mask.tif.partial"]);
    drop(writer);
    assert!(leftovers(dir.path()).is_empty(), "cancel left files");

    let writer = PyramidWriter::create(&path, 600, 600, PyramidOptions::default()).unwrap();
    let err = writer.finish().unwrap_err();
    assert!(matches!(
        err,
        TiffWriteError::Incomplete {
            written: 0,
            height: 600,
            ..
        }
    ));
    assert!(err.to_string().contains("mask.tif"), "{err}");
    assert!(leftovers(dir.path()).is_empty(), "failed finish left files");

    let mut writer = PyramidWriter::create(&path, 600, 600, PyramidOptions::default()).unwrap();
    writer.write_empty_tile_row().unwrap();
    writer.write_empty_tile_row().unwrap();
    let err = writer.write_empty_tile_row().unwrap_err();
    assert!(matches!(err, TiffWriteError::TooManyRows { .. }), "{err}");
    writer.finish().unwrap();
    assert_eq!(leftovers(dir.path()), ["mask.tif"]);
}

#[test]
fn wrong_row_length_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgb.tif");
    let options = PyramidOptions {
        channels: Channels::Rgb,
        ..PyramidOptions::default()
    };
    let mut writer = PyramidWriter::create(&path, 512, 700, options).unwrap();
    let err = writer.write_tile_row(&[0; 300]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("rgb.tif")
            && text.contains(
                "tile row 0 has 300 bytes, expected 786432 (width 512 × 3 channel(s) × 512 rows)"
            ),
        "{text}"
    );
    // A rejected row changes nothing: the right one is still accepted.
    writer.write_tile_row(&vec![9; 512 * 3 * 512]).unwrap();
    assert_eq!(writer.rows_expected(), 188);
    let err = writer.write_tile_row(&vec![9; 512 * 3 * 512]).unwrap_err();
    assert!(err.to_string().contains("expected 288768"), "{err}");
}

#[test]
fn rejects_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tif");
    let bad = [
        PyramidOptions {
            tile_size: 100,
            ..PyramidOptions::default()
        },
        PyramidOptions {
            tile_size: 0,
            ..PyramidOptions::default()
        },
        PyramidOptions {
            mpp: Some((0.25, -1.0)),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            mpp: Some((f64::NAN, 0.25)),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            description: "<?XML version=\"1.0\"?>".into(),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            description: "Aperio Image Library".into(),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            software: "Philips".into(),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            description: "µm".into(),
            ..PyramidOptions::default()
        },
        PyramidOptions {
            channels: Channels::Binary,
            downsample: Downsample::Mean,
            ..PyramidOptions::default()
        },
    ];
    for options in bad {
        let err = PyramidWriter::create(&path, 10, 10, options.clone()).unwrap_err();
        assert!(
            matches!(err, TiffWriteError::InvalidOptions { .. }),
            "{options:?}: {err}"
        );
        assert!(err.to_string().contains("x.tif"), "{err}");
    }
    let err = PyramidWriter::create(&path, 0, 10, PyramidOptions::default()).unwrap_err();
    assert!(matches!(err, TiffWriteError::EmptyImage { .. }), "{err}");
    assert!(leftovers(dir.path()).is_empty());

    let missing = dir.path().join("no/such/dir/x.tif");
    let err = PyramidWriter::create(&missing, 10, 10, PyramidOptions::default()).unwrap_err();
    assert!(matches!(err, TiffWriteError::Create { .. }), "{err}");
    assert!(err.to_string().contains("x.tif.partial"), "{err}");
}

/// A full disk: the partial name is pre-made as a link to /dev/full.
#[test]
fn disk_full_is_reported_and_cleaned_up() {
    if !Path::new("/dev/full").exists() {
        println!("skipped: no /dev/full");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.tif");
    std::os::unix::fs::symlink("/dev/full", dir.path().join("full.tif.partial")).unwrap();
    let image = synthetic(&mut ChaCha8Rng::seed_from_u64(6), 3000, 3000, Channels::Rgb);
    let options = PyramidOptions {
        channels: Channels::Rgb,
        compression: Compression::None,
        ..PyramidOptions::default()
    };
    let mut writer = PyramidWriter::create(&path, 3000, 3000, options).unwrap();
    let mut failure = None;
    for rows in image.pixels.chunks(3000 * 3 * 512) {
        if let Err(e) = writer.write_tile_row(rows) {
            failure = Some(e);
            break;
        }
    }
    let err = match failure {
        Some(e) => {
            let again = writer.write_empty_tile_row().unwrap_err();
            assert!(matches!(again, TiffWriteError::Stopped { .. }), "{again}");
            e
        }
        None => writer.finish().unwrap_err(),
    };
    let text = err.to_string();
    assert!(
        text.contains("full.tif") && text.contains("disk space"),
        "{text}"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "left {:?}",
        leftovers(dir.path())
    );
}

/// A gray mask and an RGB image opened through the real OpenSlide library.
#[test]
fn openslide_reads_levels_mpp_and_pixels() {
    use openslide_rs::{Address, OpenSlide, Region, Size};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (channels, rule) in [
        (Channels::Gray, Downsample::Max),
        (Channels::Rgb, Downsample::Mean),
    ] {
        let (width, height) = (1500, 1100);
        let image = synthetic(&mut rng, width, height, channels);
        let path = dir.path().join(format!("{channels:?}.tif"));
        let options = PyramidOptions {
            tile_size: 256,
            channels,
            downsample: rule,
            mpp: Some((0.2522, 0.2533)),
            description: "slidestream test image".into(),
            ..PyramidOptions::default()
        };
        write(&path, &image, options, false);
        let want = reference_levels(&image, 256, rule);

        assert_eq!(OpenSlide::detect_vendor(&path).unwrap(), "generic-tiff");
        let slide = OpenSlide::new(&path).unwrap();
        assert_eq!(slide.level_count() as usize, want.len());
        let mpp = |key| slide.property_value(key).unwrap().parse::<f64>().unwrap();
        assert!((mpp("openslide.mpp-x") - 0.2522).abs() < 1e-6);
        assert!((mpp("openslide.mpp-y") - 0.2533).abs() < 1e-6);
        assert_eq!(
            slide.property_value("tiff.ImageDescription").unwrap(),
            "slidestream test image"
        );
        for (level, reference) in want.iter().enumerate() {
            let size = slide.level_dimensions(level as u32).unwrap();
            assert_eq!((size.w, size.h), (reference.width, reference.height));
            // The whole level from its origin: no level-0 rounding involved.
            let region = Region {
                size: Size {
                    w: reference.width,
                    h: reference.height,
                },
                level: level as u32,
                address: Address { x: 0, y: 0 },
            };
            let argb = slide.read_region(&region).unwrap();
            assert_eq!(argb.len(), reference.pixels.len() / reference.channels * 4);
            for (i, bgra) in argb.chunks_exact(4).enumerate() {
                let p = &reference.pixels[i * reference.channels..][..reference.channels];
                let rgb = if p.len() == 1 {
                    [p[0]; 3]
                } else {
                    [p[0], p[1], p[2]]
                };
                let got = [bgra[2], bgra[1], bgra[0], bgra[3]];
                assert_eq!(
                    got,
                    [rgb[0], rgb[1], rgb[2], 255],
                    "level {level} pixel {i}"
                );
            }
        }
        // read_region's address is in level-0 pixels, whatever the level read.
        let region = Region {
            size: Size { w: 40, h: 30 },
            level: 1,
            address: Address { x: 600, y: 400 },
        };
        let argb = slide.read_region(&region).unwrap();
        let level1 = &want[1];
        for (i, bgra) in argb.chunks_exact(4).enumerate() {
            let (x, y) = (300 + i as u32 % 40, 200 + i as u32 / 40);
            assert_eq!(bgra[2], level1.pixel(x, y)[0], "level 1 ({x}, {y})");
        }
    }
}

fn tool_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// libvips (through libtiff) reads every page back exactly.
#[test]
fn vips_reads_every_page() {
    if !tool_works("vips", &["--version"]) {
        println!("skipped: vips is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (channels, compression) in [
        (Channels::Gray, Compression::Deflate),
        (Channels::Rgb, Compression::Lzw),
    ] {
        let image = synthetic(&mut rng, 1300, 900, channels);
        let path = dir.path().join(format!("{channels:?}.tif"));
        let options = PyramidOptions {
            tile_size: 256,
            channels,
            compression,
            downsample: Downsample::Mode,
            ..PyramidOptions::default()
        };
        write(&path, &image, options, true);
        let want = reference_levels(&image, 256, Downsample::Mode);
        let header = |page: usize, field: &str| -> String {
            let out = Command::new("vipsheader")
                .args(["-f", field, &format!("{}[page={page}]", path.display())])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        assert_eq!(header(0, "n-pages"), want.len().to_string());
        for (page, reference) in want.iter().enumerate() {
            assert_eq!(header(page, "width"), reference.width.to_string());
            assert_eq!(header(page, "height"), reference.height.to_string());
            assert_eq!(header(page, "bands"), reference.channels.to_string());
            let raw = dir.path().join(format!("page{page}.raw"));
            let status = Command::new("vips")
                .arg("rawsave")
                .arg(format!("{}[page={page}]", path.display()))
                .arg(&raw)
                .status()
                .unwrap();
            assert!(status.success());
            assert!(
                std::fs::read(&raw).unwrap() == reference.pixels,
                "page {page}"
            );
        }
    }
}

/// tifffile (pure Python TIFF reader) agrees on every page, when installed.
#[test]
fn tifffile_reads_every_page() {
    if !tool_works("python3", &["-c", "import tifffile, numpy"]) {
        println!("skipped: python3 with tifffile and numpy is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic(&mut ChaCha8Rng::seed_from_u64(9), 1100, 700, Channels::Rgb);
    let path = dir.path().join("rgb.tif");
    let options = PyramidOptions {
        tile_size: 256,
        channels: Channels::Rgb,
        downsample: Downsample::Mean,
        ..PyramidOptions::default()
    };
    write(&path, &image, options, false);
    let want = reference_levels(&image, 256, Downsample::Mean);
    for (page, reference) in want.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("page{page}.raw")),
            &reference.pixels,
        )
        .unwrap();
    }
    let script = "import sys, tifffile, numpy\n\
        path, ref, pages = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
        with tifffile.TiffFile(path) as tif:\n\
        \x20   assert tif.is_bigtiff and len(tif.pages) == pages, len(tif.pages)\n\
        \x20   for i, page in enumerate(tif.pages):\n\
        \x20       want = open(f'{ref}/page{i}.raw', 'rb').read()\n\
        \x20       assert page.asarray().tobytes() == want, i\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .arg(dir.path())
        .arg(want.len().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "tifffile disagrees");
}
