//! Classical baselines on a labeled folder, scored like `eval` (mean over images of
//! per-image scores, raw and after `segment`'s post-processing), side by side:
//!
//! - hematoxylin density (colour deconvolution) above its **per-image** Otsu threshold: no
//!   labels, no training, one threshold per image (per slide, for whole slides);
//! - the same with **one** Otsu threshold pooled over all images;
//! - luma below its per-image Otsu threshold: no labels, no colour;
//! - the self-training method's stain teacher: hematoxylin smoothed, cut at its per-image
//!   Otsu threshold, holes filled, each object re-cut half-way between its density and its
//!   surroundings', holes filled again; and the same finished as `segment` finishes a
//!   self-training model's mask (stain re-cut, holes filled, opening and closing), the
//!   fair match for what `segment` writes with a trained student;
//! - the paper's intensity threshold: the global luma threshold fit **on the masks**
//!   (`train --method threshold`).
//!
//! `cargo bench --bench label_free_baselines [-- DIR]` (default `../shared/data/monuseg-train`).

use slidestream::model::{luma, Method};
use slidestream::morphology::postprocess;
use slidestream::scores::{Confusion, Scores};
use slidestream::segment::{finish_whole_region, method_finishing};
use slidestream::stain::{hematoxylin, otsu_thresholds};
use slidestream::train::stain_teacher::{stain_targets, IGNORE_BAND, TEACHER_SIGMA_PX};
use slidestream::train::{fit_gray_threshold, Labeled, LabeledFolder};
use tch::{Device, Tensor};

/// One label-free map per image (H×W f32); foreground is above (or, for luma, below) a cut.
struct Maps {
    name: &'static str,
    values: Vec<Vec<f32>>,
    foreground_is_high: bool,
}

impl Maps {
    fn relation(&self) -> &'static str {
        if self.foreground_is_high {
            ">"
        } else {
            "<"
        }
    }
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.reshape([-1])).expect("f32 tensor")
}

/// Mean raw and post-processed scores of `masks` (one per image, 0/1) against the truth.
fn score(items: &[Labeled], masks: &[Vec<u8>]) -> (Scores, Scores) {
    let (mut raw, mut cleaned) = (Vec::new(), Vec::new());
    for (item, mask) in items.iter().zip(masks) {
        let (height, width) = (item.mask.size()[0] as usize, item.mask.size()[1] as usize);
        let truth =
            Vec::<u8>::try_from(item.mask.to_kind(tch::Kind::Uint8).view([-1])).expect("mask");
        raw.push(Confusion::of(mask, &truth).scores());
        cleaned.push(Confusion::of(&postprocess(mask, width, height), &truth).scores());
    }
    (Scores::mean(&raw), Scores::mean(&cleaned))
}

fn otsu(values: &[f32]) -> f32 {
    otsu_thresholds(&Tensor::from_slice(values).view([1, -1])).double_value(&[0]) as f32
}

fn cut(values: &[f32], threshold: f32, high: bool) -> Vec<u8> {
    values
        .iter()
        .map(|&v| u8::from(if high { v > threshold } else { v < threshold }))
        .collect()
}

fn print_row(name: &str, (raw, cleaned): (Scores, Scores)) {
    println!(
        "| {name} | {:.4} | {:.4} | {:.4} | {:.4} |",
        raw.dice, raw.precision, raw.recall, cleaned.dice
    );
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the first other argument is the folder.
    let data = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "../shared/data/monuseg-train".into());
    let set = LabeledFolder::open(std::path::Path::new(&data))?.labeled()?;
    anyhow::ensure!(!set.items.is_empty(), "{data}: no images with masks");
    let images: Vec<Tensor> = set
        .items
        .iter()
        .map(|item| item.image_f32(Device::Cpu))
        .collect();
    let maps = [
        Maps {
            name: "hematoxylin",
            values: images.iter().map(|i| floats(&hematoxylin(i))).collect(),
            foreground_is_high: true,
        },
        Maps {
            name: "luma",
            values: images.iter().map(|i| floats(&luma(i))).collect(),
            foreground_is_high: false,
        },
    ];
    println!("{} images of {data}", set.items.len());
    println!("| baseline | raw Dice | precision | recall | post-processed Dice |");
    println!("|---|---|---|---|---|");
    for map in &maps {
        let per_image: Vec<Vec<u8>> = map
            .values
            .iter()
            .map(|v| cut(v, otsu(v), map.foreground_is_high))
            .collect();
        print_row(
            &format!("{} {} per-image Otsu (no labels)", map.name, map.relation()),
            score(&set.items, &per_image),
        );
        let pooled = otsu(&map.values.concat());
        let global: Vec<Vec<u8>> = map
            .values
            .iter()
            .map(|v| cut(v, pooled, map.foreground_is_high))
            .collect();
        print_row(
            &format!(
                "{} {} one pooled Otsu {pooled:.4} (no labels)",
                map.name,
                map.relation()
            ),
            score(&set.items, &global),
        );
    }
    // The self-training method's teacher on whole images: smoothed, cut, holes filled, each
    // object re-cut at its own level (its ignore band only matters for the loss).
    let teacher: Vec<Vec<u8>> = images
        .iter()
        .map(|image| {
            let targets = stain_targets(image, TEACHER_SIGMA_PX, IGNORE_BAND);
            floats(&targets.target).iter().map(|&v| v as u8).collect()
        })
        .collect();
    print_row(
        &format!(
            "stain teacher: hematoxylin σ {TEACHER_SIGMA_PX} px > per-image Otsu, objects re-cut at their own level, holes filled (no labels)"
        ),
        score(&set.items, &teacher),
    );
    print_finished_row(
        "stain teacher, finished as `segment` finishes a self-training model (no labels)",
        &set.items,
        &teacher,
    );
    let fit = fit_gray_threshold(&set);
    let fitted: Vec<Vec<u8>> = maps[1]
        .values
        .iter()
        .map(|v| cut(v, fit.threshold as f32, false))
        .collect();
    print_row(
        &format!("luma < {:.4} fit on the masks (paper)", fit.threshold),
        score(&set.items, &fitted),
    );
    Ok(())
}

/// The raw Dice, precision and recall of `masks` after the finishing `segment` gives a
/// self-training model's masks (at MoNuSeg's 0.25 µm/px), each re-cut by its own image's
/// hematoxylin density; the last column repeats the finished Dice.
fn print_finished_row(name: &str, items: &[Labeled], masks: &[Vec<u8>]) {
    const MPP: f64 = 0.25;
    let finish = method_finishing(Method::SelfTraining, MPP);
    let finished: Vec<Vec<u8>> = items
        .iter()
        .zip(masks)
        .map(|(item, mask)| finish_whole_region(&finish, mask, &item.rgb_region()))
        .collect();
    let (finished, _) = score(items, &finished);
    print_row(name, (finished, finished));
}
