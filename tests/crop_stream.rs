//! The training crop stream over synthetic slides with known tissue.

use slidestream::commands::synth::{self, SynthArgs};
use slidestream::pipeline::CancelToken;
use slidestream::synth::{Synth, SynthSpec};
use slidestream::train::crop_stream::{CropSampler, CropStream, CropStreamConfig, CropStreamError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn make_slide(dir: &Path, name: &str, coverage: f32, seed: u64) -> PathBuf {
    let args = SynthArgs {
        out: dir.join(name),
        mask: None,
        width: 2048,
        height: 1536,
        seed,
        tissue_coverage: coverage,
        tile: 256,
    };
    synth::run(&args, false, &CancelToken::new()).unwrap().slide
}

/// With `measure_stain`, every crop carries its slide's hematoxylin cut: one value per
/// slide, the one `segment` calibrates that slide by; without it, none is measured.
#[test]
fn crops_carry_their_slides_stain_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pale = make_slide(dir.path(), "a.tif", 0.5, 4);
    let other = make_slide(dir.path(), "b.tif", 0.5, 5);
    let sampler = Arc::new(CropSampler::new(&[pale.clone(), other], 300, 0.5, None).unwrap());
    let crops = |measure_stain| {
        let config = CropStreamConfig {
            workers: 2,
            seed: 3,
            measure_stain,
            ..CropStreamConfig::default()
        };
        let mut stream = CropStream::start(Arc::clone(&sampler), 16, &config, &CancelToken::new());
        let crops = stream.next_batch(16).unwrap();
        stream.finish().unwrap();
        crops
    };
    assert!(crops(false).iter().all(|c| c.hematoxylin_cut.is_none()));
    let measured = crops(true);
    let slide = slidestream::slide::open(&pale).unwrap();
    let (tissue, _) = slidestream::slide::tissue::detect_slide_tissue(
        slide.as_ref(),
        &slidestream::slide::tissue::TissueParams::default(),
        &|| false,
    )
    .unwrap();
    let geometry = slidestream::slide::geometry::Geometry::native(slide.as_ref(), 0).unwrap();
    let expected =
        slidestream::stain::slide_hematoxylin_cut(slide.as_ref(), &geometry, &tissue).unwrap();
    assert!(expected > 0.0);
    for slide_index in [0, 1] {
        let cuts: Vec<f64> = measured
            .iter()
            .filter(|c| c.request.slide == slide_index)
            .map(|c| c.hematoxylin_cut.unwrap())
            .collect();
        assert!(!cuts.is_empty(), "slide {slide_index} was never drawn");
        assert!(cuts.iter().all(|&c| c == cuts[0]), "{cuts:?}");
        if slide_index == 0 {
            assert_eq!(cuts[0], expected);
        }
    }
}

#[test]
fn slides_are_drawn_in_proportion_to_their_tissue_area() {
    let dir = tempfile::tempdir().unwrap();
    let sparse = make_slide(dir.path(), "sparse.tif", 0.25, 1);
    let dense = make_slide(dir.path(), "dense.tif", 0.75, 2);
    let sampler = CropSampler::new(&[sparse, dense], 300, 0.5, None).unwrap();
    let areas: Vec<f64> = sampler.usage.iter().map(|u| u.tissue_pixels).collect();
    assert!(areas[1] > 2.0 * areas[0], "{areas:?}");
    let expected_dense = areas[1] / (areas[0] + areas[1]);

    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    let mut rejected = 0;
    let draws = 4000;
    let dense_draws = (0..draws)
        .filter(|_| sampler.draw(&mut rng, &mut rejected).unwrap().slide == 1)
        .count();
    let observed = dense_draws as f64 / f64::from(draws);
    assert!(
        (observed - expected_dense).abs() < 0.03,
        "dense slide drawn {observed:.3}, expected {expected_dense:.3}"
    );
}

#[test]
fn crops_cover_tissue_and_are_deterministic_whatever_the_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_slide(dir.path(), "slide.tif", 0.5, 3);
    let sampler = Arc::new(CropSampler::new(&[path], 300, 0.5, None).unwrap());
    let run = |workers| {
        let config = CropStreamConfig {
            workers,
            capacity: 4,
            seed: 9,
            ..CropStreamConfig::default()
        };
        let mut stream = CropStream::start(Arc::clone(&sampler), 24, &config, &CancelToken::new());
        let mut crops = Vec::new();
        loop {
            let batch = stream.next_batch(10).unwrap();
            if batch.is_empty() {
                break;
            }
            crops.extend(batch);
        }
        (crops, stream.finish().unwrap())
    };
    let (one, report) = run(1);
    let (three, _) = run(3);
    assert_eq!(one.len(), 24);
    assert_eq!(report.crops, 24);
    assert_eq!(report.queue_capacity, 4);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.request, b.request);
        assert_eq!(a.pixels, b.pixels);
    }
    // Ground truth: the generator's own tissue map under each crop.
    let truth = Synth::new(&SynthSpec {
        tissue_coverage: 0.5,
        ..SynthSpec::new(2048, 1536, 3)
    })
    .unwrap();
    let mut fractions = Vec::new();
    for crop in &one {
        assert_eq!((crop.pixels.width, crop.pixels.height), (300, 300));
        let r = crop.request;
        let region = truth.render_region(r.x.max(0) as u64, r.y.max(0) as u64, 300, 300);
        let tissue = region.tissue.iter().filter(|&&v| v != 0).count();
        fractions.push(tissue as f64 / (300.0 * 300.0));
    }
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    let worst = fractions.iter().cloned().fold(1.0, f64::min);
    assert!(
        mean > 0.7 && worst > 0.3,
        "mean {mean:.2}, worst {worst:.2}"
    );
}

