//! `slidestream eval`: scores of a trained run against labeled images (Dice, IoU,
//! precision, recall, accuracy, specificity), per image and mean, raw and after the same
//! morphological post-processing `segment` applies.
//!
//! Where the data folder has a true instance map `instances/<stem>.png` (8- or 16-bit
//! grayscale, 0 = background, one id per nucleus), the image's predicted objects
//! ([`instances_of`]: the mask with touching nuclei split by a watershed and specks
//! dropped, parameters [`SeparationParams::default`], i.e. for 0.25 µm/px like MoNuSeg)
//! are scored as well: AJI, object F1 and PQ (see [`crate::instance_scores`]), raw and
//! post-processed, and averaged over the images that have such a map.
//!
//! Images are predicted whole, as in validation during training, so the raw mean Dice
//! equals the `val_dice` that model.json records for the chosen channel.

use crate::commands::segment::RunOverrides;
use crate::instance_scores::{InstanceScores, MissCauses};
use crate::instances::{
    check_instance_map_size, instance_map_path, instances_of, read_instance_map,
};
use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::scores::{Confusion, Scores};
use crate::segment::{
    finish_whole_region, finishing, model_mpp, parse_mpp, plan_geometry, Predictor, TargetScale,
    Window,
};
use crate::slide::grid::Rect;
use crate::slide::resolution::image_mpp;
use crate::slide::ImageSlide;
use crate::stain::hematoxylin_cut_of_regions;
use crate::train::{Labeled, LabeledFolder, LabeledSet};
use crate::watershed::SeparationParams;
use serde::Serialize;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// RUN_DIR written by `train` (model.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Labeled folder: DIR/images/*.{tif,png} with masks in DIR/masks/<stem>.png, and
    /// optionally true instance maps in DIR/instances/<stem>.png (8- or 16-bit grayscale,
    /// 0 = background, one id per nucleus) for object scores (AJI, F1, PQ).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub run: RunOverrides,
    #[command(flatten)]
    pub scale: EvalScale,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The scale images are scored at: as `segment` runs a slide, the model sees each image at
/// its training scale when the image's scale is known, and the masks are scored at the
/// image's own pixels.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct EvalScale {
    /// The scale the model sees: `model` (its train_mpp), `native` (the images' pixels) or
    /// microns per pixel.
    #[arg(long, default_value = "model", value_parser = TargetScale::from_str)]
    pub target_mpp: TargetScale,
    /// The images' microns per pixel, over their TIFF/PNG resolution tags (MoNuSeg's
    /// carry none; it is 0.25).
    #[arg(long, value_parser = parse_mpp)]
    pub mpp: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageScores {
    pub image: PathBuf,
    /// Microns per pixel the model saw (assumed to be its training scale when the image's
    /// is unknown).
    pub model_mpp: f64,
    /// The image was resampled for the model, and the masks back.
    pub resampled: bool,
    pub raw: Scores,
    pub postprocessed: Scores,
    /// Object scores of the raw mask's instances; `None` without an instance map.
    pub instances_raw: Option<InstanceScores>,
    /// Object scores of the post-processed mask's instances; `None` without an instance map.
    pub instances_postprocessed: Option<InstanceScores>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub data: PathBuf,
    pub channel: usize,
    pub threshold: f64,
    /// What scale the model ran at, in a sentence (also logged).
    pub scale: String,
    /// Means over images (each image weighs the same, as in the paper).
    pub mean_raw: Scores,
    pub mean_postprocessed: Scores,
    /// Images scored as objects (those with an instance map).
    pub instance_images: usize,
    /// Means of the object scores over the `instance_images` (object counts: totals);
    /// `None` when no image has an instance map.
    pub mean_instances_raw: Option<InstanceScores>,
    pub mean_instances_postprocessed: Option<InstanceScores>,
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
    let maps = instance_maps(&args.data, &set)?;
    let images = score_set(
        &predictor,
        &set,
        Some(&maps),
        args.scale,
        show_progress,
        cancel,
    )?;
    let scale = scale_note(&images, predictor.card().train_mpp);
    tracing::info!("{scale}");
    let mean = |pick: fn(&ImageScores) -> &Scores| Scores::mean(images.iter().map(pick));
    let mean_instances = |pick: fn(&ImageScores) -> &Option<InstanceScores>| {
        InstanceScores::mean(images.iter().filter_map(|i| pick(i).as_ref()))
    };
    Ok(EvalReport {
        model: args.model.clone(),
        data: args.data.clone(),
        channel: predictor.card().channel,
        threshold: predictor.card().threshold,
        scale,
        mean_raw: mean(|i| &i.raw),
        mean_postprocessed: mean(|i| &i.postprocessed),
        instance_images: images.iter().filter(|i| i.instances_raw.is_some()).count(),
        mean_instances_raw: mean_instances(|i| &i.instances_raw),
        mean_instances_postprocessed: mean_instances(|i| &i.instances_postprocessed),
        images,
    })
}

