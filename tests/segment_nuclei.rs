//! `segment`'s nuclei as objects: touching nuclei split, seam-free whatever the tiling, and
//! measured into the GeoJSON and `MASK.nuclei.csv.gz`.

mod common;

use common::{binary, json_output, synth_slide, BACKGROUND, NUCLEUS};
use slidestream::pipeline::CancelToken;
use slidestream::segment::{segment_slide, Predictor, SegmentOptions, SegmentSummary};
use slidestream::slide::geometry::Geometry;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn segment(slide: &Path, out: &Path, options: &SegmentOptions) -> SegmentSummary {
    let slide = slidestream::slide::open(slide).unwrap();
    let geometry = Geometry::native(slide.as_ref(), 0).unwrap();
    let predictor = Arc::new(Predictor::threshold_baseline(0.45).unwrap());
    segment_slide(
        slide,
        &geometry,
        predictor,
        out,
        options,
        &CancelToken::new(),
    )
    .unwrap()
}

fn table_text(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// The x extent of every GeoJSON polygon, in level-0 pixels.
fn polygon_spans(geojson: &Path) -> Vec<(f64, f64)> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(geojson).unwrap()).unwrap();
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let xs = f["geometry"]["coordinates"][0].as_array().unwrap();
            let xs = xs.iter().map(|p| p[0].as_f64().unwrap());
            xs.clone()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)))
        })
        .collect()
}

/// Instance labels (as the nuclei's outlines and order) and every measurement are the same
/// bytes whether the slide is segmented whole or in tiles of 128, 256 or 1024 px, although
/// nuclei straddle tiles and touching ones are split.
#[test]
fn nuclei_are_the_same_whole_and_tiled_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // 1500×1000 at 0.25 µm/px: every tiling has an edge across nuclei.
    let slide = synth_slide(&dir.path().join("slides"), "slide", 1500, 3);
    let outputs = |tile: u32| -> (PathBuf, SegmentSummary) {
        // The same file name in each folder: GeoJSON ids derive from it.
        let folder = dir.path().join(format!("tile-{tile}"));
        std::fs::create_dir(&folder).unwrap();
        let mask = folder.join("mask.tif");
        let options = SegmentOptions {
            tile,
            batch: 2,
            geojson: true,
            overlay: false,
            ..SegmentOptions::default()
        };
        let summary = segment(&slide, &mask, &options);
        (folder, summary)
    };
    let (whole_dir, whole) = outputs(1500);
    assert_eq!(whole.tiles.total, 1);
    assert!(whole.nuclei.separated);
    assert!(
        whole.nuclei.count > 100 && whole.nuclei.split.components_split > 5,
        "a slide without touching nuclei proves nothing: {:?}",
        whole.nuclei.split
    );
    assert_eq!(whole.nuclei.unit, slidestream::segment::LengthUnit::Micron);
    let spans = polygon_spans(&whole_dir.join("mask.geojson"));
    assert_eq!(spans.len() as u64, whole.nuclei.count);
    let read = |folder: &Path, name: &str| std::fs::read(folder.join(name)).unwrap();
    for tile in [128, 256, 1024] {
        let (tiled_dir, tiled) = outputs(tile);
        assert!(tiled.tiles.total > 1);
        for name in ["mask.tif", "mask.geojson", "mask.nuclei.csv.gz"] {
            assert!(
                read(&whole_dir, name) == read(&tiled_dir, name),
                "tile {tile}: {name} differs from the whole slide's"
            );
        }
        assert_eq!(tiled.nuclei.count, whole.nuclei.count);
        assert_eq!(tiled.nuclei.median_area, whole.nuclei.median_area);
        let straddling = spans
            .iter()
            .filter(|(lo, hi)| {
                (lo / f64::from(tile)).floor() < ((hi - 1.0) / f64::from(tile)).floor()
            })
            .count();
        assert!(
            straddling > 0,
            "tile {tile}: no nucleus crosses a tile edge"
        );
    }
    let table = table_text(&whole_dir.join("mask.nuclei.csv.gz"));
    assert_eq!(table.lines().count() as u64, whole.nuclei.count + 1);
    assert!(table.starts_with("id,centroid_x,centroid_y,area_um2,perimeter_um,"));
}

