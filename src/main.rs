//! The `slidestream` command line: argument parsing and dispatch only.

use clap::{Args, CommandFactory, Parser, Subcommand};
use slidestream::cohort::CohortError;
use slidestream::commands::run::{self as pipeline_run, RunError};
use slidestream::commands::{self, cohort, doctor, eval, info, segment, synth, tissue, train};
use slidestream::device::DeviceError;
use slidestream::instances::InstanceMapError;
use slidestream::logging::{self, LogFormat};
use slidestream::model::ModelError;
use slidestream::output_path::OutputPathError;
use slidestream::pipeline::{install_ctrl_c, CancelToken, PipelineError};
use slidestream::segment::SegmentError;
use slidestream::slide::tissue::TissueParams;
use slidestream::slide::SlideError;
use slidestream::synth::SynthError;
use slidestream::tiff::TiffWriteError;
use slidestream::train::crop_stream::CropStreamError;
use slidestream::train::DataError;
use slidestream::train::TrainError;
use std::path::PathBuf;
use std::process::ExitCode;

/// Label-free nuclei segmentation of whole-slide images, streamed end to end.
///
/// Reads OpenSlide formats and plain images, finds tissue, learns to segment nuclei
/// without labels and writes pyramidal TIFF masks. Results go to stdout (text or --json),
/// logs to stderr.
#[derive(Debug, Parser)]
#[command(
    name = "slidestream",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success; 1 failure while working; 2 bad input (arguments, \
                  missing/unsupported/truncated slide, unwritable output folder, bad pipeline \
                  file); 3 `cohort`: some slides failed (the others are done; report.csv \
                  lists why); 130 interrupted (Ctrl-C/SIGTERM, nothing half-written is left \
                  under a final name)."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Log line format on stderr: `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// More log detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less log detail (-q warnings only, -qq errors only); also hides progress bars.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a slide's size, pyramid levels, resolution (MPP) and vendor.
    Info {
        /// Slide file (SVS, NDPI, MRXS, tiled TIFF, PNG, ...) or DICOM folder.
        slide: PathBuf,
        /// Print JSON (width, height, levels, mpp_x, mpp_y, vendor, properties).
        #[arg(long)]
        json: bool,
    },
    /// Find tissue on a low-resolution overview (saturation Otsu + cleanup) and write the
    /// tissue map as PNG (white = tissue); later stages use the same map to choose crops
    /// and tiles.
    Tissue {
        /// Slide file or DICOM folder.
        slide: PathBuf,
        /// Where to write the tissue map PNG.
        #[arg(long)]
        out: PathBuf,
        /// Tissue pieces and holes smaller than this many map pixels are dropped/filled.
        #[arg(long, default_value_t = TissueParams::default().min_area)]
        min_area: u32,
        /// Print JSON (tissue_fraction, level, downsample, map size) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate a synthetic H&E slide with known nuclei (pyramidal tiled TIFF) and its
    /// ground-truth mask, streamed so any size fits in memory.
    Synth {
        #[command(flatten)]
        args: synth::SynthArgs,
        /// Print JSON (paths, spec, nuclei and tissue fractions) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train a nuclei segmentation model: label-free contrastive (default), supervised or
    /// threshold baseline, from an image folder or a stream of tissue crops from slides; or
    /// semi-supervised from a few labels (--method cdcl --labeled-fraction 1/8).
    Train {
        #[command(flatten)]
        args: train::TrainArgs,
    },
    /// Segment the nuclei of a whole slide into a pyramidal TIFF mask (streamed tile by
    /// tile, seam-free), with a summary JSON, a QC overlay and optional GeoJSON.
    Segment {
        #[command(flatten)]
        args: segment::SegmentArgs,
    },
    /// Segment a cohort: many slides (files, folders, CSV manifests), a bounded number at
    /// once; a failing slide is recorded and skipped, reruns resume (done slides are not
    /// redone), report.csv/report.json summarise. Exit code 3 when some slides failed.
    #[command(
        after_help = "Exit codes: 0 every slide done (or already complete); 3 some \
                            slides failed, the others are done (report.csv says why; rerun \
                            to retry them); 2 bad invocation (arguments, unreadable \
                            manifest, unwritable --out-dir), before any work; 130 \
                            interrupted (Ctrl-C/SIGTERM: running slides cancelled, report \
                            written, nothing half-written under a final name)."
    )]
    Cohort {
        #[command(flatten)]
        args: cohort::CohortArgs,
    },
    /// Run a declarative pipeline (pipelines/*.toml: pretrain, segment, nightly): its steps
    /// are slidestream commands with their flags as keys; `--set` overrides.
    Run {
        #[command(flatten)]
        args: pipeline_run::RunArgs,
    },
    /// Score a trained run against labeled images: Dice, IoU, precision, recall, accuracy
    /// and specificity per image and mean, raw and after post-processing; where
    /// DIR/instances/<stem>.png exists, also objects: AJI, object F1 and PQ, and why each
    /// unmatched object missed (on no true nucleus, merging, part of one, outline off; not
    /// found, merged, split, too small).
    Eval {
        #[command(flatten)]
        args: eval::EvalArgs,
    },
    /// Report libtorch, OpenSlide, CUDA/cuDNN availability and thread counts.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes as documented in `--help`.
