//! `slidestream eval` scores nuclei as objects where the data folder has
//! `instances/<stem>.png`: AJI, object F1 and PQ, raw and post-processed.

mod common;

use common::{binary, json_output, BACKGROUND, NUCLEUS};
use std::path::Path;

const SIZE: u32 = 64;

/// Pixels of the disk of centre `(cx, cy)` and radius `r`.
fn in_disk(x: u32, y: u32, (cx, cy, r): (f64, f64, f64)) -> bool {
    (f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2) <= r * r
}

/// Writes `images/<name>.png` (nucleus-coloured disks on background, no noise),
/// `masks/<name>.png` and, when `ids` is given, `instances/<name>.png`: pixel of disk `k`
/// gets `ids[k]` (the first disk wins where two overlap), 16-bit or 8-bit. Returns the
/// area of each object.
fn write_image(
    root: &Path,
    name: &str,
    disks: &[(f64, f64, f64)],
    ids: Option<(&[u16], bool)>,
) -> Vec<u64> {
    for sub in ["images", "masks", "instances"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut rgb = image::RgbImage::new(SIZE, SIZE);
    let mut mask = image::GrayImage::new(SIZE, SIZE);
    let mut labels = vec![0u16; (SIZE * SIZE) as usize];
    let mut areas = vec![0u64; disks.len()];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let disk = disks.iter().position(|&d| in_disk(x, y, d));
            rgb.put_pixel(
                x,
                y,
                image::Rgb(if disk.is_some() { NUCLEUS } else { BACKGROUND }),
            );
            if let Some(k) = disk {
                mask.put_pixel(x, y, image::Luma([255]));
                areas[k] += 1;
                if let Some((ids, _)) = ids {
                    labels[(y * SIZE + x) as usize] = ids[k];
                }
            }
        }
    }
    let file = format!("{name}.png");
    rgb.save(root.join("images").join(&file)).unwrap();
    mask.save(root.join("masks").join(&file)).unwrap();
    match ids {
        Some((_, true)) => {
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(SIZE, SIZE, labels)
                .unwrap()
                .save(root.join("instances").join(&file))
                .unwrap();
        }
        Some((_, false)) => {
            let bytes = labels.iter().map(|&l| u8::try_from(l).unwrap()).collect();
            image::GrayImage::from_raw(SIZE, SIZE, bytes)
                .unwrap()
                .save(root.join("instances").join(&file))
                .unwrap();
        }
        None => {}
    }
    areas
}

/// A threshold run fitted on `data` (exact on noise-free two-colour images).
fn threshold_run(data: &Path, out: &Path) {
    let result = binary()
        .args([
            "-q",
            "train",
            "--method",
            "threshold",
            "--device",
            "cpu",
            "--mpp",
            "0.25",
            "--data",
        ])
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn eval(model: &Path, data: &Path) -> std::process::Command {
    let mut command = binary();
    command
        .args(["-q", "eval", "--device", "cpu", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data);
    command
}

const FIELDS: [&str; 7] = ["aji", "f1", "precision", "recall", "pq", "sq", "rq"];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn instance_scores_of_touching_merged_and_separate_nuclei() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // a: two overlapping disks, one nucleus each in the truth (16-bit map); the
    //    prediction, one connected blob, is split back into the two by the watershed.
    write_image(
        &data,
        "a",
        &[(24.0, 32.0, 10.0), (40.0, 32.0, 7.0)],
        Some((&[1000, 7], true)),
    );
    // b: two separate nuclei (8-bit map): found exactly.
    write_image(
        &data,
        "b",
        &[(16.0, 16.0, 8.0), (46.0, 44.0, 6.0)],
        Some((&[3, 200], false)),
    );
    // c: no instance map, pixel scores only.
    write_image(&data, "c", &[(30.0, 30.0, 9.0)], None);
    // d: one round disk that the truth calls two nuclei, left (x < 33) and right of a
    //    straight line; no separation splits a convex blob, so the prediction merges them.
    write_image(&data, "d", &[(30.0, 30.0, 10.0)], Some((&[1000], true)));
    let d_map = data.join("instances/d.png");
    let mut d_labels = image::open(&d_map).unwrap().into_luma16();
    let mut d_areas = [0u64; 2];
    for (x, _, pixel) in d_labels.enumerate_pixels_mut() {
        if pixel.0[0] != 0 {
            let right = x >= 33;
            if right {
                pixel.0[0] = 7;
            }
            d_areas[usize::from(right)] += 1;
        }
    }
    d_labels.save(&d_map).unwrap();
    let run = dir.path().join("run");
    threshold_run(&data, &run);

    let report = json_output(eval(&run, &data).arg("--json"));
    assert_eq!(report["images"].as_array().unwrap().len(), 4);
    assert_eq!(report["instance_images"], 3);
    assert!(
        close(report["mean_raw"]["dice"].as_f64().unwrap(), 1.0),
        "the threshold reproduces the masks exactly: {}",
        report["mean_raw"]
    );
    for key in ["mean_instances_raw", "mean_instances_postprocessed"] {
        for field in FIELDS {
            let v = report[key][field].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key}.{field} = {v}");
        }
    }
    let image = |stem: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["image"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{stem}.png"))
            })
            .unwrap()
            .clone()
    };
    assert!(image("c")["instances_raw"].is_null());
    assert!(image("c")["instances_postprocessed"].is_null());

    // a, raw: the blob comes out as two objects, each matching its nucleus; only the
    // pixels of the lens where the disks overlap may go to the other one.
    let raw = &image("a")["instances_raw"];
    assert_eq!(raw["true_objects"], 2);
    assert_eq!(raw["predicted_objects"], 2, "{raw}");
    assert_eq!(raw["matched"], 2, "{raw}");
    for field in ["f1", "precision", "recall", "rq"] {
        assert_eq!(raw[field].as_f64(), Some(1.0), "a raw {field}: {raw}");
    }
    for field in ["aji", "sq", "pq"] {
        let v = raw[field].as_f64().unwrap();
        assert!(v > 0.9, "a raw {field}: {raw}");
    }

    // d, raw: truth A (d_areas[0] px) and B (d_areas[1] px), prediction P = A ∪ B.
    //   AJI: A→P (C |A|, U |P|), B→P (C |B|, U |P|) → (|A| + |B|) / 2|P| = 1/2.
    //   |A| > |B|, so IoU(A, P) = |A|/|P| > 1/2 matches and IoU(B, P) does not:
    //   TP 1, FP 0, FN 1 → precision 1, recall 1/2, F1 2/3, SQ |A|/|P|, PQ SQ · 2/3.
    let (a, b) = (d_areas[0] as f64, d_areas[1] as f64);
    assert!(a > b && b > 0.0);
    let raw = &image("d")["instances_raw"];
    let sq = a / (a + b);
    let expected = [
        ("aji", 0.5),
        ("f1", 2.0 / 3.0),
        ("precision", 1.0),
        ("recall", 0.5),
        ("sq", sq),
        ("pq", sq * 2.0 / 3.0),
        ("rq", 2.0 / 3.0),
    ];
    for (field, want) in expected {
        let got = raw[field].as_f64().unwrap();
        assert!(close(got, want), "d raw {field}: {got} vs {want}");
    }
    assert_eq!(raw["true_objects"], 2);
    assert_eq!(raw["predicted_objects"], 1);
    assert_eq!(raw["matched"], 1);
    // B's miss is a merge: P holds all of B and most of A.
    let misses = &raw["misses"];
    assert_eq!(misses["true_merged"], 1, "{misses}");
    let total = |prefix: &str| -> u64 {
        misses
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!((total("predicted_"), total("true_")), (0, 1), "{misses}");

    // b, raw: perfect.
    for field in FIELDS {
        assert_eq!(image("b")["instances_raw"][field].as_f64(), Some(1.0));
    }
    // Means over a, b and d only.
    let mean = &report["mean_instances_raw"];
    for field in FIELDS {
        let per_image: f64 = ["a", "b", "d"]
            .iter()
            .map(|stem| image(stem)["instances_raw"][field].as_f64().unwrap())
            .sum();
        let got = mean[field].as_f64().unwrap();
        assert!(close(got, per_image / 3.0), "mean {field}: {got}");
    }
    assert_eq!(mean["true_objects"], 6);
    assert_eq!(mean["predicted_objects"], 5);
    assert_eq!(mean["matched"], 5);

    // The table says how many images were scored as objects.
    let text = eval(&run, &data).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("3 of 4 images scored"), "{text}");
    assert!(text.contains("true 1: 0 not found, 1 merged"), "{text}");
    assert!(text.contains("aji"), "{text}");
}

