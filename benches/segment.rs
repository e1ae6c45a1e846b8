//! End-to-end segmentation throughput against the model alone, and peak memory by slide size.
//!
//! ```text
//! cargo bench --bench segment -- [--size 32768] [--mem-sizes 32768,65536]
//!     [--mem-coverage 0.02] [--mode all|throughput|memory|model] [--model RUN_DIR]
//!     [--device cpu|cuda] [--tile N] [--batch N] [--data DIR]
//! ```
//!
//! `throughput` times, in one run and on the same machine:
//! * **model only**: `Predictor::predict` on batches of tiles already in memory (the
//!   pipeline's tile size and halo), counted in core megapixels, so it is the ceiling the
//!   pipeline can reach;
//! * **end to end**: `slidestream segment` on a `size`² synthetic slide and on the CMU slide
//!   (tissue megapixels per second of pipeline wall time, from the summary JSON).
//!
//! Their ratio says how much of the decode, post-processing and writing the pipeline
//! hides behind the model. `memory` segments synthetic slides of each `mem-sizes`² (2 %
//! tissue by default, `--mem-coverage`, to bound the run time on CPU; buffers scale with
//! width and tile, not tissue) and reports each process's peak RSS.
//!
//! Without `--model`, an untrained network with seeded weights is used: the work per
//! pixel does not depend on the weights.

mod common;

use common::{run_json, slidestream, synthetic_slide};
use slidestream::model::{
    save_run, Architecture, ConfidenceNet, InputNormalisation, Method, ModelCard,
};
use slidestream::segment::{Predictor, SegmentOptions, Window};
use slidestream::slide::RgbRegion;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Args {
    size: u64,
    mem_sizes: Vec<u64>,
    mem_coverage: f32,
    mode: String,
    model: Option<PathBuf>,
    device: String,
    tile: u32,
    batch: Option<usize>,
    data: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        size: 32_768,
        mem_sizes: vec![32_768, 65_536],
        mem_coverage: 0.02,
        mode: "all".into(),
        model: None,
        device: "cpu".into(),
        tile: 0,
        batch: None,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/segment-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => args.size = value().parse().expect("--size N"),
            "--mem-sizes" => {
                args.mem_sizes = value()
                    .split(',')
                    .map(|s| s.parse().expect("--mem-sizes N,M"))
                    .collect()
            }
            "--mem-coverage" => args.mem_coverage = value().parse().expect("--mem-coverage F"),
            "--mode" => args.mode = value(),
            "--model" => args.model = Some(value().into()),
            "--device" => args.device = value(),
            "--tile" => args.tile = value().parse().expect("--tile N"),
            "--batch" => args.batch = Some(value().parse().expect("--batch N")),
            "--data" => args.data = value().into(),
            // `cargo bench` passes --bench; harness flags mean nothing here.
            _ => {}
        }
    }
    args
}

/// A run directory with a seeded, untrained network.
fn untrained_run(data: &Path) -> PathBuf {
    let run = data.join("untrained-run");
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = ConfidenceNet::new(&vs.root(), 4, 0.05);
    let card = ModelCard {
        architecture: Architecture::ConfidenceNet,
        method: Method::Contrastive,
        channels: 4,
        channel: 0,
        threshold: 0.5,
        input_normalisation: InputNormalisation::Epsilon { epsilon: 0.05 },
        epoch: None,
        val_dice: vec![],
        seed: 0,
        data: "untrained (benchmark)".into(),
        slidestream_version: env!("CARGO_PKG_VERSION").into(),
        train_mpp: Some(0.25),
        selection: None,
        hematoxylin_agreement: Vec::new(),
        width: None,
        stain_calibration: None,
    };
    save_run(&run, Some(&vs), &card).unwrap();
    run
}

/// Core megapixels per second of the model alone, on one tile read from the middle of
/// `slide` (content can matter on CPU) and repeated.
fn model_only(run: &Path, device: tch::Device, options: &SegmentOptions, slide: &Path) -> f64 {
    let predictor = Predictor::from_run(run, device, None, None).unwrap();
    let reach = slidestream::morphology::POSTPROCESS_REACH;
    let halo = predictor.receptive_radius() + reach;
    let side = options.tile + 2 * halo;
    let slide = slidestream::slide::open(slide).unwrap();
    let (width, height) = slide.dimensions();
    let tile: RgbRegion = slide
        .read_region(
            0,
            (width / 2) as i64 - i64::from(side / 2),
            (height / 2) as i64 - i64::from(side / 2),
            side,
            side,
        )
        .unwrap();
    let tiles: Vec<&RgbRegion> = vec![&tile; options.batch];
    let window = Window {
        x: halo - reach,
        y: halo - reach,
        width: options.tile + 2 * reach,
        height: options.tile + 2 * reach,
    };
    let windows = vec![window; options.batch];
    predictor.predict(&tiles, &windows, 1.0); // warm-up: kernel selection, allocations
    let batches = 4;
    let started = Instant::now();
    for _ in 0..batches {
        predictor.predict(&tiles, &windows, 1.0);
    }
    let core_mpx = (batches * options.batch) as f64 * f64::from(options.tile).powi(2) / 1e6;
    core_mpx / started.elapsed().as_secs_f64()
}

