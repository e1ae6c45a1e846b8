//! Splitting touching nuclei (`slidestream::watershed`), scored like `eval` scores objects:
//! AJI, object F1 and PQ against the true instance maps, mean over the images of a labeled
//! folder that have `instances/<stem>.png`, for
//!
//! - the **true binary mask** (`masks/`): its 8-connected components (what `eval` scored
//!   before the separation) and the watershed; the latter is the ceiling of any
//!   pixel-perfect mask under this separation;
//! - the **hematoxylin cut**, no labels: hematoxylin density above its per-image Otsu
//!   threshold (`label_free::hematoxylin_masks`), raw, and smoothed first (Gaussian σ = 2
//!   px) with holes filled, as the self-training teacher cuts it;
//!
//! - the self-training method's **stain teacher** (no labels) put through the finishing
//!   `segment` gives a self-training model's mask (stain re-cut, holes, opening and
//!   closing): what a trained student's objects must beat;
//!
//! then why each mask's objects miss (`eval`'s causes), how the scores move with each
//! parameter, and the separation's throughput (single thread, whole 1000×1000 images).
//!
//! `cargo bench --bench instances [-- DIR]` (default `../shared/data/monuseg-train`;
//! skipped with a message when the folder is absent).

use slidestream::gaussian::gaussian_smooth;
use slidestream::instance_scores::InstanceScores;
use slidestream::instances::{instance_map_path, read_instance_map};
use slidestream::model::Method;
use slidestream::morphology::fill_holes;
use slidestream::segment::{finish_whole_region, method_finishing};
use slidestream::stain::{hematoxylin, otsu_thresholds};
use slidestream::train::label_free::hematoxylin_masks;
use slidestream::train::stain_teacher::{stain_targets, IGNORE_BAND, TEACHER_SIGMA_PX};
use slidestream::train::LabeledFolder;
use slidestream::watershed::{
    distance_transform, flood, h_maxima, label_components, separate, SeparationParams,
};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

/// One image: its size, true instance map and the masks to separate.
struct Image {
    width: usize,
    height: usize,
    truth: Vec<u32>,
    masks: Vec<Vec<u8>>,
}

/// Smoothing of the hematoxylin density before the cut, px (as the stain teacher).
const DENSITY_SIGMA_PX: f32 = 2.0;

const MASKS: [&str; 4] = [
    "true mask",
    "hematoxylin > Otsu",
    "hematoxylin σ2 > Otsu, filled",
    "stain teacher, finished as `segment` finishes a self-training model",
];

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.to_kind(tch::Kind::Uint8).reshape([-1])).expect("u8 tensor")
}

fn load(data: &Path) -> anyhow::Result<Vec<Image>> {
    let set = LabeledFolder::open(data)?.labeled()?;
    // MoNuSeg's scale, as the label-free baselines bench.
    let finish = method_finishing(Method::SelfTraining, 0.25);
    let mut images = Vec::new();
    for item in &set.items {
        let Some(map) = instance_map_path(data, &item.path) else {
            continue;
        };
        let (height, width) = (item.mask.size()[0] as usize, item.mask.size()[1] as usize);
        let truth = read_instance_map(&map, width as u32, height as u32)?;
        let rgb = item.image_f32(Device::Cpu);
        let raw_cut = bytes(&hematoxylin_masks(&rgb));
        let density = Vec::<f32>::try_from(hematoxylin(&rgb).reshape([-1])).expect("f32");
        let smooth = gaussian_smooth(&density, width, height, DENSITY_SIGMA_PX);
        let cut = otsu_thresholds(&Tensor::from_slice(&smooth).view([1, -1])).double_value(&[0]);
        let mut filled: Vec<u8> = smooth
            .iter()
            .map(|&v| if f64::from(v) > cut { 255 } else { 0 })
            .collect();
        fill_holes(&mut filled, width, height);
        let teacher = stain_targets(&rgb, TEACHER_SIGMA_PX, IGNORE_BAND).target;
        let finished_teacher = finish_whole_region(&finish, &bytes(&teacher), &item.rgb_region());
        images.push(Image {
            width,
            height,
            truth,
            masks: vec![bytes(&item.mask), raw_cut, filled, finished_teacher],
        });
    }
    Ok(images)
}

