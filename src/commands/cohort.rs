//! `slidestream cohort`: segment many slides, isolating failures, resuming reruns, writing
//! report.csv / report.json / report.html.

use super::segment::ModelArgs;
use crate::cohort::{
    collect_report, inputs, run_cohort, CohortError, CohortOptions, CohortReport, Layout,
    Segmenter, Shard,
};
use crate::pipeline::CancelToken;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct CohortArgs {
    /// Slides: files, folders (searched recursively for svs, ndpi, tif, tiff, mrxs, scn, bif,
    /// vms, dcm; a folder of .dcm files is one DICOM slide) and manifests (CSV with a `path`
    /// column and an optional `id` column; relative paths are relative to the manifest).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder: slides/NAME.tif (+ NAME.json, NAME.overlay.png, NAME.geojson, or
    /// NAME.error.json for a failed slide), report.csv, report.json and report.html (a page
    /// for a browser, self-contained, failed slides first). NAME is the slide's id
    /// (manifest) or file stem, made file-safe and unique.
    #[arg(long)]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Slides segmented at once. They share one model (batches take turns on the device)
    /// and split the CPU cores between their decode/post workers.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub jobs: usize,
    /// Give up on a slide after this many seconds (recorded as failed: "timed out"); the
    /// cohort goes on. Default: no limit.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Take only shard I of N (1-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/N`: every slide
    /// is in exactly one shard, by a stable hash of its name. Reports go to
    /// report-shard-I-of-N.*; `--report-only` without --shard merges them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Redo every slide, even those already complete for this model and settings.
    #[arg(long, conflicts_with = "report_only")]
    pub force: bool,
    /// Run only the slide(s) with this output NAME (repeatable); used by the Snakemake
    /// workflow, one job per slide.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Write report.csv/report.json/report.html here instead of --out-dir.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Segment nothing: rebuild the report from the per-slide files in --out-dir (done,
    /// failed or pending per slide), e.g. to merge shards or Snakemake jobs (without
    /// --shard: every slide of the inputs).
    #[arg(long, conflicts_with = "list")]
    pub report_only: bool,
    /// Segment nothing, write nothing: print each slide's output NAME, id and path (JSON
    /// with --json).
    #[arg(long)]
    pub list: bool,
    /// Print the report as JSON instead of the summary table.
    #[arg(long)]
    pub json: bool,
}

/// `--jobs`: checked when the arguments are parsed, so that a pipeline's `--dry-run`
/// refuses `jobs = 0` naming the file and key, not only the run itself.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: &CohortArgs, show_progress: bool, cancel: &CancelToken) -> anyhow::Result<()> {
    if args.timeout.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err(CohortError::InvalidOption(
            "--timeout must be a positive number of seconds, e.g. --timeout 3600".to_owned(),
        )
        .into());
    }
    let layout = Layout::new(&args.out_dir, args.report_dir.as_deref());
    let mut entries = inputs::collect(&args.inputs, &args.out_dir)?;
    if !args.only.is_empty() {
        let unknown: Vec<&String> = args
            .only
            .iter()
            .filter(|n| !entries.iter().any(|e| &&e.name == n))
            .collect();
        if !unknown.is_empty() {
            return Err(CohortError::InvalidOption(format!(
                "--only {unknown:?}: no slide of the inputs has this name; `--list` shows them"
            ))
            .into());
        }
        entries.retain(|e| args.only.contains(&e.name));
    }
    let entries = inputs::shard(entries, args.shard);
    if args.list {
        if args.json {
            super::print_json(&entries)?;
        } else {
            for e in &entries {
                println!("{}\t{}\t{}", e.name, e.id, e.path.display());
            }
        }
        return Ok(());
    }
    if entries.is_empty() {
        return Err(CohortError::Empty(format!(
            "the inputs {:?}{} hold no slide files",
            args.inputs,
            args.shard
                .map(|s| format!(" (shard {s})"))
                .unwrap_or_default()
        ))
        .into());
    }
    // Before any work: the output folder must be writable.
    layout.prepare()?;
    for (id, name) in inputs::renamed(&entries) {
        tracing::info!(id, name, "output name changed to stay safe and unique");
    }

    let predictor = args.model.predictor()?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let jobs = args.jobs.min(entries.len()).max(1);
    let workers = (cores / jobs).max(1);
    let options = args.model.options(&predictor, workers, false)?;
    let segmenter = Arc::new(Segmenter {
        predictor: Arc::new(predictor),
        options,
        open: args.model.open_options(),
        level: args.model.level,
    });
    let report = if args.report_only {
        collect_report(&entries, &layout, &segmenter, args.shard)?
    } else {
        let options = CohortOptions {
            jobs: args.jobs,
            timeout: args.timeout.map(Duration::from_secs_f64),
            force: args.force,
            show_progress,
            shard: args.shard,
        };
        run_cohort(entries, &layout, segmenter, &options, cancel)?
    };
    if args.json {
        super::print_json(&report)?;
    } else {
        print_table(&report);
    }
    let shard = args.shard;
    let counts = report.counts;
    if cancel.is_cancelled() && counts.cancelled > 0 {
        return Err(crate::pipeline::PipelineError::Cancelled.into());
    }
    let unfinished = counts.failed + counts.pending + counts.cancelled;
    if unfinished > 0 {
        return Err(CohortError::SlidesFailed {
            failed: unfinished,
            total: counts.total,
            report: CohortReport::json_path(&layout, shard),
        }
        .into());
    }
    Ok(())
}

/// The terminal summary: every slide when there are few, else the failed ones, then totals.
pub fn print_table(report: &CohortReport) {
    let many = report.slides.len() > 40;
    println!(
        "{:<28} {:<9} {:>6} {:>8} {:>7} {:>8} {:>7}  error",
        "slide", "status", "tiles", "nuclei", "area%", "seconds", "Mpx/s"
    );
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    for row in &report.slides {
        if many && row.status.is_complete() {
            continue;
        }
        let mut name = row.name.clone();
        if name.chars().count() > 28 {
            name = name.chars().take(27).collect::<String>() + "…";
        }
        println!(
            "{:<28} {:<9} {:>6} {:>8} {:>7} {:>8} {:>7}  {}",
            name,
            row.status.to_string(),
            show(row.tiles.map(|t| t.to_string())),
            show(row.nuclei.map(|n| n.to_string())),
            show(row.area_fraction.map(|a| format!("{:.2}", a * 100.0))),
            show(row.seconds.map(|s| format!("{s:.1}"))),
            show(row.mpx_per_s.map(|m| format!("{m:.1}"))),
            row.error.as_deref().unwrap_or("")
        );
    }
    let c = report.counts;
    println!(
        "{} slides: {} done, {} skipped (already complete), {} failed, {} cancelled, {} pending; \
         {}",
        c.total,
        c.done,
        c.skipped,
        c.failed,
        c.cancelled,
        c.pending,
        report.throughput()
    );
}
