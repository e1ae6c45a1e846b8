//! `segment`: seam-free tiling, edges, empty slides, outputs readable by OpenSlide and the
//! tiff crate, cancellation, resampling and the errors a user sees.

mod common;

use common::{binary, interrupt_after_log, json_output, synthetic_png};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::model::{
    save_run, Architecture, ConfidenceNet, InputNormalisation, Method, ModelCard, StainCalibration,
    UNet,
};
use slidestream::pipeline::{CancelToken, PipelineError};
use slidestream::segment::{
    caption_height, segment_slide, sidecar_path, Predictor, SegmentError, SegmentOptions,
    TargetScale,
};
use slidestream::slide::geometry::Geometry;
use slidestream::stain::{calibrate_to, hematoxylin_cut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Which untrained network [`median_split_model`] saves.
#[derive(Clone, Copy)]
enum Net {
    Confidence,
    /// The UNet of semi-supervised training, width 4.
    Unet,
}

/// Overwrites every trainable variable of `vs` from a generator seeded with `seed`: convolution
/// weights U(±√(scale/fan-in)), biases U(±0.1), BatchNorm scales 1 + U(±0.1). Scale 1 is
/// PyTorch's default bound, which the confidence network is built with; the UNet's ReLU stack
/// needs He's 6 to keep its outputs spread.
///
/// Torch's own initialisation draws from one process-wide RNG that concurrent tests also draw
/// from (every `load_run` builds a network before loading its weights), so a network seeded
/// with `tch::manual_seed` differs from run to run under the test harness.
fn seed_weights(vs: &nn::VarStore, seed: u64, scale: f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, variable) in variables.iter().filter(|(_, v)| v.requires_grad()) {
        let shape = variable.size();
        let count: i64 = shape.iter().product();
        let (centre, half_width) = match shape.len() {
            1 if name.ends_with("bias") => (0.0, 0.1),
            1 => (1.0, 0.1),
            _ => (0.0, (scale / (count / shape[0]) as f32).sqrt()),
        };
        let values: Vec<f32> = (0..count)
            .map(|_| centre + rng.random_range(-half_width..half_width))
            .collect();
        tch::no_grad(|| {
            variable
                .shallow_clone()
                .copy_(&Tensor::from_slice(&values).view(shape.as_slice()))
        });
    }
}

/// An untrained network whose threshold splits `image`'s confidences at their median, so
/// about half the pixels are foreground and many sit near the decision boundary: the
/// hardest case for exact seams.
fn median_split_model(dir: &Path, image: &Path, net: Net) -> PathBuf {
    calibrated_median_split_model(dir, image, net, None)
}

