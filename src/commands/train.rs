//! `slidestream train`: learn a nuclei segmentation model from an image folder or from the
//! tissue of many whole slides, writing a RUN_DIR (`model.safetensors`, `model.json`,
//! `metrics.csv`, `curves.png`).

use crate::device::DeviceChoice;
use crate::model::Method;
use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::segment::parse_mpp;
use crate::slide::discover::expand_input;
use crate::train::cdcl::{train_semi, LabeledTiles, Schedule, SemiConfig};
use crate::train::crop_stream::CropStreamConfig;
use crate::train::sources::{self, folder_mpp, write_stream_report, Interruptible, SlideCrops};
use crate::train::{
    has_checkpoint, stain_calibration_of, train, train_seeds, CropSource, LabelFreeRule,
    LabeledFolder, LabeledSet, PartlyLabeled, Progress, SamplerKind, SeedJob, SeedRun, Similarity,
    Student, TrainConfig, TrainError, TrainSummary, PROBE_CROPS,
};
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

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
    /// self-training (default) = label-free: a student on stain-jittered, stain-calibrated
    /// crops learns the smoothed, hole-filled stain cut of the crop, its uncertain rim left
    /// out; contrastive = label-free (seed 000), supervised = BCE on masks (or, with
    /// --labeled-fraction, SupOnly: the CDCL network on the labeled sub-images alone),
    /// threshold = best gray cut, cdcl = semi-supervised mean teacher with cross-patch dense
    /// contrastive learning (seed 003), hematoxylin = label-free: BCE on each crop's
    /// hematoxylin stain map (colour deconvolution above the crop's Otsu cut), no masks.
    #[arg(long, value_enum, default_value = "self-training")]
    pub method: Method,
    /// Epochs [default: 40 for self-training; 300 for contrastive, supervised, hematoxylin; 80 for cdcl/SupOnly]. An epoch is one crop per training image
    /// (or --epoch-crops for slides); for cdcl/SupOnly one pass over the sub-images as
    /// unlabeled data (or --epoch-steps).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps, whatever --epochs says.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Random seed (weights, crops, patch sampling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent runs with seeds seed, seed+1, ...; each in RUN_DIR/seed-<s>/ plus summary.json.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Go on with an interrupted job (crash, Ctrl-C, time limit) with the same flags: an
    /// unfinished run continues after its last finished epoch (--out/checkpoint.json, written
    /// every epoch; from an image folder it ends as one uninterrupted run would), and with
    /// --seeds the runs already finished (seed-<s>/seed.json) are kept. With slides as
    /// --data the resumed epochs see other random crops. --device may differ (a GPU job can
    /// go on on the CPU). cdcl/SupOnly runs restart instead.
    #[arg(long)]
    pub resume: bool,
    /// Where the network trains.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Patch similarity: mse (paper default) or ce (appendix C).
    #[arg(long, value_enum, default_value = "mse")]
    pub similarity: Similarity,
    /// Patch sampler: entropy (paper), confidence or topk (appendix B).
    #[arg(long, value_enum, default_value = "entropy")]
    pub sampler: SamplerKind,
    /// --sampler topk: positives are drawn among this many most confident candidate
    /// patches, negatives among the rest [default: 50, the authors'].
    #[arg(long)]
    pub topk: Option<usize>,
    /// Output channels K of the confidence network.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// Side of the square training crops in pixels [default: 300; 192 for cdcl/SupOnly,
    /// a multiple of 64].
    #[arg(long)]
    pub crop: Option<u32>,
    /// Crops per optimizer step [default: 10; 8 labeled for cdcl/SupOnly].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Patches sampled per image and channel.
    #[arg(long, default_value_t = 10)]
    pub patches: usize,
    /// Side of the square patches compared by the contrastive loss.
    #[arg(long, default_value_t = 50)]
    pub patch_size: u32,
    /// Stride between candidate patches.
    #[arg(long, default_value_t = 20)]
    pub stride: u32,
    /// Adam learning rate [default: 2e-4; 1e-3 for self-training; 1e-4 with poly decay for
    /// cdcl/SupOnly].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam weight decay (contrastive and supervised confidence network).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// cdcl/SupOnly/self-training: share of the labeled sub-images whose masks are used:
    /// 1/32, 1/16, 1/8, 0.25, 10% ... [default for cdcl: 1/8]. The rest serve as unlabeled
    /// data; self-training learns every step from as many of these sub-images as crops.
    /// With masks, pick `--student unet --width 16`: on MoNuSeg's bench split it holds its
    /// held-out Dice with them, where they cost the confidence network; on a second split
    /// it stays below the label-free default (docs/benchmarks.md, "With a few masks").
    #[arg(long, value_parser = crate::train::cdcl::parse_fraction)]
    pub labeled_fraction: Option<f64>,
    /// cdcl/SupOnly/self-training: seed of the choice of labeled sub-images (kept fixed
    /// across --seeds).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// cdcl/SupOnly/self-training: side of the sub-images the labeled images are cut into.
    #[arg(long, default_value_t = 250)]
    pub tile: u32,
    /// Self-training: the student network. confidence-net (default) = seed 000's network,
    /// which `segment` runs through a hand-written CPU kernel; unet = seed 003's UNet of
    /// --width (8 costs `segment` about 1.2× as much per pixel, 16 about 3×).
    #[arg(long, value_enum, default_value = "confidence-net")]
    pub student: StudentChoice,
    /// Width w of the UNet (8: 121k parameters, 16: 4× that) [default: 16 for
    /// cdcl/SupOnly, 8 for --student unet].
    #[arg(long)]
    pub width: Option<usize>,
    /// cdcl: unlabeled crops per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub unlabeled_batch: usize,
    /// cdcl: epochs of labeled-only training before the unsupervised branch starts.
    #[arg(long, default_value_t = 5)]
    pub semi_start: usize,
    /// cdcl: EMA decay α of the teacher (0.999 suits the paper's ~4000 steps; short runs
    /// want a shorter memory, e.g. 0.99 for ~1500 steps).
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// cdcl/SupOnly: optimizer steps per epoch (validation and checkpoints happen per epoch).
    #[arg(long)]
    pub epoch_steps: Option<usize>,
    /// cdcl: whole slides (files, folders, quoted globs) whose tissue crops are extra
    /// unlabeled data: half of every unlabeled batch comes from them.
    #[arg(long, num_args = 1..)]
    pub unlabeled: Vec<String>,
    /// Slides only: crops that make one epoch.
    #[arg(long, default_value_t = 300)]
    pub epoch_crops: usize,
    /// Slides only: least tissue fraction a crop must cover.
    #[arg(long, default_value_t = 0.5)]
    pub min_tissue: f64,
    /// Microns per pixel the model learns at, recorded in model.json for segment to match
    /// slides to. Image folders: the images' scale, required when their TIFF/PNG
    /// resolution tags do not record it (MoNuSeg's do not; it is 0.25). Slides: every slide
    /// is read at this scale [default: the finest scale among them]; slides that record
    /// none are taken to be at it.
    #[arg(long, value_parser = parse_mpp)]
    pub mpp: Option<f64>,
}

