//! Semi-supervised benchmark (seed 003, Table 1 style): SupOnly vs CDCL at label fractions
//! 1/32, 1/16 and 1/8 of MoNuSeg's 250 px sub-images, and FullSup (SupOnly with every
//! sub-image labeled, fraction 1/1: the ceiling), a few seeds each, on a fixed split of
//! the 30 training images (every fifth image, sorted by name, is held out: 24 train, 6
//! validation). Each run keeps its best epoch by validation Dice, and is then scored on the
//! 6 held-out images: Dice (DC), Jaccard (JC), accuracy (ACC), specificity (SP) and
//! sensitivity (SE), mean over images, raw masks (no post-processing, as the paper). The
//! label-free contrastive model of seed 000, trained on the 24 images and selected on the 6,
//! is scored the same way for reference.
//!
//! ```text
//! cargo bench --bench cdcl -- [--data ../shared/data/monuseg-train] [--out target/cdcl-bench]
//!     [--steps 1500] [--epoch-steps 100] [--semi-start 5] [--seeds 3]
//!     [--fractions 1/8,1/16,1/32,1/1] [--methods SupOnly,CDCL]
//!     [--width 8] [--crop 128] [--batch 4] [--ema 0.99] [--reference-epochs 30] [--device cpu|cuda]
//! ```
//! The defaults fit a 2-core CPU (about 2 minutes per SupOnly run, 4 per CDCL run). The EMA
//! decay is 0.99 rather than the paper's 0.999: a 0.999 teacher averages over ~1000 steps,
//! most of this schedule, and would lag far behind the student it is meant to guide.
//! Runs are kept under `--out` (finished ones are reused, so an interrupted bench resumes);
//! `results.json` and `table.md` are written there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use slidestream::commands::eval::score_set;
use slidestream::pipeline::CancelToken;
use slidestream::scores::Scores;
use slidestream::segment::Predictor;
use slidestream::train::cdcl::{parse_fraction, train_semi, SemiConfig};
use slidestream::train::{train, LabeledFolder, TrainConfig, TrainSummary};
use tch::Device;