/// [`median_split_model`] trained with `stain_calibration`: the median is taken over the
/// calibrated image's confidences, as `segment` will compute them.
fn calibrated_median_split_model(
    dir: &Path,
    image: &Path,
    net: Net,
    stain_calibration: Option<StainCalibration>,
) -> PathBuf {
    let vs = nn::VarStore::new(Device::Cpu);
    let rgb = image::open(image).unwrap().to_rgb8();
    let (w, h) = rgb.dimensions();
    let input = Tensor::from_slice(rgb.as_raw())
        .view([1, i64::from(h), i64::from(w), 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let input = match stain_calibration {
        Some(c) => calibrate_to(&input, None, c.hematoxylin_cut),
        None => input,
    };
    let (confidence, architecture, input_normalisation, width) = match net {
        Net::Confidence => {
            let net = ConfidenceNet::new(&vs.root(), 2, 0.05);
            seed_weights(&vs, 11, 1.0);
            let confidence = net.infer(&input);
            let normalisation = InputNormalisation::Epsilon { epsilon: 0.05 };
            (confidence, Architecture::ConfidenceNet, normalisation, None)
        }
        Net::Unet => {
            let net = UNet::new(&vs.root(), 4);
            seed_weights(&vs, 11, 6.0);
            let probabilities = tch::no_grad(|| net.probabilities(&input));
            (
                probabilities,
                Architecture::Unet,
                InputNormalisation::Unit,
                Some(4),
            )
        }
    };
    let threshold = confidence.select(1, 1).median().double_value(&[]);
    let run = dir.join("run");
    let card = ModelCard {
        architecture,
        // Calibration is the self-training method's, which also fills nuclear holes.
        method: if stain_calibration.is_some() {
            Method::SelfTraining
        } else {
            Method::Contrastive
        },
        channels: 2,
        channel: 1,
        threshold,
        input_normalisation,
        epoch: Some(0),
        val_dice: vec![],
        seed: 11,
        data: "test".into(),
        slidestream_version: "test".into(),
        train_mpp: Some(0.25),
        selection: None,
        hematoxylin_agreement: Vec::new(),
        width,
        stain_calibration,
    };
    save_run(&run, Some(&vs), &card).unwrap();
    run
}

fn options(tile: u32, batch: usize) -> SegmentOptions {
    SegmentOptions {
        tile,
        batch,
        all_tiles: true,
        overlay: false,
        ..SegmentOptions::default()
    }
}

/// Level 0 of a single-channel tiled TIFF, read with the tiff crate.
fn read_mask(path: &Path) -> (u32, u32, Vec<u8>) {
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    let (w, h) = decoder.dimensions().unwrap();
    match decoder.read_image().unwrap() {
        tiff::decoder::DecodingResult::U8(pixels) => (w, h, pixels),
        other => panic!("mask is not 8-bit: {:?}", std::mem::discriminant(&other)),
    }
}

fn segment(
    image: &Path,
    predictor: &Arc<Predictor>,
    out: &Path,
    options: &SegmentOptions,
) -> Result<slidestream::segment::SegmentSummary, SegmentError> {
    let slide = slidestream::slide::open(image).unwrap();
    let geometry = Geometry::native(slide.as_ref(), 0).unwrap();
    segment_slide(
        slide,
        &geometry,
        Arc::clone(predictor),
        out,
        options,
        &CancelToken::new(),
    )
}

#[test]
fn tiled_masks_equal_the_whole_image_mask_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for (width, height, tiles) in [(1000, 1000, vec![128, 256]), (333, 517, vec![100])] {
        let image = synthetic_png(dir.path(), width, height, 5);
        let run = median_split_model(dir.path(), &image, Net::Confidence);
        let predictor = Arc::new(Predictor::from_run(&run, Device::Cpu, None, None).unwrap());
        let whole_tile = width.max(height) as u32;
        let whole_path = dir.path().join("whole.tif");
        segment(&image, &predictor, &whole_path, &options(whole_tile, 1)).unwrap();
        let (w, h, whole) = read_mask(&whole_path);
        assert_eq!((u64::from(w), u64::from(h)), (width, height));
        let fraction = whole.iter().filter(|&&v| v == 255).count() as f64 / whole.len() as f64;
        assert!(
            (0.1..0.9).contains(&fraction),
            "a degenerate mask proves nothing: {fraction}"
        );
        for tile in tiles {
            let tiled_path = dir.path().join(format!("tiled-{tile}.tif"));
            let summary = segment(&image, &predictor, &tiled_path, &options(tile, 3)).unwrap();
            assert_eq!(
                summary.tiles.total,
                (width.div_ceil(u64::from(tile)) * height.div_ceil(u64::from(tile))) as usize
            );
            let (_, _, tiled) = read_mask(&tiled_path);
            let differing = whole.iter().zip(&tiled).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{width}x{height}, tile {tile}: pixels differ");
        }
    }
}

/// A model trained with stain calibration gets each slide calibrated by one gamma, the
/// slide's own (here the whole image's, as `eval` and training measure an image), so tiles
/// stay seam-free; the summary reports it, and it changes the mask.
#[test]
fn stain_calibrated_self_training_models_calibrate_once_fill_holes_and_stay_seam_free() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 600, 520, 7);
    let rgb = image::open(&image).unwrap().to_rgb8();
    let pixels = Tensor::from_slice(rgb.as_raw())
        .view([1, 520, 600, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let cut = hematoxylin_cut(&pixels);
    assert!(cut > 0.0, "synthetic H&E has hematoxylin: {cut}");
    let calibration = StainCalibration {
        hematoxylin_cut: 1.6 * cut,
    };
    let run = calibrated_median_split_model(dir.path(), &image, Net::Confidence, Some(calibration));
    let predictor = Arc::new(Predictor::from_run(&run, Device::Cpu, None, None).unwrap());
    let masks: Vec<Vec<u8>> = [600, 128, 256]
        .into_iter()
        .map(|tile| {
            let out = dir.path().join(format!("calibrated-{tile}.tif"));
            let summary = segment(&image, &predictor, &out, &options(tile, 2)).unwrap();
            let gamma = summary
                .model
                .stain_gamma
                .expect("a calibrated model reports its gamma");
            assert!((gamma - 1.6).abs() < 1e-6, "tile {tile}: gamma {gamma}");
            // 10 µm at the model's 0.25 µm/px, inside the halo.
            assert_eq!(summary.scale.holes_filled_up_to_px, Some(40));
            // The stain re-cut's window radius and ring at 0.25 µm/px: 15 + 6 px.
            assert_eq!(summary.scale.stain_recut_reach_px, Some(21));
            read_mask(&out).2
        })
        .collect();
    assert!(
        masks.iter().all(|m| m == &masks[0]),
        "tiled masks differ from the whole one"
    );

    // The same weights and threshold without calibration give another mask.
    let card_path = run.join("model.json");
    let mut card: ModelCard =
        serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
    card.stain_calibration = None;
    std::fs::write(&card_path, serde_json::to_string(&card).unwrap()).unwrap();
    let plain = Arc::new(Predictor::from_run(&run, Device::Cpu, None, None).unwrap());
    let out = dir.path().join("plain.tif");
    let summary = segment(&image, &plain, &out, &options(600, 1)).unwrap();
    assert_eq!(summary.model.stain_gamma, None);
    let differing = read_mask(&out)
        .2
        .iter()
        .zip(&masks[0])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > 1000,
        "calibration changed only {differing} pixels"
    );
}