/// `--student`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StudentChoice {
    ConfidenceNet,
    Unet,
}

/// The UNet student's width when --width is not given: the widest within `segment`'s cost
/// budget of 1.3× the confidence network (docs/benchmarks.md#student-candidates).
const DEFAULT_STUDENT_WIDTH: usize = 8;

impl TrainArgs {
    /// Semi-supervised (cdcl, or supervised with a labeled fraction).
    fn is_semi(&self) -> bool {
        self.method == Method::Cdcl
            || (self.method == Method::Supervised && self.labeled_fraction.is_some())
    }

    /// Self-training that also learns from the masks of a share of the sub-images.
    fn learns_from_a_few_masks(&self) -> bool {
        self.method == Method::SelfTraining && self.labeled_fraction.is_some()
    }

    fn config(&self) -> anyhow::Result<TrainConfig> {
        let defaults = TrainConfig::defaults_for(self.method);
        Ok(TrainConfig {
            method: self.method,
            epochs: self.epochs.unwrap_or(defaults.epochs),
            max_steps: self.max_steps,
            seed: self.seed,
            device: self.device.resolve()?,
            similarity: self.similarity,
            sampler: self.sampler,
            topk: self.topk.unwrap_or(defaults.topk),
            channels: self.channels,
            crop: self.crop.unwrap_or(defaults.crop),
            batch: self.batch.unwrap_or(defaults.batch),
            patches: self.patches,
            patch_size: self.patch_size,
            stride: self.stride,
            lr: self.lr.unwrap_or(defaults.lr),
            weight_decay: self.weight_decay,
            student: match self.student {
                StudentChoice::ConfidenceNet => Student::ConfidenceNet,
                StudentChoice::Unet => Student::Unet {
                    width: self.width.unwrap_or(DEFAULT_STUDENT_WIDTH),
                },
            },
            ..defaults
        })
    }

