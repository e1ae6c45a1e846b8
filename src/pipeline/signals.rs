//! Ctrl-C and SIGTERM handling.

use super::CancelToken;
use std::io;
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Cancels `token` on the first SIGINT (Ctrl-C) or SIGTERM, so the run stops cleanly and
/// reports what it finished; the second one removes the partial outputs and exits the
/// process at once, also with status 130, for when the clean stop itself hangs.
///
/// Signals are awaited by tokio on a small current-thread runtime in a background thread;
/// the handlers are registered before this returns. Call it once per process.
pub fn install_ctrl_c(token: CancelToken) -> io::Result<()> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || match listen() {
            Ok((runtime, mut interrupt, mut terminate)) => {
                let _ = ready_tx.send(Ok(()));
                runtime.block_on(async {
                    let name = next_signal(&mut interrupt, &mut terminate).await;
                    tracing::warn!("{name} received: stopping cleanly; send it again to exit now");
                    token.cancel();
                    next_signal(&mut interrupt, &mut terminate).await;
                    exit_now();
                });
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
            }
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("signal thread stopped during setup")))
}

/// Exits without unwinding or running exit handlers: `std::process::exit` would run the
/// C++ and glib destructors of libtorch and OpenSlide while decode threads are still inside
/// them (segfaults seen in libopenslide). The partial outputs are removed first, as the
/// clean stop would.
fn exit_now() -> ! {
    crate::atomic_file::remove_live_partials();
    // SAFETY: `_exit` ends the process immediately; nothing runs after it.
    unsafe { libc::_exit(INTERRUPTED) }
}

/// The exit status of an interrupted run, as documented (128 + SIGINT).
const INTERRUPTED: i32 = 130;

fn listen() -> io::Result<(Runtime, Signal, Signal)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Signal streams register with the runtime they are created in.
    let (interrupt, terminate) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    Ok((runtime, interrupt, terminate))
}

/// The name of the next signal received.
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> &'static str {
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