#[test]
fn raw_tiles_are_seam_free_too() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 300, 260, 9);
    let run = median_split_model(dir.path(), &image, Net::Confidence);
    let predictor = Arc::new(Predictor::from_run(&run, Device::Cpu, None, None).unwrap());
    let raw = |tile| SegmentOptions {
        postprocess: false,
        ..options(tile, 2)
    };
    let (a, b) = (dir.path().join("a.tif"), dir.path().join("b.tif"));
    let whole = segment(&image, &predictor, &a, &raw(300)).unwrap();
    segment(&image, &predictor, &b, &raw(64)).unwrap();
    assert_eq!(whole.scale.halo_px, slidestream::model::RECEPTIVE_RADIUS);
    assert_eq!(read_mask(&a).2, read_mask(&b).2);
}

/// The UNet's poolings make it shift-equivariant only by multiples of 8 px: with tiles of a
/// multiple of 8 every read has the same phase, so its tiled masks equal the whole image's
/// too, and tiles of other sides are refused.
#[test]
fn unet_masks_are_seam_free_on_aligned_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 333, 517, 6);
    let run = median_split_model(dir.path(), &image, Net::Unet);
    let predictor = Arc::new(Predictor::from_run(&run, Device::Cpu, None, None).unwrap());
    let (whole_path, tiled_path) = (dir.path().join("whole.tif"), dir.path().join("tiled.tif"));
    // Raw masks: the disk-3 opening would erase the untrained net's fine-grained output.
    let raw = |tile| SegmentOptions {
        postprocess: false,
        ..options(tile, 3)
    };
    let whole = segment(&image, &predictor, &whole_path, &raw(520)).unwrap();
    assert_eq!(
        whole.scale.halo_px, 64,
        "a 58 px radius, rounded up to a multiple of 8"
    );
    segment(&image, &predictor, &tiled_path, &raw(96)).unwrap();
    let (whole, tiled) = (read_mask(&whole_path).2, read_mask(&tiled_path).2);
    let fraction = whole.iter().filter(|&&v| v == 255).count() as f64 / whole.len() as f64;
    assert!(
        (0.1..0.9).contains(&fraction),
        "a degenerate mask proves nothing: {fraction}"
    );
    let differing = whole.iter().zip(&tiled).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing, 0,
        "pixels differ between tiles of 96 and the whole image"
    );
    let error = segment(
        &image,
        &predictor,
        &dir.path().join("odd.tif"),
        &options(100, 1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("--tile 100"), "{error}");
}

