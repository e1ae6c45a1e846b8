//! Cohort runs: many slides through the segment pipeline, a bad slide never stopping the
//! rest, reruns resuming where the last one stopped.
//!
//! ```text
//! inputs (files, folders, manifests) ─► entries (safe unique names) ─► shard ─► skip done
//!   ─► tokio scheduler: ≤ jobs slides in flight, each segment_slide on a blocking thread
//!      with a child CancelToken (Ctrl-C, per-slide timeout) ─► rows ─► report.csv/json/html
//! ```
//!
//! tokio only orchestrates (which slide runs when, timeouts, joining); the pixels go through
//! each slide's own staged pipeline on threads. All slides share one [`Predictor`].
//!
//! **Outputs and resuming.** Slide `NAME` writes `OUT/slides/NAME.tif` (+ `.overlay.png`,
//! `.geojson`) and, last and atomically, `NAME.json`, the summary that marks it complete.
//! A slide counts as done when `NAME.json` exists, names the same slide, the same model
//! and the same settings, and the files it lists exist; anything else is redone (its old
//! `NAME.json` is removed first, so a half-redone slide is never taken for done). A failed
//! slide leaves `NAME.error.json`. Files are written as `*.partial` and renamed when
//! complete; `*.partial` files a killed run left behind are removed before the slide runs
//! again, and are never read as outputs.

pub mod html;
pub mod inputs;
mod report;

pub use inputs::{Entry, Shard};
pub use report::{CohortReport, Counts, SlideRow, Status};

use crate::output_path::check_outputs;
use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::segment::{output_files, plan_geometry, Settings};
use crate::segment::{segment_slide, sidecar_path, Predictor, SegmentError, SegmentOptions};
use crate::slide::geometry::Geometry;
use crate::slide::{open_with, OpenOptions, Slide};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Failures of the cohort as a whole (a failing slide is not one: it is a row).
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("--out-dir {path}: {message}")]
    OutDir { path: PathBuf, message: String },
    #[error("no slides to segment: {0}")]
    Empty(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("cannot write the report {path}: {message}")]
    Report { path: PathBuf, message: String },
    #[error("cannot start the scheduler: {0}")]
    Runtime(std::io::Error),
    /// Some slides failed; the report lists them. Exit code 3.
    #[error("{failed} of {total} slide(s) failed (see {report})")]
    SlidesFailed {
        failed: usize,
        total: usize,
        report: PathBuf,
    },
}

impl CohortError {
    /// The invocation is at fault (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Input { .. }
                | Self::Manifest { .. }
                | Self::OutDir { .. }
                | Self::Empty(_)
                | Self::InvalidOption(_)
        )
    }
}

/// Where a cohort's files go.
#[derive(Debug, Clone)]
pub struct Layout {
    pub out_dir: PathBuf,
    /// Per-slide outputs: `out_dir/slides`.
    pub slides_dir: PathBuf,
    /// report.csv / report.json (or `report-shard-I-of-N.*`) go here.
    pub report_dir: PathBuf,
}

impl Layout {
    pub fn new(out_dir: &Path, report_dir: Option<&Path>) -> Self {
        Self {
            out_dir: out_dir.to_path_buf(),
            slides_dir: out_dir.join("slides"),
            report_dir: report_dir.unwrap_or(out_dir).to_path_buf(),
        }
    }

    pub fn mask(&self, entry: &Entry) -> PathBuf {
        self.slides_dir.join(format!("{}.tif", entry.name))
    }

    pub fn error_file(&self, entry: &Entry) -> PathBuf {
        self.slides_dir.join(format!("{}.error.json", entry.name))
    }

    /// Every file slide `entry` may write, final names.
    fn outputs(&self, entry: &Entry) -> Vec<PathBuf> {
        let mask = self.mask(entry);
        vec![
            sidecar_path(&mask, ".json"),
            sidecar_path(&mask, ".overlay.png"),
            sidecar_path(&mask, ".geojson"),
            self.error_file(entry),
            mask,
        ]
    }