struct Options {
    data: PathBuf,
    out: PathBuf,
    steps: usize,
    epoch_steps: usize,
    semi_start: usize,
    seeds: u64,
    fractions: Vec<(String, f64)>,
    methods: Vec<String>,
    width: usize,
    crop: u32,
    batch: usize,
    reference_epochs: usize,
    ema: f64,
    device: Device,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/monuseg-train"),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cdcl-bench"),
        steps: 1500,
        epoch_steps: 100,
        semi_start: 5,
        seeds: 3,
        fractions: Vec::new(),
        methods: vec!["SupOnly".into(), "CDCL".into()],
        width: 8,
        crop: 128,
        batch: 4,
        reference_epochs: 30,
        ema: 0.99,
        device: Device::cuda_if_available(),
    };
    let mut fractions = "1/8,1/16,1/32,1/1".to_string();
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => o.data = value()?.into(),
            "--out" => o.out = value()?.into(),
            "--steps" => o.steps = value()?.parse()?,
            "--epoch-steps" => o.epoch_steps = value()?.parse()?,
            "--semi-start" => o.semi_start = value()?.parse()?,
            "--seeds" => o.seeds = value()?.parse()?,
            "--fractions" => fractions = value()?,
            "--methods" => o.methods = value()?.split(',').map(str::to_string).collect(),
            "--width" => o.width = value()?.parse()?,
            "--crop" => o.crop = value()?.parse()?,
            "--batch" => o.batch = value()?.parse()?,
            "--reference-epochs" => o.reference_epochs = value()?.parse()?,
            "--ema" => o.ema = value()?.parse()?,
            "--device" => {
                o.device = match value()?.as_str() {
                    "cpu" => Device::Cpu,
                    _ => Device::Cuda(0),
                }
            }
            other => anyhow::bail!("unknown option {other}; see the header of benches/cdcl.rs"),
        }
    }
    if let Some(bad) = o
        .methods
        .iter()
        .find(|m| !["SupOnly", "CDCL"].contains(&m.as_str()))
    {
        anyhow::bail!("--methods: unknown method {bad}; use SupOnly, CDCL or both");
    }
    o.fractions = fractions
        .split(',')
        .map(|f| {
            parse_fraction(f)
                .map(|v| (f.to_string(), v))
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(o)
}

/// Symlinks every fifth image (and mask) of `data` into `split/val`, the rest into
/// `split/train`.
fn split(data: &Path, split: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("images"))
        .with_context(|| format!("{}: no images/ folder (see --data)", data.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let (train, val) = (split.join("train"), split.join("val"));
    for (i, name) in names.iter().enumerate() {
        let dest = if i % 5 == 4 { &val } else { &train };
        let stem = Path::new(name)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for (sub, file) in [("images", name.clone()), ("masks", format!("{stem}.png"))] {
            std::fs::create_dir_all(dest.join(sub))?;
            let link = dest.join(sub).join(&file);
            if !link.exists() {
                std::os::unix::fs::symlink(
                    std::fs::canonicalize(data.join(sub).join(&file))?,
                    &link,
                )?;
            }
        }
    }
    Ok((train, val))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    method: String,
    fraction: String,
    seed: u64,
    best_epoch: Option<usize>,
    /// Scores on the 6 held-out images (raw masks, mean over images).
    scores: Scores,
    train_s: f64,
    steps: usize,
}

const REFERENCE: &str = "contrastive (seed 000, no labels)";

impl RunResult {
    fn of(
        method: &str,
        fraction: &str,
        summary: &TrainSummary,
        scores: Scores,
        start: Instant,
    ) -> Self {
        Self {
            method: method.into(),
            fraction: fraction.into(),
            seed: summary.seed,
            best_epoch: summary.best.and_then(|b| b.epoch),
            scores,
            train_s: start.elapsed().as_secs_f64(),
            steps: summary.steps,
        }
    }
}

/// Mean ± sd (over seeds) of each score, as percentages.
fn cell(results: &[&RunResult], pick: fn(&Scores) -> f64) -> String {
    let values: Vec<f64> = results.iter().map(|r| 100.0 * pick(&r.scores)).collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    format!("{mean:.2} ± {sd:.2}")
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    std::fs::create_dir_all(&o.out)?;
    let (train_dir, val_dir) = split(&o.data, &o.out.join("split"))?;
    let folder = LabeledFolder::open(&train_dir)?;
    let val = LabeledFolder::open(&val_dir)?.labeled()?;
    println!(
        "device {:?}, torch threads {}; {} train / {} validation images; {} steps per run",
        o.device,
        tch::get_num_threads(),
        folder.items().len(),
        val.items.len(),
        o.steps
    );
    let score = |run: &Path| -> anyhow::Result<Scores> {
        let predictor = Predictor::from_run(run, o.device, None, None)?;
        let images = score_set(
            &predictor,
            &val,
            None,
            Default::default(),
            false,
            &CancelToken::new(),
        )?;
        Ok(Scores::mean(images.iter().map(|i| &i.raw)))
    };
    // A finished run leaves result.json; it is reused, anything else is trained afresh.
    let cached = |dir: &Path,
                  run: &dyn Fn(&Path) -> anyhow::Result<RunResult>|
     -> anyhow::Result<RunResult> {
        let path = dir.join("result.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(serde_json::from_str(&text)?);
        }
        let _ = std::fs::remove_dir_all(dir);
        let result = run(dir)?;
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
        Ok(result)
    };
    let mut results: Vec<RunResult> = Vec::new();
    for (label, fraction) in &o.fractions {
        let methods = [("SupOnly", false), ("CDCL", true)];
        for (method, unsupervised) in methods
            .iter()
            .filter(|(m, _)| o.methods.iter().any(|n| n == m))
        {
            let (method, unsupervised) = (*method, *unsupervised);
            // With every sub-image labeled there is nothing semi-supervised to do; SupOnly
            // there is the paper's FullSup, the ceiling of every method at lower fractions.
            let full = *fraction >= 1.0;
            if full && unsupervised {
                continue;
            }
            let method = if full { "FullSup" } else { method };
            for seed in 0..o.seeds {
                let dir = o
                    .out
                    .join(format!("{method}-{}-seed{seed}", label.replace('/', "of")));
                let result = cached(&dir, &|dir| {
                    let config = SemiConfig {
                        unsupervised,
                        labeled_fraction: *fraction,
                        width: o.width,
                        crop: o.crop,
                        labeled_batch: o.batch,
                        unlabeled_batch: o.batch,
                        epoch_steps: Some(o.epoch_steps),
                        epochs: o.steps.div_ceil(o.epoch_steps),
                        max_steps: Some(o.steps),
                        semi_start: o.semi_start,
                        ema: o.ema,
                        seed,
                        device: o.device,
                        ..SemiConfig::default()
                    };
                    let start = Instant::now();
                    let summary = train_semi(
                        &config,
                        &folder,
                        None,
                        Some(&val),
                        dir,
                        &|| false,
                        &mut |_| {},
                    )?;
                    Ok(RunResult::of(method, label, &summary, score(dir)?, start))
                })?;
                println!(
                    "{method:7} {label:5} seed {seed}: DC {:.4} (best epoch {:?}), {} steps in {:.0} s",
                    result.scores.dice, result.best_epoch, result.steps, result.train_s
                );
                results.push(result);
            }
        }
    }
    for seed in (0..o.seeds).filter(|_| o.reference_epochs > 0) {
        let result = cached(&o.out.join(format!("contrastive-seed{seed}")), &|dir| {
            let config = TrainConfig {
                epochs: o.reference_epochs,
                seed,
                device: o.device,
                ..TrainConfig::default()
            };
            let start = Instant::now();
            let summary = train(&config, &folder, Some(&val), dir, false, &mut |_| {})?;
            Ok(RunResult::of(REFERENCE, "0", &summary, score(dir)?, start))
        })?;
        println!(
            "contrastive seed {seed}: DC {:.4}, {} steps in {:.0} s",
            result.scores.dice, result.steps, result.train_s
        );
        results.push(result);
    }
    let mut table = String::from(
        "| labels | method | DC (%) | JC (%) | ACC (%) | SP (%) | SE (%) | train s/run |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut groups: Vec<(String, String)> = Vec::new();
    for r in &results {
        let key = (r.fraction.clone(), r.method.clone());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    for (fraction, method) in &groups {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| &r.fraction == fraction && &r.method == method)
            .collect();
        let mean_s = runs.iter().map(|r| r.train_s).sum::<f64>() / runs.len() as f64;
        table.push_str(&format!(
            "| {fraction} | {method} | {} | {} | {} | {} | {} | {mean_s:.0} |\n",
            cell(&runs, |s| s.dice),
            cell(&runs, |s| s.iou),
            cell(&runs, |s| s.accuracy),
            cell(&runs, |s| s.specificity),
            cell(&runs, |s| s.recall),
        ));
    }
    println!("\n{table}");
    std::fs::write(o.out.join("table.md"), &table)?;
    std::fs::write(
        o.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    Ok(())
}
