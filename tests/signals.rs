//! SIGTERM cancels the token given to `install_ctrl_c`. Alone in its test binary because
//! signal handlers belong to the whole process.

use slidestream::pipeline::{install_ctrl_c, CancelToken};
use std::process::Command;
use std::time::Duration;

#[test]
fn sigterm_cancels_the_token() {
    let token = CancelToken::new();
    install_ctrl_c(token.clone()).expect("handlers install");
    assert!(!token.is_cancelled());

    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", std::process::id())])
        .status()
        .expect("sh runs");
    assert!(status.success());

    // Disconnected = cancelled; a timeout means the signal was not handled.
    let woken = token.cancelled().recv_timeout(Duration::from_secs(30));
    assert!(woken.is_err() && token.is_cancelled(), "{woken:?}");
}