#[test]
fn unusable_slides_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_slide(dir.path(), "good.tif", 0.5, 4);
    let glass = make_slide(dir.path(), "glass.tif", 0.0, 5);
    let text = dir.path().join("notes.svs");
    std::fs::write(&text, "not a slide").unwrap();
    let sampler = CropSampler::new(&[text.clone(), glass.clone(), good], 300, 0.5, None).unwrap();
    let skipped: Vec<_> = sampler
        .usage
        .iter()
        .filter_map(|u| u.skipped.as_ref().map(|why| (u.path.clone(), why.clone())))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].1.contains("notes.svs"));
    assert_eq!(skipped[1].1, "no tissue found");

    let none = CropSampler::new(&[text, glass], 300, 0.5, None)
        .err()
        .expect("nothing usable");
    assert!(matches!(none, CropStreamError::NoUsableSlide(_)));
    assert!(none.to_string().contains("glass.tif"));
}

#[test]
fn a_stream_that_cannot_draw_a_crop_says_why_not_just_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_slide(dir.path(), "slide.tif", 0.5, 6);
    // A crop wider than the slide can never be all tissue.
    let sampler = Arc::new(CropSampler::new(&[path], 2100, 1.0, None).unwrap());
    let mut stream = CropStream::start(
        sampler,
        4,
        &CropStreamConfig::default(),
        &CancelToken::new(),
    );
    let error = anyhow::Error::from(stream.next_batch(2).err().expect("no crop fits"));
    let text = slidestream::error_text::one_line(&error);
    assert!(
        text.contains("slide.tif: no 2100x2100 crop with ≥100% tissue"),
        "{text}"
    );
    assert!(text.contains("lower --min-tissue"), "{text}");
}

/// Every slide is read at the scale the model learns at: a 0.25 µm/px slide streamed at 0.5
/// gives crops that cover twice the tissue, from half-size model coordinates.
#[test]
fn slides_are_read_at_the_scale_the_model_learns_at() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_slide(dir.path(), "slide.tif", 0.75, 4);
    let native = CropSampler::new(std::slice::from_ref(&path), 100, 0.5, None).unwrap();
    assert_eq!(native.mpp(), 0.25, "the slide's own scale by default");
    let coarse = CropSampler::new(&[path], 100, 0.5, Some(0.5)).unwrap();
    assert_eq!(coarse.mpp(), 0.5);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let mut rejected = 0;
    let (mut widest_native, mut widest_coarse) = (0, 0);
    for _ in 0..200 {
        widest_native = widest_native.max(native.draw(&mut rng, &mut rejected).unwrap().x);
        let request = coarse.draw(&mut rng, &mut rejected).unwrap();
        widest_coarse = widest_coarse.max(request.x);
        // At 0.5 µm/px the 2048 px wide slide is 1024 model pixels wide.
        assert!(request.x + 100 <= 1024 + 50, "{request:?}");
        let crop = coarse.read(request).unwrap();
        assert_eq!((crop.width, crop.height), (100, 100));
    }
    assert!(
        widest_native > 1100 && widest_coarse > 700,
        "{widest_native} {widest_coarse}"
    );
}

/// Without any slide's scale and without --mpp the model's scale is unknown: refused.
#[test]
fn slides_of_unknown_scale_need_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("tissue.png");
    let pixels: Vec<u8> = (0..400 * 300)
        .flat_map(|i| {
            if (i % 400) < 300 {
                [200, 80, 160]
            } else {
                [250, 250, 250]
            }
        })
        .collect();
    image::save_buffer(&png, &pixels, 400, 300, image::ExtendedColorType::Rgb8).unwrap();
    let refused = CropSampler::new(std::slice::from_ref(&png), 100, 0.5, None);
    let message = refused.err().expect("no scale").to_string();
    assert!(message.contains("train --mpp"), "{message}");
    let given = CropSampler::new(&[png], 100, 0.5, Some(0.25)).unwrap();
    assert_eq!(given.mpp(), 0.25);
}