#[test]
fn a_slide_without_tissue_gives_an_empty_mask_without_running_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let slide = dir.path().join("glass.tif");
    let synth = json_output(
        binary()
            .args([
                "-q", "synth", "--json", "--width", "1500", "--height", "900",
            ])
            .args(["--tissue-coverage", "0", "--out"])
            .arg(&slide),
    );
    assert_eq!(synth["tissue_fraction"], 0.0);
    let out = dir.path().join("glass.mask.tif");
    let summary = json_output(
        binary()
            .args([
                "-q",
                "segment",
                "--json",
                "--baseline",
                "threshold:0.9",
                "--out",
            ])
            .arg(&out)
            .arg(&slide),
    );
    assert_eq!(summary["tiles"]["tissue"], 0);
    assert_eq!(summary["tiles"]["segmented"], 0);
    assert_eq!(summary["nuclei"]["count"], 0);
    let (w, h, mask) = read_mask(&out);
    assert_eq!((w, h), (1500, 900));
    assert!(mask.iter().all(|&v| v == 0));
}

#[test]
fn the_mask_opens_in_openslide_with_every_level_and_the_slide_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let slide_path = dir.path().join("s.tif");
    json_output(
        binary()
            .args([
                "-q", "synth", "--json", "--width", "2100", "--height", "1300", "--out",
            ])
            .arg(&slide_path),
    );
    let out = dir.path().join("out").join("s.nuclei.tif");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let summary = json_output(
        binary()
            .args(["-q", "segment", "--json", "--geojson", "--tile", "512"])
            .args(["--baseline", "threshold:0.45", "--out"])
            .arg(&out)
            .arg(&slide_path),
    );
    let mask = slidestream::slide::open(&out).unwrap();
    assert_eq!(mask.vendor(), "generic-tiff");
    assert_eq!(mask.dimensions(), (2100, 1300));
    // Halved until one 512 px tile holds a level: 1050×650, 525×325, 263×163.
    assert_eq!(mask.levels().len(), 4);
    let (mpp_x, mpp_y) = mask.mpp().expect("the mask records MPP");
    assert!((mpp_x - 0.25).abs() < 1e-9 && (mpp_y - 0.25).abs() < 1e-9);

    // Sidecars: the summary (also on stdout), the overlay and the GeoJSON.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar_path(&out, ".json")).unwrap()).unwrap();
    assert_eq!(written["nuclei"], summary["nuclei"]);
    let overlay = image::open(sidecar_path(&out, ".overlay.png")).unwrap();
    // At most 2048 px a side: 2100 px halve to 1050; the caption strip goes below.
    assert_eq!(
        (overlay.width(), overlay.height()),
        (1050, 650 + caption_height(1050))
    );
    // The report page: the slide's row, its thumbnail, and a link to the overlay beside it.
    let page = std::fs::read_to_string(sidecar_path(&out, ".report.html")).unwrap();
    assert!(page.contains(&format!(
        "<b>{}</b>",
        slide_path.file_stem().unwrap().to_string_lossy()
    )));
    assert!(page.contains("data:image/jpeg;base64,"));
    let overlay_name = sidecar_path(&out, ".overlay.png");
    let overlay_name = overlay_name.file_name().unwrap().to_string_lossy();
    assert!(
        page.contains(&format!("<a href=\"{overlay_name}\">")),
        "{page}"
    );
    let geojson: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar_path(&out, ".geojson")).unwrap()).unwrap();
    let features = geojson["features"].as_array().unwrap();
    let count = summary["nuclei"]["count"].as_u64().unwrap();
    assert!(
        count > 50,
        "a synthetic slide has many nuclei, found {count}"
    );
    assert_eq!(features.len() as u64, count);

    // The components are the 8-connected components of the mask as written; the nuclei
    // are those split by the watershed (tests/segment_nuclei.rs).
    let (w, h, pixels) = read_mask(&out);
    let components = summary["nuclei"]["components"]["count"].as_u64().unwrap();
    assert_eq!(
        components,
        count_components(&pixels, w as usize, h as usize)
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// 8-connected components by flood fill, independently of the streaming tracker.
fn count_components(mask: &[u8], w: usize, h: usize) -> u64 {
    let mut seen = vec![false; mask.len()];
    let mut count = 0;
    for start in 0..mask.len() {
        if mask[start] == 0 || seen[start] {
            continue;
        }
        count += 1;
        seen[start] = true;
        let mut stack = vec![start];
        while let Some(p) = stack.pop() {
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] != 0 && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
    }
    count
}

#[test]
fn target_mpp_resamples_for_the_model_and_keeps_the_slide_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let slide_path = dir.path().join("s.tif");
    json_output(
        binary()
            .args([
                "-q", "synth", "--json", "--width", "1200", "--height", "800", "--out",
            ])
            .arg(&slide_path),
    );
    let predictor = Arc::new(Predictor::threshold_baseline(0.45).unwrap());
    let slide = slidestream::slide::open(&slide_path).unwrap();
    let run = |geometry: Geometry, name: &str| {
        let out = dir.path().join(name);
        let summary = segment_slide(
            Arc::clone(&slide),
            &geometry,
            Arc::clone(&predictor),
            &out,
            // Raw: the disk-3 opening would erase nuclei shrunk to half size.
            &SegmentOptions {
                postprocess: false,
                ..options(256, 2)
            },
            &CancelToken::new(),
        )
        .unwrap();
        (summary, read_mask(&out))
    };
    let (_, native) = run(Geometry::native(slide.as_ref(), 0).unwrap(), "native.tif");
    let half = Geometry::resampled(slide.as_ref(), 0, 0.5).unwrap();
    assert_eq!((half.model_width, half.model_height), (600, 400));
    let (summary, coarse) = run(half, "coarse.tif");
    assert_eq!(summary.geometry.scale, 0.5);
    assert_eq!((coarse.0, coarse.1), (1200, 800));
    let both = native.2.iter().zip(&coarse.2);
    let tp = both.clone().filter(|(a, b)| **a != 0 && **b != 0).count() as f64;
    let total = native
        .2
        .iter()
        .chain(&coarse.2)
        .filter(|v| **v != 0)
        .count() as f64;
    let dice = 2.0 * tp / total;
    assert!(
        dice > 0.8,
        "masks at 0.25 and 0.5 µm/px should agree: Dice {dice}"
    );
}