/// Mean scores over the images of the objects `objects` makes of mask `which`.
fn mean(
    images: &[Image],
    which: usize,
    objects: impl Fn(&[u8], usize, usize) -> Vec<u32>,
) -> InstanceScores {
    let scores: Vec<InstanceScores> = images
        .iter()
        .map(|image| {
            let labels = objects(&image.masks[which], image.width, image.height);
            InstanceScores::of(&image.truth, &labels)
        })
        .collect();
    InstanceScores::mean(&scores).expect("at least one image")
}

fn row(name: &str, objects: &str, s: &InstanceScores) {
    println!(
        "| {name} | {objects} | {:.3} | {:.3} | {:.3} | {}/{} |",
        s.aji, s.f1, s.pq, s.predicted_objects, s.true_objects
    );
}

fn watershed(params: SeparationParams) -> impl Fn(&[u8], usize, usize) -> Vec<u32> {
    move |mask, width, height| separate(mask, width, height, &params).0
}

/// Best of `repeats` wall times of `work` over all images, seconds.
fn best_of(repeats: usize, mut work: impl FnMut()) -> f64 {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the first other argument is the folder.
    let data = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "../shared/data/monuseg-train".into());
    let dir = Path::new(&data);
    if !dir.join("instances").is_dir() {
        println!("skipped: {data}/instances not found (MoNuSeg with instance maps)");
        return Ok(());
    }
    let images = load(dir)?;
    anyhow::ensure!(!images.is_empty(), "{data}: no image has an instance map");
    let pixels: usize = images.iter().map(|i| i.width * i.height).sum();
    let defaults = SeparationParams::default();
    println!(
        "{} images with instance maps in {data}, {:.1} Mpx; watershed: σ {} px, h {} px, \
         min area {} px; objects above {} px again at h {} px; concave cuts {} px deep into \
         parts of {} px or more",
        images.len(),
        pixels as f64 / 1e6,
        defaults.sigma_px,
        defaults.h_px,
        defaults.min_area_px,
        defaults.large_area_px,
        defaults.large_h_px,
        defaults.cut_depth_px,
        defaults.cut_min_part_px
    );
    println!();
    println!("| mask | objects | AJI | F1 | PQ | predicted/true objects |");
    println!("|---|---|---|---|---|---|");
    let mut separated = Vec::with_capacity(MASKS.len());
    for (which, name) in MASKS.iter().enumerate() {
        row(
            name,
            "8-connected components",
            &mean(&images, which, |m, w, h| label_components(m, w, h).0),
        );
        let scores = mean(&images, which, watershed(defaults));
        row(name, "watershed", &scores);
        separated.push(scores);
    }

    println!();
    println!("Why the watershed's objects miss (`eval`'s causes, summed over the images):");
    println!();
    println!(
        "| mask | predicted: on no nucleus | merging | part | outline off \
         | true: not found | merged | split | too small | outline off |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, scores) in MASKS.iter().zip(&separated) {
        let m = scores.misses;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.predicted_on_no_nucleus,
            m.predicted_merging,
            m.predicted_part,
            m.predicted_outline_off,
            m.true_not_found,
            m.true_merged,
            m.true_split,
            m.true_too_small,
            m.true_outline_off
        );
    }

    println!();
    println!("Each parameter moved alone from the defaults:");
    println!();
    println!("| mask | parameter | AJI | F1 | PQ | predicted/true objects |");
    println!("|---|---|---|---|---|---|");
    for which in [0, 2] {
        let mut variants: Vec<(String, SeparationParams)> = Vec::new();
        for h_px in [0.5, 1.0, 2.0, 3.0] {
            variants.push((
                format!("h {h_px} px"),
                SeparationParams { h_px, ..defaults },
            ));
        }
        for sigma_px in [0.0, 0.5, 1.0, 2.0] {
            variants.push((
                format!("σ {sigma_px} px"),
                SeparationParams {
                    sigma_px,
                    ..defaults
                },
            ));
        }
        for min_area_px in [0, 30, 64, 96, 128, 160, 200] {
            variants.push((
                format!("min area {min_area_px} px"),
                SeparationParams {
                    min_area_px,
                    ..defaults
                },
            ));
        }
        for large_area_px in [1000, 1440, 2000, u32::MAX] {
            variants.push((
                match large_area_px {
                    u32::MAX => "no large-object pass".to_string(),
                    px => format!("large area {px} px"),
                },
                SeparationParams {
                    large_area_px,
                    ..defaults
                },
            ));
        }
        for large_h_px in [0.1, 0.2, 0.3] {
            variants.push((
                format!("large-object h {large_h_px} px"),
                SeparationParams {
                    large_h_px,
                    ..defaults
                },
            ));
        }
        for cut_min_part_px in [200, 300, 400, u32::MAX] {
            variants.push((
                match cut_min_part_px {
                    u32::MAX => "no concave cuts".to_string(),
                    px => format!("cut parts ≥ {px} px"),
                },
                SeparationParams {
                    cut_min_part_px,
                    ..defaults
                },
            ));
        }
        for cut_depth_px in [2.0, 3.0, 4.0] {
            variants.push((
                format!("cut depth {cut_depth_px} px"),
                SeparationParams {
                    cut_depth_px,
                    ..defaults
                },
            ));
        }
        for (label, params) in variants {
            row(
                MASKS[which],
                &label,
                &mean(&images, which, watershed(params)),
            );
        }
    }

    // Throughput, single thread, on the true masks (the densest realistic input).
    let repeats = 3;
    let time = |work: &dyn Fn(usize)| best_of(repeats, || (0..images.len()).for_each(work));
    let stage = |name: &str, seconds: f64| {
        println!(
            "| {name} | {:.1} | {:.1} |",
            seconds * 1e3 / images.len() as f64,
            pixels as f64 / 1e6 / seconds
        );
    };
    let size = |k: usize| (images[k].width, images[k].height);
    let mask = |k: usize| images[k].masks[0].as_slice();
    println!();
    println!("Throughput on the true masks, one thread, best of {repeats} (ms per image, Mpx/s):");
    println!();
    println!("| step | ms/image | Mpx/s |");
    println!("|---|---|---|");
    stage(
        "8-connected components (before)",
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(label_components(mask(k), w, h));
        }),
    );
    stage(
        "distance transform",
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(distance_transform(mask(k), w, h));
        }),
    );
    let distances: Vec<Vec<f32>> = (0..images.len())
        .map(|k| distance_transform(mask(k), size(k).0, size(k).1))
        .collect();
    stage(
        &format!("Gaussian σ {} px", defaults.sigma_px),
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(gaussian_smooth(&distances[k], w, h, defaults.sigma_px));
        }),
    );
    let smooth: Vec<Vec<f32>> = (0..images.len())
        .map(|k| gaussian_smooth(&distances[k], size(k).0, size(k).1, defaults.sigma_px))
        .collect();
    stage(
        &format!("h-maxima h {} px", defaults.h_px),
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(h_maxima(&smooth[k], mask(k), w, h, defaults.h_px));
        }),
    );
    let markers: Vec<Vec<u32>> = (0..images.len())
        .map(|k| {
            let (w, h) = size(k);
            label_components(&h_maxima(&smooth[k], mask(k), w, h, defaults.h_px), w, h).0
        })
        .collect();
    stage(
        "flood",
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(flood(&smooth[k], mask(k), &markers[k], w, h));
        }),
    );
    stage(
        "separate (all steps, with specks dropped)",
        time(&|k| {
            let (w, h) = size(k);
            std::hint::black_box(separate(mask(k), w, h, &defaults));
        }),
    );
    Ok(())
}