    /// Creates the folders and proves they are writable, before any work starts.
    pub fn prepare(&self) -> Result<(), CohortError> {
        for dir in [&self.out_dir, &self.slides_dir, &self.report_dir] {
            let fail = |message: String| CohortError::OutDir {
                path: dir.clone(),
                message,
            };
            std::fs::create_dir_all(dir).map_err(|e| {
                fail(format!(
                    "cannot create it ({e}); choose a folder you can write to"
                ))
            })?;
            let probe = dir.join(format!(".slidestream-write-test-{}", std::process::id()));
            let written = std::fs::write(&probe, b"ok");
            // A full disk creates the file and then fails to fill it: remove it either way.
            let _ = std::fs::remove_file(&probe);
            written.map_err(|e| fail(format!("cannot write there ({e}); {}", write_advice(&e))))?;
        }
        Ok(())
    }

    /// Removes the `*.partial` files an interrupted or killed run left for `entry`.
    pub fn remove_partials(&self, entry: &Entry) {
        for output in self.outputs(entry) {
            let Some(partial) = crate::atomic_file::partial_path(&output) else {
                continue;
            };
            match std::fs::remove_file(&partial) {
                Ok(()) => tracing::info!(
                    file = %partial.display(),
                    "removed a partial file left by an interrupted run"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    file = %partial.display(),
                    "cannot remove a partial file: {e}"
                ),
            }
        }
    }
}

/// The model and settings every slide is segmented with.
pub struct Segmenter {
    pub predictor: Arc<Predictor>,
    pub options: SegmentOptions,
    pub open: OpenOptions,
    /// Output level; the model runs at `options.target`.
    pub level: usize,
}

impl Segmenter {
    /// The `settings` a complete `NAME.json` of this run records.
    pub fn settings(&self) -> Settings {
        Settings {
            tile: self.options.tile,
            batch: self.options.batch,
            postprocess: self.options.postprocess,
            all_tiles: self.options.all_tiles,
            min_nucleus_area_um2: self.options.min_nucleus_area_um2,
            level: self.level,
            target_mpp: self.options.target,
            mpp: self.options.mpp,
            separate: self.options.separate,
            measure: self.options.measure,
        }
    }

    fn geometry(&self, slide: &dyn Slide) -> Result<Geometry, SegmentError> {
        plan_geometry(
            slide,
            self.level,
            self.options.target,
            self.options.mpp,
            self.predictor.card().train_mpp,
        )
    }
}

/// How the cohort runs.
#[derive(Debug, Clone)]
pub struct CohortOptions {
    /// Slides in flight at once.
    pub jobs: usize,
    /// Per-slide wall-clock limit.
    pub timeout: Option<Duration>,
    /// Redo slides that are already done.
    pub force: bool,
    pub show_progress: bool,
    pub shard: Option<Shard>,
}

