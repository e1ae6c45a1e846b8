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

/// Writes a file through `NAME.partial` in the same folder and renames it into place, so a
/// failed or interrupted write never leaves a half-written file under the final name.
pub fn write_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut name = path
        .file_name()
        .context("output path has no file name")?
        .to_os_string();
    name.push(".partial");
    let partial = path.with_file_name(name);
    let result = write(&partial)
        .and_then(|()| std::fs::rename(&partial, path).map_err(anyhow::Error::from))
        .with_context(|| format!("writing {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