/// Resampling maps every model pixel through one global affine map, and the post-processing
/// (at the model's scale) reaches no further than the halo, so masks resampled down (0.5
/// µm/px, a 20× model on this 40× slide) or up (0.2) are seam-free as well.
#[test]
fn resampled_tiled_masks_equal_the_whole_mask_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let slide_path = common::synth_slide(&dir.path().join("slides"), "s", 690, 4);
    let predictor = Arc::new(Predictor::threshold_baseline(0.45).unwrap());
    let slide = slidestream::slide::open(&slide_path).unwrap();
    for target in [0.5, 0.2] {
        let geometry = Geometry::resampled(slide.as_ref(), 0, target).unwrap();
        let run = |tile: u32, name: &str| {
            let out = dir.path().join(name);
            let options = SegmentOptions {
                target: TargetScale::Microns(target),
                ..options(tile, 2)
            };
            let summary = segment_slide(
                Arc::clone(&slide),
                &geometry,
                Arc::clone(&predictor),
                &out,
                &options,
                &CancelToken::new(),
            )
            .unwrap();
            (summary, read_mask(&out))
        };
        let (summary, whole) = run(2048, &format!("whole-{target}.tif"));
        assert!(summary.scale.resampled && summary.scale.model_mpp == target);
        assert_eq!(
            (whole.0, whole.1),
            (690, 460),
            "the mask keeps the slide's size"
        );
        let fraction = whole.2.iter().filter(|&&v| v == 255).count() as f64 / whole.2.len() as f64;
        assert!(
            (0.01..0.9).contains(&fraction),
            "degenerate mask: {fraction}"
        );
        for tile in [128, 100] {
            let (_, tiled) = run(tile, &format!("tiled-{target}-{tile}.tif"));
            let differing = whole.2.iter().zip(&tiled.2).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{target} µm/px, tile {tile}: pixels differ");
        }
    }
}