#[test]
fn an_instance_map_of_the_wrong_size_is_bad_input_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_image(&data, "a", &[(20.0, 20.0, 8.0)], None);
    let run = dir.path().join("run");
    threshold_run(&data, &run);
    image::ImageBuffer::<image::Luma<u16>, _>::new(SIZE, SIZE + 1)
        .save(data.join("instances/a.png"))
        .unwrap();
    let out = eval(&run, &data).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("instances/a.png") && stderr.contains("64×65"),
        "{stderr}"
    );
}

#[test]
fn folders_without_instances_report_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_image(&data, "a", &[(20.0, 20.0, 8.0)], None);
    let run = dir.path().join("run");
    threshold_run(&data, &run);
    let report = json_output(eval(&run, &data).arg("--json"));
    assert_eq!(report["instance_images"], 0);
    assert!(report["mean_instances_raw"].is_null());
    assert!(report["mean_instances_postprocessed"].is_null());
    assert!(report["images"][0]["instances_raw"].is_null());
}

/// `eval` runs a model at its training scale: images declared 20× (`--mpp 0.5`) are
/// resampled to the run's 0.25 µm/px and scored at their own pixels; `--target-mpp native`
/// keeps their pixels.
#[test]
fn images_of_another_scale_are_resampled_to_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_image(&data, "a", &[(30.0, 30.0, 12.0)], None);
    let run = dir.path().join("run");
    threshold_run(&data, &run);
    let at_20x = json_output(eval(&run, &data).args(["--json", "--mpp", "0.5"]));
    let image = &at_20x["images"][0];
    assert_eq!(
        (image["resampled"].as_bool(), image["model_mpp"].as_f64()),
        (Some(true), Some(0.25))
    );
    assert!(at_20x["scale"]
        .as_str()
        .unwrap()
        .contains("1 of 1 images resampled"));
    // The round trip blends the disk's rim with the background, and the fitted cut sits
    // just past the nucleus colour: part of the rim is lost, nothing is added.
    let raw = &at_20x["mean_raw"];
    let (dice, precision) = (raw["dice"].as_f64().unwrap(), raw["precision"].as_f64());
    assert!(dice > 0.9 && precision == Some(1.0), "{raw}");
    let native =
        json_output(eval(&run, &data).args(["--json", "--mpp", "0.5", "--target-mpp", "native"]));
    let image = &native["images"][0];
    assert_eq!(
        (image["resampled"].as_bool(), image["model_mpp"].as_f64()),
        (Some(false), Some(0.5))
    );
}
