//! The CLI's subcommands. `main.rs` only parses arguments; the work is here so that tests
//! can call it too.

pub mod cohort;
pub mod doctor;
pub mod eval;
pub mod info;
pub mod run;
pub mod segment;
pub mod synth;
pub mod tissue;
pub mod train;

use std::io::Write;

/// Prints a value as pretty JSON on stdout (results go to stdout, logs to stderr).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
