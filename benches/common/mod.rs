//! What the benchmarks that drive the `slidestream` binary share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub fn slidestream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slidestream"))
}

pub fn run_json(command: &mut Command) -> serde_json::Value {
    let out = command.output().expect("slidestream starts");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A synthetic slide of `size`², made once and kept in the data folder.
pub fn synthetic_slide(data: &Path, size: u64, coverage: f32) -> PathBuf {
    let path = data.join(format!("synth-{size}-{coverage}.tif"));
    if !path.exists() {
        std::fs::create_dir_all(data).unwrap();
        let started = Instant::now();
        run_json(
            slidestream()
                .args(["-q", "synth", "--json", "--width", &size.to_string()])
                .args(["--height", &size.to_string(), "--tissue-coverage"])
                .arg(coverage.to_string())
                .arg("--out")
                .arg(&path),
        );
        println!(
            "(made {} in {:.0} s)",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    path
}
