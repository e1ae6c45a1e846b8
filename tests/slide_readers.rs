//! Slide readers on real slides (when ../shared is present) and on images made here.

mod common;

use common::{binary, json_output, shared_data};
use slidestream::slide::{self, read_overview, Slide, SlideError};
use std::sync::Arc;

fn open(path: &std::path::Path) -> Arc<dyn Slide> {
    slide::open(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Mean absolute difference per channel value between two regions of equal size.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[test]
fn cmu_svs_geometry_mpp_and_pixels() {
    let Some(path) = shared_data("slides/CMU-1-Small-Region.svs") else {
        return;
    };
    let s = open(&path);
    assert_eq!(s.dimensions(), (2220, 2967));
    assert_eq!(s.vendor(), "aperio");
    let (mx, my) = s.mpp().expect("CMU records its MPP");
    assert!(
        (mx - 0.499).abs() < 1e-3 && (my - 0.499).abs() < 1e-3,
        "{mx} {my}"
    );
    let region = s.read_region(0, 1000, 1000, 64, 48).unwrap();
    assert_eq!((region.width, region.height), (64, 48));
    assert_eq!(region.pixels.len(), 64 * 48 * 3);
    // The centre of this slide is tissue: neither blank nor uniform.
    let min = *region.pixels.iter().min().unwrap();
    let max = *region.pixels.iter().max().unwrap();
    assert!(max - min > 50 && min < 200, "flat region {min}..{max}");
}

#[test]
fn dicom_folder_matches_the_svs_it_was_made_from() {
    let (Some(dicom), Some(svs)) = (
        shared_data("slides/CMU-1-Small-Region-dicom"),
        shared_data("slides/CMU-1-Small-Region.svs"),
    ) else {
        return;
    };
    let d = open(&dicom);
    let s = open(&svs);
    assert_eq!(d.vendor(), "dicom");
    assert_eq!(d.dimensions(), s.dimensions());
    assert!(d.levels().len() > 1, "DICOM series has a pyramid");
    for pair in d.levels().windows(2) {
        assert!(pair[1].width < pair[0].width && pair[1].downsample > pair[0].downsample);
    }
    let a = d.read_region(0, 700, 900, 128, 128).unwrap();
    let b = s.read_region(0, 700, 900, 128, 128).unwrap();
    let diff = mean_abs_diff(&a.pixels, &b.pixels);
    assert!(
        diff < 3.0,
        "DICOM and SVS pixels differ by {diff} on average"
    );
}

#[test]
fn ndpi_and_jpeg2000_svs_open() {
    if let Some(path) = shared_data("slides/test3-DAPI-2.ndpi") {
        let s = open(&path);
        assert_eq!(s.vendor(), "hamamatsu");
        assert_eq!(s.dimensions(), (3968, 4864));
        assert_eq!(s.levels().len(), 7);
        assert!(s.mpp().is_some());
        let last = s.levels().len() - 1;
        s.read_region(last, 0, 0, 62, 76).unwrap();
    }
    if let Some(path) = shared_data("slides/TCGA-CR-7395-01A-01-TS1.svs") {
        let s = open(&path);
        assert_eq!(s.mpp(), None, "this slide records no MPP");
        s.read_region(1, 100, 100, 32, 32).unwrap();
    }
}

#[test]
fn regions_past_the_edge_are_white_padded() {
    let Some(path) = shared_data("slides/CMU-1-Small-Region.svs") else {
        return;
    };
    let s = open(&path);
    let (w, h) = s.dimensions();
    // 32×32 request whose top-left 16×16 quarter is inside the slide.
    let (x, y) = (w as i64 - 16, h as i64 - 16);
    let padded = s.read_region(0, x, y, 32, 32).unwrap();
    let inside = s.read_region(0, x, y, 16, 16).unwrap();
    for row in 0..32usize {
        for col in 0..32usize {
            let p = &padded.pixels[(row * 32 + col) * 3..][..3];
            if row < 16 && col < 16 {
                assert_eq!(p, &inside.pixels[(row * 16 + col) * 3..][..3]);
            } else {
                assert_eq!(p, [255, 255, 255], "outside pixel ({col},{row})");
            }
        }
    }
    let outside = s.read_region(0, -100, -100, 10, 10).unwrap();
    assert!(outside.pixels.iter().all(|&v| v == 255));
}

#[test]
fn concurrent_reads_equal_sequential_reads() {
    let Some(path) = shared_data("slides/CMU-1-Small-Region.svs") else {
        return;
    };
    let s = open(&path);
    let spots: Vec<(i64, i64)> = (0..24).map(|i| (i * 83 % 2000, i * 121 % 2800)).collect();
    let sequential: Vec<_> = spots
        .iter()
        .map(|&(x, y)| s.read_region(0, x, y, 100, 100).unwrap())
        .collect();
    let parallel: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = spots
            .iter()
            .map(|&(x, y)| {
                let s = &s;
                scope.spawn(move || s.read_region(0, x, y, 100, 100).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, parallel);
}

#[test]
fn plain_images_are_single_level_slides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gradient.png");
    let (w, h) = (37u32, 23u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 5, y as u8 * 9, 77]));
    img.save(&path).unwrap();
    let s = open(&path);
    assert_eq!(s.vendor(), "image");
    assert_eq!(s.levels().len(), 1);
    assert_eq!(s.mpp(), None);
    let r = s.read_region(0, 3, 4, 5, 6).unwrap();
    for row in 0..6u32 {
        for col in 0..5u32 {
            let got = &r.pixels[((row * 5 + col) * 3) as usize..][..3];
            assert_eq!(got, img.get_pixel(col + 3, row + 4).0);
        }
    }
    assert!(matches!(
        s.read_region(1, 0, 0, 1, 1),
        Err(SlideError::InvalidLevel {
            level: 1,
            count: 1,
            ..
        })
    ));
    // Overview of a 37×23 image at downsample 4: box averages of 4×4 blocks.
    let o = read_overview(s.as_ref(), 4.0, &|| false).unwrap();
    assert_eq!((o.image.width, o.image.height, o.downsample), (10, 6, 4.0));
    let expected_r = (0..4).map(|x| x * 5).sum::<u32>() as f64 / 4.0;
    assert!((f64::from(o.image.pixels[0]) - expected_r).abs() <= 0.5);
    if let Some(tile) = shared_data("monuseg-train/images/TCGA-18-5592-01Z-00-DX1.tif") {
        let s = open(&tile);
        assert_eq!(s.dimensions(), (1000, 1000));
    }
}

#[test]
fn bad_inputs_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.svs");
    assert!(matches!(
        slide::open(&missing),
        Err(SlideError::NotFound(_))
    ));

    let text = dir.path().join("notes.svs");
    std::fs::write(&text, "not a slide at all").unwrap();
    let e = slide::open(&text).err().expect("text file must not open");
    assert!(matches!(e, SlideError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("notes.svs"));

    if let Some(broken) = shared_data("slides/broken.svs") {
        assert!(slide::open(&broken).is_err());
    }
    if let Some(svs) = shared_data("slides/CMU-1-Small-Region.svs") {
        let bytes = std::fs::read(&svs).unwrap();
        for keep in [100, bytes.len() / 2, bytes.len() - 20_000] {
            let truncated = dir.path().join(format!("truncated-{keep}.svs"));
            std::fs::write(&truncated, &bytes[..keep]).unwrap();
            let e = slide::open(&truncated)
                .err()
                .expect("truncated slide must not open");
            assert!(matches!(e, SlideError::Corrupt { .. }), "{keep}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
    }
}

#[test]
fn cli_info_json_and_exit_code_2_on_bad_slides() {
    if let Some(svs) = shared_data("slides/CMU-1-Small-Region.svs") {
        let v = json_output(binary().args(["info", "--json"]).arg(&svs));
        assert_eq!(v["width"], 2220);
        assert_eq!(v["height"], 2967);
        assert_eq!(v["vendor"], "aperio");
        assert!((v["mpp_x"].as_f64().unwrap() - 0.499).abs() < 1e-3);
        assert_eq!(v["levels"][0]["downsample"], 1.0);
    }
    if let Some(tcga) = shared_data("slides/TCGA-CR-7395-01A-01-TS1.svs") {
        let v = json_output(binary().args(["info", "--json"]).arg(&tcga));
        assert!(v["mpp_x"].is_null() && v["mpp_y"].is_null());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut bad = vec![dir.path().join("missing.svs")];
    if let Some(broken) = shared_data("slides/broken.svs") {
        bad.push(broken);
    }
    for path in bad {
        let out = binary().arg("info").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name.as_ref()), "{stderr}");
    }
}

#[test]
fn fast_jpeg_tiles_match_openslide_within_decoder_tolerance() {
    let Some(path) = shared_data("slides/CMU-1-Small-Region.svs") else {
        return;
    };
    let fast = open(&path);
    let reference = slide::open_with(
        &path,
        slide::OpenOptions {
            fast_jpeg: false,
            ..Default::default()
        },
    )
    .unwrap();
    let (w, h) = fast.dimensions();
    // Tile-aligned, straddling tile seams (CMU's tiles are 240 px), and past the edges.
    let requests = [
        (0, 0, 240, 240),
        (100, 130, 512, 512),
        (1000, 1500, 333, 257),
        (w as i64 - 200, h as i64 - 150, 512, 512),
        (-50, -70, 300, 300),
    ];
    for (x, y, rw, rh) in requests {
        let a = fast.read_region(0, x, y, rw, rh).unwrap();
        let b = reference.read_region(0, x, y, rw, rh).unwrap();
        let diff = mean_abs_diff(&a.pixels, &b.pixels);
        let max = a
            .pixels
            .iter()
            .zip(&b.pixels)
            .map(|(p, q)| p.abs_diff(*q))
            .max()
            .unwrap();
        assert!(
            diff < 0.05 && max <= 2,
            "({x},{y}) {rw}x{rh}: mean {diff}, max {max}"
        );
    }
}
