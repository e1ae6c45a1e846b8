//! `slidestream eval`: scores of a trained run against labeled images (Dice, IoU,
//! precision, recall, accuracy, specificity), per image and mean, raw and after the same
//! morphological post-processing `segment` applies.
//!
//! Images are predicted whole, as in validation during training, so the raw mean Dice
//! equals the `val_dice` that model.json records for the chosen channel.

use crate::commands::segment::RunOverrides;
use crate::morphology::postprocess;
use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::scores::{Confusion, Scores};
use crate::segment::{Predictor, Window};
use crate::slide::RgbRegion;
use crate::train::{LabeledFolder, LabeledSet};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// RUN_DIR written by `train` (model.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Labeled folder: DIR/images/*.{tif,png} with masks in DIR/masks/<stem>.png.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub run: RunOverrides,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageScores {
    pub image: PathBuf,
    pub raw: Scores,
    pub postprocessed: Scores,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub data: PathBuf,
    pub channel: usize,
    pub threshold: f64,
    /// Means over images (each image weighs the same, as in the paper).
    pub mean_raw: Scores,
    pub mean_postprocessed: Scores,
    pub images: Vec<ImageScores>,
}

/// Scores every labeled image of `args.data`; stops between images on Ctrl-C.
pub fn run(
    args: &EvalArgs,
    show_progress: bool,
    cancel: &CancelToken,
) -> anyhow::Result<EvalReport> {
    let predictor = args.run.load(&args.model, args.run.device.resolve()?)?;
    let set = LabeledFolder::open(&args.data)?.labeled()?;
    let images = score_set(&predictor, &set, show_progress, cancel)?;
    let mean = |pick: fn(&ImageScores) -> &Scores| Scores::mean(images.iter().map(pick));
    Ok(EvalReport {
        model: args.model.clone(),
        data: args.data.clone(),
        channel: predictor.card().channel,
        threshold: predictor.card().threshold,
        mean_raw: mean(|i| &i.raw),
        mean_postprocessed: mean(|i| &i.postprocessed),
        images,
    })
}

/// Raw and post-processed scores of each image of `set`.
pub fn score_set(
    predictor: &Predictor,
    set: &LabeledSet,
    show_progress: bool,
    cancel: &CancelToken,
) -> Result<Vec<ImageScores>, PipelineError> {
    let bar = progress_bar("eval images", Some(set.items.len() as u64), !show_progress);
    let mut scored = Vec::with_capacity(set.items.len());
    for item in &set.items {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let size = item.image.size();
        let (height, width) = (size[1] as u32, size[2] as u32);
        let image = RgbRegion {
            width,
            height,
            pixels: Vec::<u8>::try_from(item.image.permute([1, 2, 0]).contiguous().view([-1]))
                .expect("u8 image tensor"),
        };
        let whole = Window {
            x: 0,
            y: 0,
            width,
            height,
        };
        let raw = predictor
            .predict(&[&image], &[whole])
            .pop()
            .expect("one mask per image");
        let truth =
            Vec::<u8>::try_from(item.mask.to_kind(tch::Kind::Uint8).view([-1])).expect("mask");
        let cleaned = postprocess(&raw, width as usize, height as usize);
        scored.push(ImageScores {
            image: item.path.clone(),
            raw: Confusion::of(&raw, &truth).scores(),
            postprocessed: Confusion::of(&cleaned, &truth).scores(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(scored)
}

/// The mean scores as a small table.
pub fn print_text(report: &EvalReport) {
    println!(
        "{} on {} images of {} (channel {}, threshold {})",
        report.model.display(),
        report.images.len(),
        report.data.display(),
        report.channel,
        report.threshold
    );
    println!("               dice    iou  precision  recall  accuracy  specificity");
    for (name, s) in [
        ("raw", &report.mean_raw),
        ("postprocessed", &report.mean_postprocessed),
    ] {
        println!(
            "{name:<13} {:>6.4} {:>6.4} {:>10.4} {:>7.4} {:>9.4} {:>12.4}",
            s.dice, s.iou, s.precision, s.recall, s.accuracy, s.specificity
        );
    }
}