/// Runs `entries` (already sharded) and writes the report. Returns the report whether or
/// not slides failed; `Err` only for the cohort itself (report unwritable, no runtime).
pub fn run_cohort(
    entries: Vec<Entry>,
    layout: &Layout,
    segmenter: Arc<Segmenter>,
    options: &CohortOptions,
    cancel: &CancelToken,
) -> Result<CohortReport, CohortError> {
    let started = Instant::now();
    let settings = segmenter.settings();
    let mut rows: Vec<Option<SlideRow>> = vec![None; entries.len()];
    let mut todo = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        layout.remove_partials(entry);
        let done = (!options.force)
            .then(|| report::completed(entry, layout, &segmenter, &settings))
            .flatten();
        match done {
            Some(row) => rows[index] = Some(row),
            None => todo.push(index),
        }
    }
    let skipped = entries.len() - todo.len();
    tracing::info!(
        slides = entries.len(),
        to_do = todo.len(),
        skipped,
        jobs = options.jobs,
        "cohort starting"
    );

    // Two bars, slides and megapixels; a MultiProgress would draw hidden bars, so only
    // visible ones join it.
    let quiet = !options.show_progress;
    let mut slides_bar = progress_bar("slides", Some(todo.len() as u64), quiet);
    let mut pixels_bar = progress_bar("Mpx", None, quiet);
    let _multi = (!slides_bar.is_hidden()).then(|| {
        let multi = indicatif::MultiProgress::new();
        slides_bar = multi.add(slides_bar.clone());
        pixels_bar = multi.add(pixels_bar.clone());
        multi
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(CohortError::Runtime)?;
    let results = runtime.block_on(schedule(
        &entries,
        &todo,
        layout,
        &segmenter,
        options,
        cancel,
        &slides_bar,
        &pixels_bar,
    ));
    slides_bar.finish_and_clear();
    pixels_bar.finish_and_clear();
    for (index, row) in results {
        rows[index] = Some(row);
    }
    let rows: Vec<SlideRow> = rows
        .into_iter()
        .zip(&entries)
        .map(|(row, entry)| row.unwrap_or_else(|| SlideRow::new(entry, Status::Cancelled)))
        .collect();
    let report = CohortReport::new(
        rows,
        segmenter.predictor.source().to_owned(),
        settings,
        options.shard,
        started.elapsed().as_secs_f64(),
    );
    report.write(layout, options.shard)?;
    Ok(report)
}

/// Keeps at most `jobs` slides in flight; returns each one's row by entry index.
#[allow(clippy::too_many_arguments)]
async fn schedule(
    entries: &[Entry],
    todo: &[usize],
    layout: &Layout,
    segmenter: &Arc<Segmenter>,
    options: &CohortOptions,
    cancel: &CancelToken,
    slides_bar: &indicatif::ProgressBar,
    pixels_bar: &indicatif::ProgressBar,
) -> Vec<(usize, SlideRow)> {
    let mut running = tokio::task::JoinSet::new();
    let mut results = Vec::with_capacity(todo.len());
    let mut next = todo.iter().copied();
    loop {
        while running.len() < options.jobs.max(1) && !cancel.is_cancelled() {
            let Some(index) = next.next() else { break };
            let entry = entries[index].clone();
            let layout = layout.clone();
            let segmenter = Arc::clone(segmenter);
            let token = cancel.child();
            let timeout = options.timeout;
            running.spawn(async move {
                (
                    index,
                    run_slide(entry, layout, segmenter, token, timeout).await,
                )
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        // The tasks catch their own panics; a JoinError here would be a scheduler bug.
        let (index, row) = joined.expect("slide tasks do not panic");
        slides_bar.inc(1);
        if let Some(mpx) = row.mpx {
            pixels_bar.inc(mpx.round() as u64);
        }
        let seconds = row.seconds.map_or(0.0, |s| (s * 100.0).round() / 100.0);
        match &row.error {
            None => {
                tracing::info!(slide = %row.name, status = %row.status, seconds, "slide finished")
            }
            Some(error) => tracing::warn!(
                slide = %row.name,
                status = %row.status,
                seconds,
                error = %error,
                "slide finished"
            ),
        }
        results.push((index, row));
    }
    results
}

/// One slide on a blocking thread, under a timeout; never fails: errors become the row.
async fn run_slide(
    entry: Entry,
    layout: Layout,
    segmenter: Arc<Segmenter>,
    token: CancelToken,
    timeout: Option<Duration>,
) -> SlideRow {
    let started = Instant::now();
    tracing::info!(slide = %entry.name, path = %entry.path.display(), "slide starting");
    let work = {
        let (entry, layout, segmenter, token) = (
            entry.clone(),
            layout.clone(),
            Arc::clone(&segmenter),
            token.clone(),
        );
        tokio::task::spawn_blocking(move || segment_entry(&entry, &layout, &segmenter, &token))
    };
    tokio::pin!(work);
    let mut timed_out = None;
    let joined = match timeout {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, &mut work).await {
            Ok(joined) => joined,
            Err(_) => {
                timed_out = Some(limit);
                token.cancel();
                work.await
            }
        },
    };
    let seconds = started.elapsed().as_secs_f64();
    let outcome = match joined {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => Err(SlideFailure::Error(format!(
            "panicked: {}",
            panic_message(error.into_panic())
        ))),
        Err(error) => Err(SlideFailure::Error(format!("task failed: {error}"))),
    };
    let mut row = match outcome {
        Ok(row) => row,
        Err(SlideFailure::Cancelled) if timed_out.is_none() => {
            SlideRow::new(&entry, Status::Cancelled)
        }
        Err(failure) => {
            let message = match (timed_out, failure) {
                (Some(limit), _) => format!("timed out after {} s", limit.as_secs_f64()),
                (None, SlideFailure::Error(message)) => message,
                (None, SlideFailure::Cancelled) => unreachable!("handled above"),
            };
            let mut row = SlideRow::new(&entry, Status::Failed);
            row.error = Some(message);
            report::write_error_file(&layout, &entry, &row, &segmenter);
            row
        }
    };
    row.seconds = Some(seconds);
    row
}

enum SlideFailure {
    Cancelled,
    Error(String),
}

/// Segments one slide (blocking). Stale outputs are removed first, so only a complete run
/// leaves `NAME.json`.
fn segment_entry(
    entry: &Entry,
    layout: &Layout,
    segmenter: &Segmenter,
    token: &CancelToken,
) -> Result<SlideRow, SlideFailure> {
    let mask = layout.mask(entry);
    // An --out-dir that holds the inputs could name a mask after its own slide: refuse
    // before removing or writing anything, as `segment` does.
    check_outputs(&output_files(&mask, &segmenter.options), &[&entry.path])
        .map_err(|e| SlideFailure::Error(e.to_string()))?;
    layout.remove_partials(entry);
    for stale in [sidecar_path(&mask, ".json"), layout.error_file(entry)] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SlideFailure::Error(format!(
                    "{}: cannot remove the previous run's file: {e}",
                    stale.display()
                )))
            }
        }
    }
    if token.is_cancelled() {
        return Err(SlideFailure::Cancelled);
    }
    let failed = |e: &dyn std::fmt::Display| SlideFailure::Error(format!("{e:#}"));
    let slide = open_with(&entry.path, segmenter.open).map_err(|e| failed(&e))?;
    let geometry = segmenter.geometry(slide.as_ref()).map_err(|e| failed(&e))?;
    match segment_slide(
        slide,
        &geometry,
        Arc::clone(&segmenter.predictor),
        &mask,
        &segmenter.options,
        token,
    ) {
        Ok(summary) => Ok(SlideRow::from_summary(entry, Status::Done, &summary)),
        Err(SegmentError::Pipeline(PipelineError::Cancelled)) => Err(SlideFailure::Cancelled),
        Err(error) => Err(SlideFailure::Error(error_chain(&error))),
    }
}

/// An error and its sources, `: `-separated (pipeline stage errors carry the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The report rebuilt from the per-slide files alone (`--report-only`): done, failed or
/// pending for each entry. Merges what shards or Snakemake jobs wrote into one report.
pub fn collect_report(
    entries: &[Entry],
    layout: &Layout,
    segmenter: &Segmenter,
    shard: Option<Shard>,
) -> Result<CohortReport, CohortError> {
    let settings = segmenter.settings();
    let rows = entries
        .iter()
        .map(|entry| {
            report::completed(entry, layout, segmenter, &settings)
                .map(|mut row| {
                    row.status = Status::Done;
                    row
                })
                .or_else(|| report::read_error_file(entry, layout))
                .unwrap_or_else(|| SlideRow::new(entry, Status::Pending))
        })
        .collect();
    let report = CohortReport::new(
        rows,
        segmenter.predictor.source().to_owned(),
        settings,
        shard,
        0.0,
    );
    report.write(layout, shard)?;
    Ok(report)
}

/// What to do when a folder cannot be written to, from why.
fn write_advice(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            "free space there or choose another folder"
        }
        _ => "fix its permissions or choose another folder",
    }
}