/// `dir/instances/<stem>.png` of each image of `set` where it exists, each checked (from its
/// header) to be the size of its image, so a wrong map fails before any prediction.
pub fn instance_maps(
    dir: &Path,
    set: &LabeledSet,
) -> Result<Vec<Option<PathBuf>>, crate::instances::InstanceMapError> {
    set.items
        .iter()
        .map(|item| {
            let path = instance_map_path(dir, &item.path);
            if let Some(path) = &path {
                let (width, height) = item.size();
                check_instance_map_size(path, width, height)?;
            }
            Ok(path)
        })
        .collect()
}

/// Raw and post-processed scores of each image of `set`: pixels, and objects for the images
/// whose entry in `instance_maps` (one per image, from [`instance_maps`]) names a map.
pub fn score_set(
    predictor: &Predictor,
    set: &LabeledSet,
    instance_maps: Option<&[Option<PathBuf>]>,
    scale: EvalScale,
    show_progress: bool,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<ImageScores>> {
    let bar = progress_bar("eval images", Some(set.items.len() as u64), !show_progress);
    let mut scored = Vec::with_capacity(set.items.len());
    for (i, item) in set.items.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled.into());
        }
        let truth = match instance_maps.and_then(|maps| maps[i].as_ref()) {
            Some(path) => {
                let (width, height) = item.size();
                Some(read_instance_map(path, width, height)?)
            }
            None => None,
        };
        scored.push(score_image(predictor, item, truth.as_deref(), scale)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(scored)
}

/// Width and height of a labeled image.
/// Predicts `item` whole at the model's scale (see [`EvalScale`]) and scores the raw and
/// post-processed masks at the image's pixels: against its mask, and as objects
/// ([`instances_of`]) against `truth_instances` when given (a label map of the image's size).
fn score_image(
    predictor: &Predictor,
    item: &Labeled,
    truth_instances: Option<&[u32]>,
    scale: EvalScale,
) -> anyhow::Result<ImageScores> {
    let region = item.rgb_region();
    let (width, height) = (region.width, region.height);
    let tags = image_mpp(&item.path)?;
    let slide = ImageSlide::from_rgb(&item.path, region.pixels, width.into(), height.into(), tags);
    let train_mpp = predictor.card().train_mpp;
    let geometry = plan_geometry(&slide, 0, scale.target_mpp, scale.mpp, train_mpp)?;
    let model_mpp = model_mpp(&geometry, train_mpp);
    let (mw, mh) = (geometry.model_width as u32, geometry.model_height as u32);
    let image = geometry.read(
        &slide,
        Rect {
            x: 0,
            y: 0,
            width: mw,
            height: mh,
        },
    )?;
    let whole = Window {
        x: 0,
        y: 0,
        width: mw,
        height: mh,
    };
    // The image stands for its own slide: calibrated by its own stain, as in training.
    let stain_gamma = predictor
        .stain_gamma(|| {
            Ok::<_, Infallible>(hematoxylin_cut_of_regions(std::slice::from_ref(&image)))
        })
        .unwrap_or_else(|never| match never {});
    let raw_model = predictor
        .predict(&[&image], &[whole], stain_gamma)
        .pop()
        .expect("one mask per image");
    let cleaned_model =
        finish_whole_region(&finishing(predictor.card(), model_mpp), &raw_model, &image);
    let (raw, cleaned) = (
        geometry.to_output(&raw_model),
        geometry.to_output(&cleaned_model),
    );
    let truth = Vec::<u8>::try_from(item.mask.to_kind(tch::Kind::Uint8).view([-1])).expect("mask");
    let (w, h) = (width as usize, height as usize);
    let image_mpp = geometry
        .output_mpp
        .map_or(model_mpp, |(x, y)| (x + y) / 2.0);
    let separation = SeparationParams::at_mpp(image_mpp);
    let objects = |mask: &[u8]| {
        truth_instances
            .map(|truth| InstanceScores::of(truth, &instances_of(mask, w, h, &separation)))
    };
    Ok(ImageScores {
        image: item.path.clone(),
        model_mpp,
        resampled: !geometry.is_native(),
        raw: Confusion::of(&raw, &truth).scores(),
        postprocessed: Confusion::of(&cleaned, &truth).scores(),
        instances_raw: objects(&raw),
        instances_postprocessed: objects(&cleaned),
    })
}

