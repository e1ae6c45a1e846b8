//! Is a model as good at 20× as at 40×? Builds a 20× copy of a labeled 40× folder (MoNuSeg,
//! 0.25 µm/px) in memory — images 2× downsampled by area averaging, masks by majority of
//! each 2×2 block, ties (2 of 4) alternating in a checkerboard so that the masks neither grow
//! nor shrink on average — and scores the same model on both, as `eval` does (mean Dice over
//! images, raw and post-processed):
//!
//! - `40×`: the images as they are;
//! - `20× model scale`: `eval`'s default, the 20× images resampled to the model's training
//!   scale (for the threshold baseline, which records none, 0.25 µm/px is asked for);
//! - `20× native`: the model on the 20× pixels, post-processing disks converted from µm;
//! - `20× px radii`: as before scales were known, the post-processing disks of 3 and 1 px
//!   applied to 20× masks (the 20× images declared 0.25 µm/px).
//!
//! `cargo bench --bench scale -- [--data DIR] [RUN_DIR...]`: without RUN_DIRs the threshold
//! baseline (`segment --baseline threshold`, no training) is scored, in about a minute.

use slidestream::commands::eval::{score_set, EvalScale};
use slidestream::commands::segment::DEFAULT_BASELINE_THRESHOLD;
use slidestream::pipeline::CancelToken;
use slidestream::scores::Scores;
use slidestream::segment::{Predictor, TargetScale};
use slidestream::train::{Labeled, LabeledFolder, LabeledSet};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// MoNuSeg's scale, and its 20× copy's.
const MPP_40X: f64 = 0.25;
const MPP_20X: f64 = 0.5;

/// The image 2× smaller: each pixel the rounded mean of a 2×2 block (odd edges dropped).
fn downsample_image(image: &Tensor) -> Tensor {
    let (h, w) = (image.size()[1] / 2 * 2, image.size()[2] / 2 * 2);
    image
        .narrow(1, 0, h)
        .narrow(2, 0, w)
        .to_kind(Kind::Float)
        .unsqueeze(0)
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
        .squeeze_dim(0)
        .round()
        .to_kind(Kind::Uint8)
}

/// The mask 2× smaller: nucleus where 3 or 4 of a 2×2 block are, and where 2 are on the
/// even squares of a checkerboard.
fn downsample_mask(mask: &Tensor) -> Tensor {
    let (h, w) = (mask.size()[0] / 2 * 2, mask.size()[1] / 2 * 2);
    let votes = mask
        .narrow(0, 0, h)
        .narrow(1, 0, w)
        .to_kind(Kind::Float)
        .view([1, 1, h, w])
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
        .view([h / 2, w / 2])
        * 4.0;
    let ys = Tensor::arange(h / 2, (Kind::Int64, Device::Cpu)).view([-1, 1]);
    let xs = Tensor::arange(w / 2, (Kind::Int64, Device::Cpu)).view([1, -1]);
    let even = (ys + xs).remainder(2).eq(0);
    votes.gt(2.5).logical_or(&votes.eq(2.0).logical_and(&even))
}

fn twenty_x(set: &LabeledSet) -> LabeledSet {
    LabeledSet {
        items: set
            .items
            .iter()
            .map(|item| Labeled {
                path: item.path.clone(),
                image: downsample_image(&item.image),
                mask: downsample_mask(&item.mask),
            })
            .collect(),
    }
}

fn mean_dice(
    predictor: &Predictor,
    set: &LabeledSet,
    target: TargetScale,
    mpp: f64,
) -> anyhow::Result<(f64, f64)> {
    let scale = EvalScale {
        target_mpp: target,
        mpp: Some(mpp),
    };
    let images = score_set(predictor, set, None, scale, false, &CancelToken::new())?;
    let mean = |pick: fn(&_) -> &Scores| Scores::mean(images.iter().map(pick)).dice;
    Ok((mean(|i| &i.raw), mean(|i| &i.postprocessed)))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut data = PathBuf::from("../shared/data/monuseg-train");
    let mut runs = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next().expect("--data DIR").into(),
            _ => runs.push(PathBuf::from(arg)),
        }
    }
    let forty = LabeledFolder::open(&data)?.labeled()?;
    let twenty = twenty_x(&forty);
    let predictors: Vec<Predictor> = if runs.is_empty() {
        vec![Predictor::threshold_baseline(DEFAULT_BASELINE_THRESHOLD)?]
    } else {
        runs.iter()
            .map(|run| Predictor::from_run(run, Device::Cpu, None, None))
            .collect::<Result<_, _>>()?
    };
    println!(
        "{} images of {}; mean Dice raw / post-processed",
        forty.items.len(),
        data.display()
    );
    println!("| model | 40× | 20× model scale | 20× native | 20× px radii | Δ post (model scale − 40×) |");
    println!("|---|---|---|---|---|---|");
    for predictor in &predictors {
        let model_scale = match predictor.card().train_mpp {
            Some(_) => TargetScale::Model,
            None => TargetScale::Microns(MPP_40X),
        };
        let at_40x = mean_dice(predictor, &forty, TargetScale::Model, MPP_40X)?;
        let resampled = mean_dice(predictor, &twenty, model_scale, MPP_20X)?;
        let native = mean_dice(predictor, &twenty, TargetScale::Native, MPP_20X)?;
        let px_radii = mean_dice(predictor, &twenty, TargetScale::Native, MPP_40X)?;
        let cell = |(raw, post): (f64, f64)| format!("{raw:.4} / {post:.4}");
        println!(
            "| {} | {} | {} | {} | {} | {:+.4} |",
            predictor.source(),
            cell(at_40x),
            cell(resampled),
            cell(native),
            cell(px_radii),
            resampled.1 - at_40x.1
        );
    }
    Ok(())
}