/// A `w`×`h` RGB PNG: pink background with purple disks `(cx, cy, r)`.
fn disks_png(path: &Path, w: u32, h: u32, disks: &[(i64, i64, i64)]) {
    let image = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = disks
            .iter()
            .any(|&(cx, cy, r)| (i64::from(x) - cx).pow(2) + (i64::from(y) - cy).pow(2) <= r * r);
        image::Rgb(if inside { NUCLEUS } else { BACKGROUND })
    });
    image.save(path).unwrap();
}

/// Rows of the nuclei table as `column → value` maps.
fn table_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = table_text(path);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn two_touching_disks_are_two_measured_nuclei() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disks.png");
    // Radii 10 and 12, centres 20 px apart: 317 + 441 − 11 pixels in one component.
    disks_png(&image, 90, 60, &[(30, 30, 10), (50, 30, 12)]);
    let raw = SegmentOptions {
        tile: 64,
        postprocess: false,
        all_tiles: true,
        overlay: false,
        ..SegmentOptions::default()
    };
    let mask = dir.path().join("split.tif");
    let summary = segment(&image, &mask, &raw);
    assert_eq!(summary.nuclei.count, 2);
    assert_eq!(summary.nuclei.components.count, 1);
    // A PNG records no microns per pixel: sizes in level-0 pixels, and no density.
    assert_eq!(
        summary.nuclei.unit,
        slidestream::segment::LengthUnit::Level0Pixel
    );
    assert_eq!(summary.nuclei.per_mm2_of_tissue, None);
    let rows = table_rows(summary.nuclei.table.as_ref().unwrap());
    assert_eq!(rows.len(), 2);
    let number = |row: &std::collections::HashMap<String, String>, key: &str| -> f64 {
        row[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key}: {:?}", row[key]))
    };
    let mut by_x: Vec<_> = rows.iter().collect();
    by_x.sort_by(|a, b| number(a, "centroid_x").total_cmp(&number(b, "centroid_x")));
    let (left, right) = (by_x[0], by_x[1]);
    let (a_left, a_right) = (number(left, "area_px2"), number(right, "area_px2"));
    assert_eq!(a_left + a_right, 747.0);
    assert!((306.0..=317.0).contains(&a_left), "{a_left}");
    assert!((430.0..=441.0).contains(&a_right), "{a_right}");
    for row in [left, right] {
        assert!(number(row, "eccentricity") < 0.35, "{row:?}");
        assert!(number(row, "solidity") > 0.9, "{row:?}");
        // Every pixel is the same purple: 1 − luma and its hematoxylin density.
        let [r, g, b] = NUCLEUS.map(f64::from);
        let luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0;
        assert!(
            (number(row, "score_mean") - (1.0 - luma)).abs() < 0.01,
            "{row:?}"
        );
        assert!(number(row, "hematoxylin_od_mean") > 0.3, "{row:?}");
    }
    assert_eq!(
        number(left, "hematoxylin_od_mean"),
        number(right, "hematoxylin_od_mean")
    );

    let together = SegmentOptions {
        separate: false,
        ..raw.clone()
    };
    let summary = segment(&image, &dir.path().join("whole.tif"), &together);
    assert_eq!(summary.nuclei.count, 1);
    let rows = table_rows(summary.nuclei.table.as_ref().unwrap());
    assert_eq!(number(&rows[0], "area_px2"), 747.0);
    assert_eq!(summary.nuclei.median_area, Some(747.0));
}

#[test]
fn the_cli_writes_the_table_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disks.png");
    disks_png(&image, 80, 60, &[(20, 20, 8), (55, 35, 9)]);
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        json_output(
            binary()
                .args(["-q", "segment", "--json", "--baseline", "threshold:0.45"])
                .args(["--all-tiles", "--raw", "--no-overlay"])
                .args(extra)
                .arg(&image)
                .arg("--out")
                .arg(&out),
        )
    };
    let summary = run("a.tif", &[]);
    assert_eq!(summary["nuclei"]["count"], 2);
    assert_eq!(summary["nuclei"]["unit"], "level-0 px");
    assert_eq!(summary["settings"]["separate"], true);
    assert!(dir.path().join("a.nuclei.csv.gz").is_file());
    assert_eq!(table_rows(&dir.path().join("a.nuclei.csv.gz")).len(), 2);
    let summary = run("b.tif", &["--no-measurements", "--no-separate"]);
    assert_eq!(summary["nuclei"]["count"], 2);
    assert_eq!(summary["nuclei"]["table"], serde_json::Value::Null);
    assert_eq!(summary["settings"]["measure"], false);
    assert!(!dir.path().join("b.nuclei.csv.gz").exists());
}
