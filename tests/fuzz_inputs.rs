//! Mutation fuzzing of the two readers that meet hostile files first (issue 26): opening a
//! slide (the TIFF structure check, then OpenSlide or the image decoders) and loading a
//! model card. Each target takes a valid input, mutates it with a fixed-seed generator
//! (flipped bits, bytes set to edge values, truncation, duplicated runs; for model cards
//! also fields set to hostile JSON values or removed) and requires an `Ok` or a typed error,
//! never a panic. CI runs a short round; for a long run set the time per target:
//!
//! ```sh
//! SLIDESTREAM_FUZZ_SECONDS=600 cargo test --release --test fuzz_inputs -- --test-threads 2
//! ```
//!
//! A panic saves the input that caused it next to the test binary's temporary folder and
//! names it.

mod common;

use common::{first_directory, mutate};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::model::{
    load_run, save_run, Architecture, ConfidenceNet, InputNormalisation, Method, ModelCard,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{nn, Device};

/// Cases per target in CI when no time is given.
const CI_CASES: u64 = 1000;

/// Runs `case(index)` for `CI_CASES` cases, or for `SLIDESTREAM_FUZZ_SECONDS` seconds.
fn for_each_case(mut case: impl FnMut(u64)) -> u64 {
    let seconds = std::env::var("SLIDESTREAM_FUZZ_SECONDS").ok().map(|s| {
        s.parse::<u64>()
            .expect("SLIDESTREAM_FUZZ_SECONDS: whole seconds")
    });
    let started = Instant::now();
    let mut index = 0;
    loop {
        let done = match seconds {
            Some(s) => started.elapsed() >= Duration::from_secs(s),
            None => index >= CI_CASES,
        };
        if done {
            return index;
        }
        case(index);
        index += 1;
    }
}

/// Runs `body` on the input written at `input`; a panic keeps a copy of the input.
fn without_panic(target: &str, index: u64, input: &Path, body: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fuzz-{target}-{index}-{}",
            input.file_name().unwrap().to_string_lossy()
        ));
        std::fs::copy(input, &kept).unwrap();
        panic!(
            "{target} case {index} panicked; input kept at {}",
            kept.display()
        );
    }
}

#[test]
fn opening_mutated_slides_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let synthetic = common::synth_slide(&dir.path().join("seed"), "synth", 384, 11);
    seeds.push(("tif".into(), std::fs::read(&synthetic).unwrap()));
    if let Some(svs) = common::shared_data("slides/CMU-1-Small-Region.svs") {
        seeds.push(("svs".into(), std::fs::read(svs).unwrap()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(26);
    let cases = for_each_case(|index| {
        let (extension, seed) = &seeds[index as usize % seeds.len()];
        let mut bytes = seed.clone();
        let hot = first_directory(seed);
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut bytes, hot.clone(), &mut rng);
        }
        let input = dir.path().join(format!("case.{extension}"));
        std::fs::write(&input, &bytes).unwrap();
        without_panic("slide", index, &input, || {
            if let Ok(slide) = slidestream::slide::open(&input) {
                // Decode a corner of the finest and the coarsest level: the reads that
                // tissue detection and segmentation make first.
                for level in [0, slide.levels().len() - 1] {
                    let _ = slide.read_region(level, 0, 0, 64, 64);
                }
            }
        });
    });
    eprintln!("{cases} mutated slides opened");
}

/// A valid confidence-network run in `dir`.
fn valid_run(dir: &Path) -> serde_json::Value {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = ConfidenceNet::new(&vs.root(), 2, 0.05);
    let card = ModelCard {
        architecture: Architecture::ConfidenceNet,
        method: Method::SelfTraining,
        channels: 2,
        channel: 1,
        threshold: 0.5,
        input_normalisation: InputNormalisation::Epsilon { epsilon: 0.05 },
        epoch: Some(3),
        val_dice: vec![0.5, 0.6],
        seed: 7,
        data: "fuzz".into(),
        slidestream_version: "0.1.0".into(),
        train_mpp: Some(0.25),
        selection: None,
        hematoxylin_agreement: Vec::new(),
        width: None,
        stain_calibration: Some(slidestream::model::StainCalibration {
            hematoxylin_cut: 0.05,
        }),
    };
    save_run(dir, Some(&vs), &card).unwrap();
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

/// Every value in `card` with its path, leaves and containers alike.
fn paths(value: &serde_json::Value, prefix: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{prefix}/{key}");
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let path = format!("{prefix}/{i}");
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        _ => {}
    }
}

fn hostile_value(rng: &mut ChaCha8Rng) -> serde_json::Value {
    use serde_json::json;
    let pool = [
        json!(1_099_511_627_776u64),
        json!(u64::MAX),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-0.0),
        json!(2.0),
        json!("x"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!([1e308, -1e308]),
    ];
    pool[rng.random_range(0..pool.len())].clone()
}

#[test]
fn loading_mutated_model_cards_never_panics() {
    let _rng = common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let card = valid_run(dir.path());
    let mut fields = Vec::new();
    paths(&card, String::new(), &mut fields);
    let mut rng = ChaCha8Rng::seed_from_u64(26);
    let image = common::uniform(&[1, 3, 24, 24], 3);
    let cases = for_each_case(|index| {
        let text = if rng.random_bool(0.8) {
            let mut mutated = card.clone();
            for _ in 0..rng.random_range(1..=3) {
                let field = &fields[rng.random_range(0..fields.len())];
                let (parent, key) = field.rsplit_once('/').unwrap();
                if let Some(serde_json::Value::Object(map)) = mutated.pointer_mut(parent) {
                    if rng.random_bool(0.2) {
                        map.remove(key);
                    } else {
                        map.insert(key.to_owned(), hostile_value(&mut rng));
                    }
                } else if let Some(slot) = mutated.pointer_mut(field) {
                    *slot = hostile_value(&mut rng);
                }
            }
            serde_json::to_vec(&mutated).unwrap()
        } else {
            let mut bytes = serde_json::to_vec_pretty(&card).unwrap();
            let len = bytes.len();
            mutate(&mut bytes, 0..len, &mut rng);
            bytes
        };
        let input = dir.path().join("model.json");
        std::fs::write(&input, &text).unwrap();
        without_panic("card", index, &input, || {
            if let Ok((model, card)) = load_run(dir.path(), Device::Cpu) {
                let _ = model.foreground(&card, &image);
            }
        });
    });
    eprintln!("{cases} mutated model cards loaded");
}