fn exit_code_for(error: &anyhow::Error) -> u8 {
    let bad_input = is::<SlideError>(error, |_| true)
        || is::<DataError>(error, |_| true)
        || is::<InstanceMapError>(error, |_| true)
        || is::<CropStreamError>(error, |_| true)
        || is::<DeviceError>(error, |_| true)
        || is::<ModelError>(error, |_| true)
        || is::<OutputPathError>(error, |_| true)
        || is::<RunError>(error, |_| true)
        || is::<clap::Error>(error, |_| true)
        || is(error, TrainError::is_bad_input)
        || is(error, CohortError::is_bad_input)
        || is(error, SegmentError::is_bad_input)
        || is(error, TiffWriteError::is_bad_input)
        || is(error, SynthError::is_bad_input)
        || names_a_missing_or_forbidden_path(error);
    if bad_input {
        2
    } else if matches!(error.downcast_ref(), Some(CohortError::SlidesFailed { .. })) {
        3
    } else if matches!(error.downcast_ref(), Some(PipelineError::Cancelled))
        || matches!(
            error.downcast_ref(),
            Some(SegmentError::Pipeline(PipelineError::Cancelled))
        )
    {
        130
    } else {
        1
    }
}

/// `error` (or an error it wraps) is an `E` for which `test` holds.
fn is<E>(error: &anyhow::Error, test: impl Fn(&E) -> bool) -> bool
where
    E: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    error.downcast_ref::<E>().is_some_and(test)
}

/// A file or folder the user named is missing or not accessible (e.g. the output folder of
/// `tissue --out`): something the user fixes, not a failure while working.
fn names_a_missing_or_forbidden_path(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        // The image crate keeps its I/O error inside rather than as a source.
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            match cause.downcast_ref::<image::ImageError>() {
                Some(image::ImageError::IoError(e)) => Some(e),
                _ => None,
            }
        });
        io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            )
        })
    })
}

fn main() -> ExitCode {
    slidestream::device::load_cuda_backend();
    slidestream::allocator::keep_freed_memory();
    slidestream::allocator::flush_subnormals();
    let cli = Cli::parse();
    let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
    logging::init(cli.global.log_format, verbosity);
    let cancel = CancelToken::new();
    if let Err(e) = install_ctrl_c(cancel.clone()) {
        tracing::warn!("cannot watch for Ctrl-C ({e}); interrupting may leave .partial files");
    }
    match run(cli.command, cli.global.quiet > 0, &cancel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", slidestream::error_text::one_line(&error));
            ExitCode::from(exit_code_for(&error))
        }
    }
}

fn run(command: Command, quiet: bool, cancel: &CancelToken) -> anyhow::Result<()> {
    match command {
        Command::Info { slide, json } => {
            let report = info::inspect(&slide)?;
            if json {
                commands::print_json(&report)?;
            } else {
                info::print_text(&report);
            }
        }
        Command::Tissue {
            slide,
            out,
            min_area,
            json,
        } => {
            let params = TissueParams {
                min_area,
                ..TissueParams::default()
            };
            let report = tissue::run(&slide, &out, &params, cancel)?;
            if json {
                commands::print_json(&report)?;
            } else {
                tissue::print_text(&report);
            }
        }
        Command::Synth { args, json } => {
            let report = synth::run(&args, !quiet, cancel)?;
            if json {
                commands::print_json(&report)?;
            } else {
                println!(
                    "wrote {} and {} ({:.1}% tissue, {:.1}% nuclei) in {:.1}s",
                    report.slide.display(),
                    report.mask.display(),
                    report.tissue_fraction * 100.0,
                    report.nuclei_fraction * 100.0,
                    report.seconds
                );
            }
        }
        Command::Train { args } => train::run(&args, !quiet, cancel)?,
        Command::Segment { args } => {
            let summary = segment::run(&args, !quiet, cancel)?;
            if args.json {
                commands::print_json(&summary)?;
            } else {
                segment::print_text(&summary);
            }
        }
        Command::Cohort { args } => cohort::run(&args, !quiet, cancel)?,
        Command::Run { args } => run_pipeline(&args, quiet, cancel)?,
        Command::Eval { args } => {
            let report = eval::run(&args, !quiet, cancel)?;
            if args.json {
                commands::print_json(&report)?;
            } else {
                eval::print_text(&report);
            }
        }
        Command::Doctor { json } => {
            let report = doctor::collect();
            if json {
                commands::print_json(&report)?;
            } else {
                doctor::print_text(&report);
            }
        }
    }
    Ok(())
}

/// `slidestream run`: checks every step of the pipeline, then runs them in order, stopping
/// at the first that fails.
fn run_pipeline(
    args: &pipeline_run::RunArgs,
    quiet: bool,
    cancel: &CancelToken,
) -> anyhow::Result<()> {
    let cli = Cli::command();
    let steps = pipeline_run::plan(&args.pipeline, &args.set, |name| {
        cli.find_subcommand(name).cloned()
    })?;
    let mut commands = Vec::new();
    for step in &steps {
        let argv = ["slidestream", step.command.as_str()]
            .into_iter()
            .map(str::to_owned)
            .chain(step.argv.iter().cloned());
        let parsed = Cli::try_parse_from(argv).map_err(|error| {
            let message = match pipeline_run::missing_keys_of_clap_error(&error) {
                Some(keys) => format!("missing required key(s): {}", keys.join(", ")),
                None => error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned(),
            };
            let key = pipeline_run::key_of_clap_error(&error).map_or_else(
                || format!("steps.{}", step.name),
                |k| format!("steps.{}.{k}", step.name),
            );
            RunError::Key {
                path: args.pipeline.clone(),
                key,
                message,
            }
        })?;
        commands.push(parsed.command);
    }
    for (step, command) in steps.iter().zip(commands) {
        let line = format!("slidestream {} {}", step.command, step.argv.join(" "));
        if args.dry_run {
            println!("{line}");
            continue;
        }
        tracing::info!(step = %step.name, "pipeline step: {line}");
        run(command, quiet, cancel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every flag carries help text: `--help` must explain them all.
    #[test]
    fn every_flag_is_documented() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_string());
            }
            for arg in sub.get_arguments() {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str())
                {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }
}
