//! `segment` end to end with nuclei split and measured (the default) against without
//! (`--no-separate --no-measurements`), side by side in one run.
//!
//! ```text
//! cargo bench --bench segment_nuclei -- [--size 16384] [--model RUN_DIR] [--rounds 2]
//!     [--data DIR]
//! ```
//!
//! Each slide (the CMU slide when `../shared` has it, and a synthetic `size`² slide made
//! once with `slidestream synth`) is segmented `rounds` times each way, alternating
//! (without, with, with, without, …) so that a load change on a shared machine does not
//! favour one side. Throughput is tissue megapixels per second of pipeline wall time,
//! from each run's summary; peak RSS is each process's. Without `--model` the threshold
//! baseline segments: the cheapest model, so the split and measurements weigh the most.

mod common;

use common::{run_json, slidestream, synthetic_slide};
use std::path::{Path, PathBuf};

struct Args {
    size: u64,
    model: Option<PathBuf>,
    rounds: usize,
    data: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        size: 16_384,
        model: None,
        rounds: 2,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/segment-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => args.size = value().parse().expect("--size N"),
            "--model" => args.model = Some(value().into()),
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--data" => args.data = value().into(),
            // `cargo bench` passes --bench; harness flags mean nothing here.
            _ => {}
        }
    }
    args
}

/// One run's throughput (tissue Mpx/s), peak RSS (MB) and nuclei count.
fn segment(slide: &Path, model: &[String], nuclei: bool, out: &Path) -> (f64, f64, u64) {
    let mut command = slidestream();
    command
        .args(["-q", "segment", "--json", "--no-overlay"])
        .args(model)
        .arg("--out")
        .arg(out)
        .arg(slide);
    if !nuclei {
        command.args(["--no-separate", "--no-measurements"]);
    }
    let summary = run_json(&mut command);
    (
        summary["timings"]["tissue_mpx_per_s"].as_f64().unwrap(),
        summary["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        summary["nuclei"]["count"].as_u64().unwrap(),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

fn main() {
    let args = parse_args();
    let model = match &args.model {
        Some(run) => vec!["--model".to_owned(), run.display().to_string()],
        None => vec!["--baseline".to_owned(), "threshold".to_owned()],
    };
    let out = args.data.join("out-nuclei");
    std::fs::create_dir_all(&out).unwrap();
    let mut slides = Vec::new();
    let cmu = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/slides/CMU-1-Small-Region.svs");
    if cmu.exists() {
        slides.push(("CMU-1-Small-Region".to_owned(), cmu));
    }
    slides.push((
        format!("synthetic {}²", args.size),
        synthetic_slide(&args.data, args.size, 0.55),
    ));
    println!(
        "segment, nuclei split + measured vs not: {} , {} rounds each way",
        model.join(" "),
        args.rounds
    );
    println!(
        "{:>22} | {:>24} | {:>24} | ratio",
        "slide", "without: Mpx/s, RSS MB", "with: Mpx/s, RSS MB"
    );
    for (name, slide) in &slides {
        let (mut plain, mut nuclei) = (Vec::new(), Vec::new());
        let (mut plain_rss, mut nuclei_rss) = (0f64, 0f64);
        let mut counts = (0, 0);
        for round in 0..args.rounds {
            // Alternate which side goes first.
            for with in [round % 2 == 1, round % 2 == 0] {
                let (rate, rss, count) = segment(slide, &model, with, &out.join("mask.tif"));
                if with {
                    nuclei.push(rate);
                    nuclei_rss = nuclei_rss.max(rss);
                    counts.1 = count;
                } else {
                    plain.push(rate);
                    plain_rss = plain_rss.max(rss);
                    counts.0 = count;
                }
            }
        }
        let (a, b) = (median(&mut plain), median(&mut nuclei));
        println!(
            "{name:>22} | {a:>12.2} {plain_rss:>11.0} | {b:>12.2} {nuclei_rss:>11.0} | {:.2}",
            b / a
        );
        println!(
            "{:>22}   nuclei: {} components without, {} split nuclei with",
            "", counts.0, counts.1
        );
    }
}