    fn semi_config(&self) -> anyhow::Result<SemiConfig> {
        let defaults = SemiConfig::default();
        Ok(SemiConfig {
            unsupervised: self.method == Method::Cdcl,
            labeled_fraction: self.labeled_fraction.unwrap_or(defaults.labeled_fraction),
            split_seed: self.split_seed,
            tile: self.tile,
            crop: self.crop.unwrap_or(defaults.crop),
            labeled_batch: self.batch.unwrap_or(defaults.labeled_batch),
            unlabeled_batch: self.unlabeled_batch,
            width: self
                .width
                .unwrap_or(crate::model::DEFAULT_UNET_WIDTH as usize),
            epochs: self.epochs.unwrap_or(defaults.epochs),
            epoch_steps: self.epoch_steps,
            max_steps: self.max_steps,
            semi_start: self.semi_start,
            ema: self.ema,
            lr: self.lr.unwrap_or(defaults.lr),
            seed: self.seed,
            device: self.device.resolve()?,
            ..defaults
        })
    }

    /// Flags that only one family of methods reads, given to the other: say so rather
    /// than ignore them.
    fn check_method_flags(&self) -> anyhow::Result<()> {
        let wrong = |message: String| Err(TrainError::Config(message).into());
        if self.labeled_fraction.is_some() && !self.is_semi() && !self.learns_from_a_few_masks() {
            return wrong(format!(
                "--labeled-fraction is for --method self-training, cdcl or supervised (SupOnly), \
                 not {:?}",
                self.method
            ));
        }
        if self.topk.is_some() && self.sampler != SamplerKind::Topk {
            return wrong("--topk is read by --sampler topk only".into());
        }
        if self.epoch_crops == 0 {
            return wrong("--epoch-crops must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.min_tissue) {
            return wrong(format!(
                "--min-tissue {} must be between 0 and 1: the share of a crop that is tissue",
                self.min_tissue
            ));
        }
        // The other methods refuse it in `TrainConfig::check`; these build no TrainConfig.
        if self.student == StudentChoice::Unet && self.is_semi() {
            return wrong(
                "--student unet is the self-training method's; cdcl and SupOnly train their \
                 own UNet (set its width with --width)"
                    .into(),
            );
        }
        if self.width.is_some()
            && !self.is_semi()
            && !(self.method == Method::SelfTraining && self.student == StudentChoice::Unet)
        {
            return wrong(
                "--width is the UNet's: for --method cdcl, supervised with --labeled-fraction, \
                 or self-training with --student unet"
                    .into(),
            );
        }
        if !self.unlabeled.is_empty() && self.method != Method::Cdcl {
            return wrong("--unlabeled adds unlabeled slides to --method cdcl only".into());
        }
        Ok(())
    }
}

/// Expands --data into slides as `cohort` does (see [`crate::slide::discover`]): globs,
/// folders (recursive, slide extensions, a DICOM folder as one slide), files.
fn slide_paths(inputs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in inputs {
        let found = expand_input(Path::new(input), None).map_err(|e| anyhow!("--data {e}"))?;
        paths.extend(found);
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// A folder in the labeled/unlabeled layout (it has an `images/` subfolder).
fn is_image_folder(inputs: &[String]) -> Option<&Path> {
    match inputs {
        [one] if Path::new(one).join("images").is_dir() => Some(Path::new(one)),
        _ => None,
    }
}

/// Starts the crop stream over the slides named by `inputs` (--data or --unlabeled):
/// `count` random `crop`-px tissue crops, `args.epoch_crops` to an epoch.
fn slide_crops(
    inputs: &[String],
    args: &TrainArgs,
    crop: u32,
    count: usize,
    cancel: &CancelToken,
) -> anyhow::Result<SlideCrops> {
    let paths = slide_paths(inputs)?;
    let stream_config = CropStreamConfig {
        crop,
        min_tissue: args.min_tissue,
        seed: args.seed,
        measure_stain: stain_calibration_of(args.method).is_some(),
        ..CropStreamConfig::default()
    };
    Ok(sources::slide_crops(
        &paths,
        &stream_config,
        args.mpp,
        args.epoch_crops,
        count,
        cancel,
    )?)
}

/// What identifies a run besides its trainer config: the data it was given.
fn run_settings(args: &TrainArgs, config: &impl serde::Serialize) -> serde_json::Value {
    serde_json::json!({
        "config": config,
        "data": args.data,
        "val": args.val,
        "unlabeled": args.unlabeled,
        "labeled": args.learns_from_a_few_masks().then(|| serde_json::json!({
            "fraction": args.labeled_fraction,
            "split_seed": args.split_seed,
            "tile": args.tile,
        })),
    })
}

/// One line per run of a multi-seed job: best Dice, where and when it was reached, and
/// what label-free selection would have picked instead.
fn print_runs(runs: &[SeedRun]) {
    let cell = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!(
        "seed  best Dice  epoch  channel  time to best (s)  run time (s)  label-free Dice (epoch/channel)"
    );
    for run in runs {
        let label_free = run.label_free.map(|choice| {
            let dice = cell(choice.val_dice.map(|d| format!("{d:.4}")));
            format!("{dice} ({}/{})", choice.epoch, choice.channel)
        });
        println!(
            "{:>4}  {:>9}  {:>5}  {:>7}  {:>16}  {:>12}  {:>31}",
            run.seed,
            cell(run.best_dice.map(|d| format!("{d:.4}"))),
            cell(run.best_epoch.map(|e| e.to_string())),
            cell(run.best_channel.map(|c| c.to_string())),
            cell(run.best_elapsed_s.map(|s| format!("{s:.0}"))),
            cell(run.elapsed_s.map(|s| format!("{s:.0}"))),
            cell(label_free),
        );
    }
}

/// One training run: (seed, run directory, progress callback) → summary.
type RunOne<'a> =
    dyn FnMut(u64, &Path, &mut dyn FnMut(Progress<'_>)) -> Result<TrainSummary, TrainError> + 'a;

/// Runs `args.seeds` runs of `run_one` (`steps_per_run` optimizer steps each) under a
/// progress bar and prints what was selected.
fn train_and_report(
    args: &TrainArgs,
    steps_per_run: usize,
    show_progress: bool,
    cancel: &CancelToken,
    job: &SeedJob<'_>,
    run_one: &mut RunOne<'_>,
) -> anyhow::Result<()> {
    let bar = progress_bar(
        "train steps",
        Some(job.steps_left(steps_per_run) as u64),
        !show_progress,
    );
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
    let interrupted = |e: TrainError| -> anyhow::Error {
        if cancel.is_cancelled() {
            let next = if args.is_semi() {
                "the run keeps the best checkpoint so far"
            } else {
                "the same command with --resume goes on after the last finished epoch"
            };
            tracing::warn!(run = %args.out.display(), "training interrupted; {next}");
            PipelineError::Cancelled.into()
        } else {
            e.into()
        }
    };
    if args.seeds > 1 {
        let summary = train_seeds(
            args.seed,
            args.seeds,
            LabelFreeRule::of(args.method),
            &args.out,
            job.settings(),
            job.kept(),
            &mut |seed, dir| run_one(seed, dir, &mut on_progress),
        )
        .map_err(interrupted)?;
        bar.finish_and_clear();
        print_runs(&summary.runs);
        println!(
            "{} runs ({} kept from an earlier job): best Dice max {:.4}, p80 {:.4}, median {:.4}, \
             mean {:.4} ± {:.4}, min {:.4}; selected {}",
            summary.runs.len(),
            job.kept().len(),
            summary.max.unwrap_or(f64::NAN),
            summary.p80.unwrap_or(f64::NAN),
            summary.median.unwrap_or(f64::NAN),
            summary.mean.unwrap_or(f64::NAN),
            summary.sd.unwrap_or(f64::NAN),
            summary.min.unwrap_or(f64::NAN),
            summary
                .selected_run_dir
                .as_deref()
                .map_or("-".into(), |p| p.display().to_string())
        );
        if let (Some(median), Some(gap)) = (summary.label_free_median, summary.label_free_mean_gap)
        {
            println!(
                "label-free selection (no masks): median Dice {median:.4}, {gap:.4} below the \
                 validation-selected checkpoint on average"
            );
        }
        return Ok(());
    }
    let summary = run_one(args.seed, &args.out, &mut on_progress).map_err(interrupted)?;
    bar.finish_and_clear();
    if LabelFreeRule::of(args.method) == LabelFreeRule::LastEpoch {
        // The run keeps its last epoch (for self-training, the weight average it ends with)
        // whatever the masks say: report that one, not the best.
        let last = summary.epochs.last();
        let dice = last
            .and_then(|e| e.val_dice.first())
            .map_or(String::new(), |d| format!(", validation Dice {d:.4}"));
        println!(
            "kept the model after the last epoch ({}{dice}); {} steps in {:.1}s; model in {}",
            last.map_or("-".into(), |e| e.epoch.to_string()),
            summary.steps,
            summary.elapsed_s,
            args.out.display()
        );
        return Ok(());
    }
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
    Ok(())
}

pub fn run(args: &TrainArgs, show_progress: bool, cancel: &CancelToken) -> anyhow::Result<()> {
    args.check_method_flags()?;
    match (has_checkpoint(&args.out), args.resume) {
        (true, false) => bail!(
            "{}: holds an interrupted run (checkpoint.json); add --resume to go on with it, or \
             choose a new --out",
            args.out.display()
        ),
        (false, _) if args.out.join("model.json").exists() => bail!(
            "{}: already holds a trained model; choose a new --out or delete it",
            args.out.display()
        ),
        _ => {}
    }
    if args.is_semi() {
        return run_semi(args, show_progress, cancel);
    }
    let config = args.config()?;
    config.check()?;
    let folder = is_image_folder(&args.data)
        .map(LabeledFolder::open)
        .transpose()?;
    if args.learns_from_a_few_masks() && folder.is_none() {
        return Err(TrainError::Config(
            "--labeled-fraction needs a labeled image folder as --data (DIR/images/*.tif|png \
             with DIR/masks/*.png); slides carry no masks"
                .into(),
        )
        .into());
    }
    // The threshold baseline reads whole images; every other method cuts crops.
    if let (Some(folder), false) = (&folder, config.method == Method::Threshold) {
        folder.check_crop(config.crop)?;
    }
    let folder_scale = folder
        .as_ref()
        .map(|f| folder_mpp(f, args.mpp))
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
    let settings = |seed| {
        run_settings(
            args,
            &TrainConfig {
                seed,
                ..config.clone()
            },
        )
    };
    let job = SeedJob::new(args.seed, args.seeds, args.resume, &args.out, &settings)?;
    let crops_per_run = config
        .max_steps
        .map_or(config.epochs * args.epoch_crops, |steps| {
            (steps * config.batch).min(config.epochs * args.epoch_crops)
        })
        + args.epoch_crops.min(PROBE_CROPS);
    let slides = match folder {
        Some(_) => None,
        None => Some(slide_crops(
            &args.data,
            args,
            config.crop,
            crops_per_run * job.to_train(),
            cancel,
        )?),
    };
    // Checked above: with a labeled fraction, self-training reads an image folder.
    let partly_labeled = match (&folder, args.labeled_fraction) {
        (Some(f), Some(fraction)) if args.learns_from_a_few_masks() => Some(PartlyLabeled {
            crops: f,
            tiles: LabeledTiles::choose(f, args.tile, fraction, args.split_seed)?,
        }),
        _ => None,
    };
    let (source, mpp): (&dyn CropSource, f64) =
        match (&folder, folder_scale, &slides, &partly_labeled) {
            (_, Some(mpp), _, Some(p)) => (p, mpp),
            (Some(f), Some(mpp), _, None) => (f, mpp),
            (_, _, Some(s), _) => (s, s.scale()),
            _ => unreachable!("one data source is always built"),
        };
    let data = &Interruptible {
        data: source,
        cancel,
        mpp,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let steps_per_epoch = data.epoch_len().div_ceil(config.batch);
    let steps = config
        .max_steps
        .unwrap_or(config.epochs * steps_per_epoch)
        .min(config.epochs * steps_per_epoch);
    train_and_report(
        args,
        steps,
        show_progress,
        cancel,
        &job,
        &mut |seed, dir, progress| {
            let config = TrainConfig {
                seed,
                ..config.clone()
            };
            train(&config, data, val.as_ref(), dir, args.resume, progress)
        },
    )?;
    write_stream_report(slides, &args.out)
}

/// `--method cdcl`, or `--method supervised --labeled-fraction F` (SupOnly).
fn run_semi(args: &TrainArgs, show_progress: bool, cancel: &CancelToken) -> anyhow::Result<()> {
    if args.resume && args.seeds < 2 {
        return Err(TrainError::Config(format!(
            "--resume: --method {:?} runs restart rather than continue; --resume only keeps \
             the finished runs of a multi-seed job (--seeds 2 or more)",
            args.method
        ))
        .into());
    }
    let config = args.semi_config()?;
    config.check(!args.unlabeled.is_empty())?;
    let Some(root) = is_image_folder(&args.data) else {
        return Err(TrainError::Config(format!(
            "--method {:?} needs a labeled image folder as --data (DIR/images/*.tif|png with \
             DIR/masks/*.png); add whole slides as extra unlabeled data with --unlabeled",
            args.method
        ))
        .into());
    };
    let folder = LabeledFolder::open(root)?;
    let config = SemiConfig {
        train_mpp: Some(folder_mpp(&folder, args.mpp)?),
        ..config
    };
    let val: Option<LabeledSet> = args
        .val
        .as_deref()
        .map(|dir| LabeledFolder::open(dir)?.labeled())
        .transpose()?;
    if val.is_none() {
        tracing::warn!(
            "no --val folder: the last epoch is kept (the training masks are not used for \
             selection, most of them are meant to be unknown)"
        );
    }
    let split = LabeledTiles::choose(
        &folder,
        config.tile,
        config.labeled_fraction,
        config.split_seed,
    )?;
    let schedule = Schedule::new(&config, split.pool);
    let settings = |seed| {
        run_settings(
            args,
            &SemiConfig {
                seed,
                ..config.clone()
            },
        )
    };
    let job = SeedJob::new(args.seed, args.seeds, args.resume, &args.out, &settings)?;
    tracing::info!(
        labeled = split.len(),
        sub_images = split.pool,
        epoch_steps = schedule.epoch_steps,
        steps = schedule.steps,
        "semi-supervised split"
    );
    let slides = match args.unlabeled.as_slice() {
        [] => None,
        inputs => Some(slide_crops(
            inputs,
            args,
            config.tile,
            schedule.slide_crops(&config) * job.to_train(),
            cancel,
        )?),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    train_and_report(
        args,
        schedule.steps,
        show_progress,
        cancel,
        &job,
        &mut |seed, dir, progress| {
            let config = SemiConfig {
                seed,
                ..config.clone()
            };
            train_semi(
                &config,
                &folder,
                slides.as_ref().map(|s| s as &dyn CropSource),
                val.as_ref(),
                dir,
                &|| cancel.is_cancelled(),
                progress,
            )
        },
    )?;
    write_stream_report(slides, &args.out)
}