fn segment(slide: &Path, run: &Path, options: &CliOptions, out: &Path) -> serde_json::Value {
    run_json(
        slidestream()
            .args(["-q", "segment", "--json", "--device", &options.device])
            .args([
                "--tile",
                &options.tile.to_string(),
                "--batch",
                &options.batch.to_string(),
            ])
            .arg("--model")
            .arg(run)
            .arg("--out")
            .arg(out)
            .arg(slide),
    )
}

/// The `segment` flags every end-to-end run uses, equal to the model-only settings.
struct CliOptions {
    device: String,
    tile: u32,
    batch: usize,
}

fn report_segment(label: &str, summary: &serde_json::Value) -> f64 {
    let t = &summary["timings"];
    let rate = t["tissue_mpx_per_s"].as_f64().unwrap();
    println!(
        "{label:>28}: {:.0} Mpx tissue in {:.1} s = {rate:.2} Mpx/s; peak RSS {:.0} MB; \
         bottleneck {}",
        t["tissue_mpx"].as_f64().unwrap(),
        t["pipeline_s"].as_f64().unwrap(),
        summary["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        summary["stages"]["bottleneck"]
    );
    rate
}

/// Runs `end_to_end` between two model-only measurements on tiles of the same slide and
/// returns (end-to-end rate, mean model-only rate): bracketing keeps a load change on a
/// shared machine from skewing the ratio one way.
fn side_by_side(
    slide: &Path,
    label: &str,
    model_only: impl Fn() -> f64,
    end_to_end: impl FnOnce() -> serde_json::Value,
) -> (f64, f64) {
    let before = model_only();
    let rate = report_segment(label, &end_to_end());
    let after = model_only();
    let name = slide.file_name().unwrap_or_default().to_string_lossy();
    println!(
        "{:>28}: {before:.2} before, {after:.2} after Mpx/s (core pixels)",
        format!("model only, {name}")
    );
    (rate, (before + after) / 2.0)
}

fn main() {
    slidestream::device::load_cuda_backend();
    slidestream::allocator::keep_freed_memory();
    slidestream::allocator::flush_subnormals();
    let args = parse_args();
    let device = match args.device.as_str() {
        "cuda" => tch::Device::Cuda(0),
        _ => tch::Device::Cpu,
    };
    let run = args
        .model
        .clone()
        .unwrap_or_else(|| untrained_run(&args.data));
    let defaults = SegmentOptions::for_device(device);
    let options = SegmentOptions {
        batch: args.batch.unwrap_or(defaults.batch),
        tile: if args.tile > 0 {
            args.tile
        } else {
            defaults.tile
        },
        ..defaults
    };
    let cli = CliOptions {
        device: args.device.clone(),
        tile: options.tile,
        batch: options.batch,
    };
    println!(
        "segment benchmark: device {}, tile {}, batch {}, torch threads {}",
        args.device,
        options.tile,
        options.batch,
        tch::get_num_threads()
    );
    let out = args.data.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cmu = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/slides/CMU-1-Small-Region.svs");
    if matches!(args.mode.as_str(), "all" | "throughput") {
        let slide = synthetic_slide(&args.data, args.size, 0.55);
        let label = format!("end to end, synthetic {}²", args.size);
        let (synthetic, model) = side_by_side(
            &slide,
            &label,
            || model_only(&run, device, &options, &slide),
            || segment(&slide, &run, &cli, &out.join("s.tif")),
        );
        let cmu_rate = cmu.exists().then(|| {
            let (e2e, model) = side_by_side(
                &cmu,
                "end to end, CMU-1-Small-Region",
                || model_only(&run, device, &options, &cmu),
                || segment(&cmu, &run, &cli, &out.join("cmu.tif")),
            );
            e2e / model
        });
        println!(
            "end to end / model only: synthetic {:.2}",
            synthetic / model
        );
        if let Some(ratio) = cmu_rate {
            println!("end to end / model only: CMU {ratio:.2}");
        }
    }
    if matches!(args.mode.as_str(), "all" | "memory") {
        for &size in &args.mem_sizes {
            let slide = synthetic_slide(&args.data, size, args.mem_coverage);
            let label = format!(
                "memory, synthetic {size}² ({:.0} % tissue)",
                args.mem_coverage * 100.0
            );
            report_segment(&label, &segment(&slide, &run, &cli, &out.join("m.tif")));
        }
    }
}