#[test]
fn a_cancelled_run_leaves_no_file_under_any_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 400, 300, 2);
    let predictor = Arc::new(Predictor::threshold_baseline(0.5).unwrap());
    let slide = slidestream::slide::open(&image).unwrap();
    let geometry = Geometry::native(slide.as_ref(), 0).unwrap();
    let cancel = CancelToken::new();
    cancel.cancel();
    let out = dir.path().join("mask.tif");
    let options = SegmentOptions {
        geojson: true,
        ..options(64, 2)
    };
    let error = segment_slide(slide, &geometry, predictor, &out, &options, &cancel).unwrap_err();
    assert!(
        matches!(error, SegmentError::Pipeline(PipelineError::Cancelled)),
        "{error}"
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["synth-400x300-2.png", "truth.png"]);
}

#[test]
fn ctrl_c_during_segment_exits_130_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 2500, 2500, 3);
    let run = median_split_model(
        dir.path(),
        &synthetic_png(dir.path(), 200, 200, 4),
        Net::Confidence,
    );
    let out = dir.path().join("out.tif");
    let code = interrupt_after_log(
        binary()
            .args([
                "-v", "segment", "--device", "cpu", "--tile", "256", "--model",
            ])
            .arg(&run)
            .arg("--out")
            .arg(&out)
            .arg(&image),
        "segmenting",
    );
    assert_eq!(code, Some(130));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("out"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_models_and_channels_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 120, 100, 1);
    let run = median_split_model(dir.path(), &image, Net::Confidence);
    let out = dir.path().join("m.tif");
    let segment_with = |extra: &[&str], model: &Path| {
        binary()
            .args(["-q", "segment", "--out"])
            .arg(&out)
            .arg(&image)
            .arg("--model")
            .arg(model)
            .args(extra)
            .output()
            .unwrap()
    };
    let wrong_channel = segment_with(&["--channel", "5"], &run);
    assert_eq!(wrong_channel.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_channel.stderr);
    assert!(
        stderr.contains("--channel 5") && stderr.contains("2 channel"),
        "{stderr}"
    );

    let card_path = run.join("model.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    let mut bad_card: serde_json::Value = serde_json::from_str(&card).unwrap();
    bad_card["stain_calibration"] = serde_json::json!({ "hematoxylin_cut": -1.0 });
    std::fs::write(&card_path, bad_card.to_string()).unwrap();
    let bad_calibration = segment_with(&[], &run);
    assert_eq!(bad_calibration.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_calibration.stderr);
    assert!(
        stderr.contains("stain_calibration") && stderr.contains("model.json"),
        "{stderr}"
    );
    std::fs::write(&card_path, card).unwrap();

    std::fs::write(run.join("model.safetensors"), b"not a safetensors file").unwrap();
    let broken = segment_with(&[], &run);
    assert_eq!(broken.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("model.safetensors"), "{stderr}");

    let missing = segment_with(&[], &dir.path().join("no-such-run"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-run"));
    assert!(!out.exists());

    // An output folder that does not exist is the user's to fix: exit 2, and it is named.
    std::fs::remove_dir_all(&run).unwrap();
    let run = median_split_model(dir.path(), &image, Net::Confidence);
    let nowhere = dir.path().join("no-such-folder").join("m.tif");
    let unwritable = binary()
        .args(["-q", "segment", "--model"])
        .arg(&run)
        .arg("--out")
        .arg(&nowhere)
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(unwritable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("no-such-folder"));
}

/// Cards and weights no run can use (issue 26, item 6): before the fix, a huge `channels`
/// panicked with exit 101 in the weight allocation, and the others ran with exit 0.
#[test]
fn unusable_model_cards_and_weights_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 120, 100, 1);
    let run = median_split_model(dir.path(), &image, Net::Confidence);
    let out = dir.path().join("m.tif");
    let card_path = run.join("model.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    let segment = || {
        binary()
            .args(["-q", "segment", "--device", "cpu", "--out"])
            .arg(&out)
            .arg(&image)
            .arg("--model")
            .arg(&run)
            .output()
            .unwrap()
    };
    let refused = |output: std::process::Output, field: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
        assert!(!out.exists());
    };
    let edits = [
        ("channels", serde_json::json!(1_099_511_627_776_u64)),
        ("channels", serde_json::json!(0)),
        ("threshold", serde_json::json!(2.0)),
        ("threshold", serde_json::json!(-1.0)),
        ("epsilon", serde_json::json!(0.0)),
        ("epsilon", serde_json::json!(1.0)),
    ];
    for (field, value) in edits {
        let mut bad: serde_json::Value = serde_json::from_str(&card).unwrap();
        match field {
            "epsilon" => bad["input_normalisation"]["epsilon"] = value,
            _ => bad[field] = value,
        }
        std::fs::write(&card_path, bad.to_string()).unwrap();
        let output = segment();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        refused(output, field);
        assert!(stderr.contains("model.json"), "{stderr}");
    }

    // eval loads runs the same way: the allocation that panicked is never attempted.
    let mut huge: serde_json::Value = serde_json::from_str(&card).unwrap();
    huge["channels"] = serde_json::json!(1_099_511_627_776_u64);
    std::fs::write(&card_path, huge.to_string()).unwrap();
    let data = dir.path().join("data");
    common::labeled_folder(&data, 64, 3);
    let eval = binary()
        .args(["-q", "eval", "--device", "cpu", "--model"])
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    refused(eval, "channels");
    std::fs::write(&card_path, &card).unwrap();

    // A diverged run's weights: NaN in one tensor.
    let weights = run.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&weights).unwrap();
    let (name, tensor) = &mut tensors[0];
    let _ = tensor.get(0).fill_(f64::NAN);
    let name = name.clone();
    Tensor::write_safetensors(&tensors, &weights).unwrap();
    let output = segment();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    refused(output, "model.safetensors");
    assert!(stderr.contains(&name) && stderr.contains("NaN"), "{stderr}");
}

