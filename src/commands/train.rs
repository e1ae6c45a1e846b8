//! `slidestream train`: learn a nuclei segmentation model from an image folder or from the
//! tissue of many whole slides, writing a RUN_DIR (`model.safetensors`, `model.json`,
//! `metrics.csv`, `curves.png`).

use crate::device::DeviceChoice;
use crate::model::Method;
use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::train::crop_stream::{CropSampler, CropStream, CropStreamConfig};
use crate::train::slide_source::SlideCrops;
use crate::train::{
    train, train_seeds, Batch, CropSource, DataError, LabeledFolder, LabeledSet, Progress,
    SamplerKind, Similarity, TrainConfig, PROBE_CROPS,
};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File extensions collected from folders given as slide inputs.
const SLIDE_EXTENSIONS: [&str; 9] = [
    "svs", "ndpi", "tif", "tiff", "mrxs", "scn", "bif", "vms", "dcm",
];

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Training data: a labeled/unlabeled image folder (DIR/images/*.{tif,png}, optional
    /// DIR/masks/*.png), or whole slides (files, folders searched recursively, or quoted glob
    /// patterns such as 'cohort/*.svs') streamed as random tissue crops.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// Labeled folder (images/ + masks/) for per-epoch validation Dice and model selection;
    /// default: --data itself when it is a folder with masks.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Run directory to create (model.safetensors, model.json, metrics.csv, curves.png).
    #[arg(long)]
    pub out: PathBuf,
    /// contrastive = label-free (paper), supervised = BCE on masks, threshold = best gray cut.
    #[arg(long, value_enum, default_value = "contrastive")]
    pub method: Method,
    /// Epochs; an epoch is one crop per training image (or --epoch-crops for slides).
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    /// Stop after this many optimizer steps, whatever --epochs says.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Random seed (weights, crops, patch sampling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent runs with seeds seed, seed+1, ...; each in RUN_DIR/seed-<s>/ plus summary.json.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Where the network trains.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Patch similarity: mse (paper default) or ce (appendix C).
    #[arg(long, value_enum, default_value = "mse")]
    pub similarity: Similarity,
    /// Patch sampler: entropy (paper), confidence or topk (appendix B).
    #[arg(long, value_enum, default_value = "entropy")]
    pub sampler: SamplerKind,
    /// Output channels K of the confidence network.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// Side of the square random training crops, in pixels.
    #[arg(long, default_value_t = 300)]
    pub crop: u32,
    /// Crops per optimizer step.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Patches sampled per image and channel.
    #[arg(long, default_value_t = 10)]
    pub patches: usize,
    /// Side of the square patches compared by the contrastive loss.
    #[arg(long, default_value_t = 50)]
    pub patch_size: u32,
    /// Stride between candidate patches.
    #[arg(long, default_value_t = 20)]
    pub stride: u32,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Adam weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Slides only: crops that make one epoch.
    #[arg(long, default_value_t = 300)]
    pub epoch_crops: usize,
    /// Slides only: least tissue fraction a crop must cover.
    #[arg(long, default_value_t = 0.5)]
    pub min_tissue: f64,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        Ok(TrainConfig {
            method: self.method,
            epochs: self.epochs,
            max_steps: self.max_steps,
            seed: self.seed,
            device: self.device.resolve()?,
            similarity: self.similarity,
            sampler: self.sampler,
            channels: self.channels,
            crop: self.crop,
            batch: self.batch,
            patches: self.patches,
            patch_size: self.patch_size,
            stride: self.stride,
            lr: self.lr,
            weight_decay: self.weight_decay,
            ..TrainConfig::default()
        })
    }
}

/// Expands --data into slide files: globs, folders (recursive, slide extensions), files.
fn slide_paths(inputs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.contains(['*', '?', '[']) {
            let matches: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("--data {input}: bad glob pattern"))?
                .filter_map(Result::ok)
                .collect();
            if matches.is_empty() {
                bail!("--data {input}: the pattern matches no file");
            }
            paths.extend(matches);
        } else if Path::new(input).is_dir() {
            collect_slides(Path::new(input), &mut paths)?;
        } else {
            paths.push(PathBuf::from(input));
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn collect_slides(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("--data {}", dir.display()))?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if path.is_dir() {
            collect_slides(&path, out)?;
        } else if ext.is_some_and(|e| SLIDE_EXTENSIONS.contains(&e.as_str())) {
            out.push(path);
        }
    }
    Ok(())
}

/// A folder in the labeled/unlabeled layout (it has an `images/` subfolder).
fn is_image_folder(inputs: &[String]) -> Option<&Path> {
    match inputs {
        [one] if Path::new(one).join("images").is_dir() => Some(Path::new(one)),
        _ => None,
    }
}

/// Stops training at the next batch once Ctrl-C/SIGTERM fires. The run directory then
/// keeps what was complete: the best checkpoint so far and the finished epochs' metrics.
struct Interruptible<'a> {
    data: &'a dyn CropSource,
    cancel: &'a CancelToken,
}

impl CropSource for Interruptible<'_> {
    fn epoch_len(&self) -> usize {
        self.data.epoch_len()
    }

    fn describe(&self) -> String {
        self.data.describe()
    }

    fn mpp(&self) -> Option<f64> {
        self.data.mpp()
    }

    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: tch::Device,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        if self.cancel.is_cancelled() {
            return Err(DataError::Interrupted);
        }
        self.data.crops(items, crop, device, rng)
    }
}

pub fn run(args: &TrainArgs, show_progress: bool, cancel: &CancelToken) -> anyhow::Result<()> {
    let config = args.config()?;
    if args.out.join("model.json").exists() {
        bail!(
            "{}: already holds a trained model; choose a new --out or delete it",
            args.out.display()
        );
    }
    let folder = is_image_folder(&args.data)
        .map(LabeledFolder::open)
        .transpose()?;
    let val: Option<LabeledSet> = match (&args.val, &folder) {
        (Some(dir), _) => Some(LabeledFolder::open(dir)?.labeled()?),
        // The paper's protocol: the training images' own masks select the model.
        (None, Some(f)) => f.labeled().ok(),
        (None, None) => None,
    };
    if val.is_none() {
        tracing::warn!(
            "no labeled validation data (--val): epoch and channel are chosen label-free, by \
             agreement with the hematoxylin stain"
        );
    }
    let crops_per_run = config
        .max_steps
        .map_or(args.epochs * args.epoch_crops, |steps| {
            (steps * args.batch).min(args.epochs * args.epoch_crops)
        })
        + args.epoch_crops.min(PROBE_CROPS);
    let slides = match folder {
        Some(_) => None,
        None => {
            let paths = slide_paths(&args.data)?;
            let sampler = CropSampler::new(&paths, args.crop, args.min_tissue)?;
            let used = sampler.usage.iter().filter(|u| u.skipped.is_none()).count();
            let mpp = sampler.mpp();
            let stream_config = CropStreamConfig {
                crop: args.crop,
                min_tissue: args.min_tissue,
                seed: args.seed,
                ..CropStreamConfig::default()
            };
            let count = (crops_per_run * args.seeds) as u64;
            let stream = CropStream::start(Arc::new(sampler), count, &stream_config, cancel);
            let description = format!(
                "{used} of {} slides, random {}px tissue crops",
                paths.len(),
                args.crop
            );
            Some(SlideCrops::new(
                stream,
                args.epoch_crops,
                args.crop,
                description,
                mpp,
            ))
        }
    };
    let source: &dyn CropSource = match (&folder, &slides) {
        (Some(f), _) => f,
        (_, Some(s)) => s,
        _ => unreachable!("one data source is always built"),
    };
    let data = &Interruptible {
        data: source,
        cancel,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let steps_per_epoch = data.epoch_len().div_ceil(args.batch);
    let total_steps = config.max_steps.unwrap_or(args.epochs * steps_per_epoch) * args.seeds;
    let bar = progress_bar("train steps", Some(total_steps as u64), !show_progress);
    let mut best = 0.0_f64;
    let mut on_progress = |p: Progress<'_>| match p {
        Progress::Step { .. } => bar.inc(1),
        Progress::Epoch(m) => {
            best = m.val_dice.iter().copied().fold(best, f64::max);
            bar.set_message(format!(
                "epoch {} loss {} best Dice {best:.3}",
                m.epoch,
                m.loss.map_or("-".into(), |l| format!("{l:.4}"))
            ));
            tracing::info!(epoch = m.epoch, loss = ?m.loss, dice = ?m.val_dice, skipped = m.skipped_steps, "epoch done");
        }
    };
    let interrupted = |e: crate::train::TrainError| -> anyhow::Error {
        if cancel.is_cancelled() {
            tracing::warn!(
                run = %args.out.display(),
                "training interrupted; the run keeps the best checkpoint so far"
            );
            PipelineError::Cancelled.into()
        } else {
            e.into()
        }
    };
    if args.seeds > 1 {
        let summary = train_seeds(
            &config,
            args.seeds,
            data,
            val.as_ref(),
            &args.out,
            &mut |_, p| on_progress(p),
        )
        .map_err(interrupted)?;
        bar.finish_and_clear();
        println!(
            "{} runs: best Dice max {:.4}, p80 {:.4}, mean {:.4} ± {:.4}; selected {}",
            summary.runs.len(),
            summary.max.unwrap_or(f64::NAN),
            summary.p80.unwrap_or(f64::NAN),
            summary.mean.unwrap_or(f64::NAN),
            summary.sd.unwrap_or(f64::NAN),
            summary
                .selected_run_dir
                .as_deref()
                .map_or("-".into(), |p| p.display().to_string())
        );
    } else {
        let summary =
            train(&config, data, val.as_ref(), &args.out, &mut on_progress).map_err(interrupted)?;
        bar.finish_and_clear();
        match summary.best {
            Some(b) => println!(
                "best validation Dice {:.4} (epoch {}, channel {}); {} steps ({} skipped) in {:.1}s; model in {}",
                b.dice, b.epoch.map_or("-".into(), |e| e.to_string()), b.channel, summary.steps, summary.skipped_steps, summary.elapsed_s, args.out.display()
            ),
            None => println!("{} steps in {:.1}s; model in {}", summary.steps, summary.elapsed_s, args.out.display()),
        }
        if let Some(choice) = summary.label_free {
            let val = choice
                .val_dice
                .map_or(String::new(), |d| format!("; its validation Dice {d:.4}"));
            println!(
                "label-free choice: epoch {}, channel {} (hematoxylin agreement {:.4}{val})",
                choice.epoch, choice.channel, choice.agreement
            );
        }
    }
    if let Some(report) = slides.and_then(SlideCrops::finish) {
        tracing::info!(
            trainer_wait_s = report.trainer_wait_secs,
            mean_queue = report.mean_queue,
            capacity = report.queue_capacity,
            rejected = report.rejected_draws,
            "crop stream"
        );
        let file = std::fs::File::create(args.out.join("crop_stream.json"))?;
        serde_json::to_writer_pretty(file, &report)?;
    }
    Ok(())
}
