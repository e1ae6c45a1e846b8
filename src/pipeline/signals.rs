//! Ctrl-C and SIGTERM handling.

use super::CancelToken;
use std::io;
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Cancels `token` on the first SIGINT (Ctrl-C) or SIGTERM, so the run stops cleanly and
/// reports what it finished; the second one exits the process at once (status 128 + signal
/// number), for when the clean stop itself hangs.
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
                    let (name, _) = next_signal(&mut interrupt, &mut terminate).await;
                    tracing::warn!("{name} received: stopping cleanly; send it again to exit now");
                    token.cancel();
                    let (_, number) = next_signal(&mut interrupt, &mut terminate).await;
                    std::process::exit(128 + number);
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

/// The name and number of the next signal received.
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", 2),
        _ = terminate.recv() => ("SIGTERM", 15),
    }
}