#[test]
fn foreground_is_kept_only_inside_detected_tissue_unless_all_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let slide = dir.path().join("s.tif");
    let synth = json_output(
        binary()
            .args([
                "-q", "synth", "--json", "--width", "1600", "--height", "1200",
            ])
            .args(["--tissue-coverage", "0.4", "--out"])
            .arg(&slide),
    );
    let true_tissue = synth["tissue_fraction"].as_f64().unwrap();
    // Luma below 1 everywhere: a "model" that marks every pixel, glass included.
    let everything = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        json_output(
            binary()
                .args([
                    "-q",
                    "segment",
                    "--json",
                    "--raw",
                    "--baseline",
                    "threshold:1",
                ])
                .args(extra)
                .arg("--out")
                .arg(&out)
                .arg(&slide),
        );
        let (_, _, mask) = read_mask(&out);
        mask.iter().filter(|&&v| v != 0).count() as f64 / mask.len() as f64
    };
    let in_tissue = everything(&[], "tissue.tif");
    assert!(
        (in_tissue - true_tissue).abs() < 0.05,
        "foreground {in_tissue} vs tissue {true_tissue}"
    );
    assert!(everything(&["--all-tiles"], "all.tif") > 0.999);
}

#[test]
fn the_same_slide_and_settings_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_png(dir.path(), 500, 400, 8);
    let predictor = Arc::new(Predictor::threshold_baseline(0.45).unwrap());
    let options = SegmentOptions {
        geojson: true,
        ..options(128, 2)
    };
    let outputs: Vec<Vec<Vec<u8>>> = ["a", "b"]
        .iter()
        .map(|name| {
            let sub = dir.path().join(name);
            std::fs::create_dir(&sub).unwrap();
            let out = sub.join("mask.tif");
            segment(&image, &predictor, &out, &options).unwrap();
            [out.clone(), sidecar_path(&out, ".geojson")]
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}
