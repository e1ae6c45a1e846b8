//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// A file or folder under `../shared/data`, or `None` (with a message saying the test is
/// skipped) when the shared data is not next to the checkout.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is not present", path.display());
        None
    }
}

/// The built `slidestream` binary.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_slidestream"))
}

/// Runs a command that must succeed (stderr shown otherwise) and parses its stdout as JSON.
pub fn json_output(command: &mut std::process::Command) -> serde_json::Value {
    let out = command.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}