/// What scale the images were scored at, in a sentence.
fn scale_note(images: &[ImageScores], train_mpp: Option<f64>) -> String {
    let resampled = images.iter().filter(|i| i.resampled).count();
    let trained = train_mpp.map_or("records no train_mpp".to_owned(), |m| {
        format!("was trained at {m:.4} µm/px")
    });
    format!(
        "the model {trained}; {resampled} of {} images resampled to its scale, the rest \
         predicted at their own pixels (taken to be at the model's scale where the image \
         records none and --mpp is not given)",
        images.len()
    )
}

/// Why the post-processed objects went unmatched, summed over the images (the causes of
/// [`MissCauses`]).
fn print_misses(m: &MissCauses) {
    println!(
        "unmatched postprocessed: predicted {}: {} on no true nucleus, {} merging nuclei, \
         {} part of a nucleus, {} outline off",
        m.predicted(),
        m.predicted_on_no_nucleus,
        m.predicted_merging,
        m.predicted_part,
        m.predicted_outline_off
    );
    println!(
        "                         true {}: {} not found, {} merged, {} split, {} too small, \
         {} outline off",
        m.truth(),
        m.true_not_found,
        m.true_merged,
        m.true_split,
        m.true_too_small,
        m.true_outline_off
    );
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
    print_instances_text(report);
}

/// The object scores: means, then one row per image with an instance map.
fn print_instances_text(report: &EvalReport) {
    println!();
    println!(
        "objects (instances/<stem>.png, touching nuclei split by watershed): {} of {} images scored",
        report.instance_images,
        report.images.len()
    );
    let (Some(raw), Some(post)) = (
        &report.mean_instances_raw,
        &report.mean_instances_postprocessed,
    ) else {
        return;
    };
    println!(
        "{:<13} {:>6} {:>6} {:>6} {:>6} {:>10} {:>7}  objects true/predicted/matched",
        "", "aji", "f1", "pq", "sq", "precision", "recall"
    );
    for (name, s) in [("raw", raw), ("postprocessed", post)] {
        println!(
            "{name:<13} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>10.4} {:>7.4}  {}/{}/{}",
            s.aji,
            s.f1,
            s.pq,
            s.sq,
            s.precision,
            s.recall,
            s.true_objects,
            s.predicted_objects,
            s.matched
        );
    }
    print_misses(&post.misses);
    let rows: Vec<(String, &ImageScores, &InstanceScores, &InstanceScores)> = report
        .images
        .iter()
        .filter_map(|image| {
            let name = image.image.file_stem()?.to_string_lossy().into_owned();
            Some((
                name,
                image,
                image.instances_raw.as_ref()?,
                image.instances_postprocessed.as_ref()?,
            ))
        })
        .collect();
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    println!();
    println!(
        "{:<width$} {:>13} {:>13} {:>13} {:>13}",
        "image", "dice raw/post", "aji raw/post", "f1 raw/post", "pq raw/post"
    );
    for (name, image, r, p) in rows {
        println!(
            "{name:<width$} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4}",
            image.raw.dice, image.postprocessed.dice, r.aji, p.aji, r.f1, p.f1, r.pq, p.pq
        );
    }
}
