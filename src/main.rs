//! The `slidestream` command line: argument parsing and dispatch only.

use clap::{Args, Parser, Subcommand};
use slidestream::commands::{self, doctor, info};
use slidestream::logging::{self, LogFormat};
use slidestream::slide::SlideError;
use std::path::PathBuf;
use std::process::ExitCode;

/// Label-free nuclei segmentation of whole-slide images, streamed end to end.
///
/// Reads OpenSlide formats and plain images, finds tissue, learns to segment nuclei
/// without labels and writes pyramidal TIFF masks. Results go to stdout (text or --json),
/// logs to stderr.
#[derive(Debug, Parser)]
#[command(name = "slidestream", version, propagate_version = true)]
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
    /// Report libtorch, OpenSlide, CUDA/cuDNN availability and thread counts.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 ok, 1 failure while working, 2 bad input (arguments, unreadable slide).
fn exit_code_for(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<SlideError>().is_some() {
        2
    } else {
        1
    }
}

fn main() -> ExitCode {
    slidestream::device::load_cuda_backend();
    let cli = Cli::parse();
    let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
    logging::init(cli.global.log_format, verbosity);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Info { slide, json } => {
            let report = info::inspect(&slide)?;
            if json {
                commands::print_json(&report)?;
            } else {
                info::print_text(&report);
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
