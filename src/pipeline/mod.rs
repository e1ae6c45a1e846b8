//! The staged producer → consumer runtime every slidestream command is built on.
//!
//! # Shape
//!
//! A [`Pipeline`] is a chain of stages joined by bounded channels:
//!
//! ```text
//! source ──[cap]──► map × N workers ──[cap]──► transform ──[cap]──► sink
//! ```
//!
//! * **Backpressure.** Every connection is a bounded crossbeam channel, so a slow stage
//!   blocks the ones before it and memory stays bounded whatever the slide size: at most
//!   the sum of the channel capacities, plus `workers` per map stage, plus one item in the
//!   hands of each single-threaded stage, are alive at once.
//! * **Order.** Items are numbered as they are produced; a [`map`](Pipeline::map) stage runs
//!   N workers yet yields results in input order, reassembled by a fixed-size
//!   [`ReorderBuffer`]. Output is deterministic whatever the thread timing.
//! * **Stopping.** The first error or panic in any stage, or a cancelled [`CancelToken`]
//!   (Ctrl-C through [`install_ctrl_c`]), stops every stage: blocked sends and receives
//!   wake through the token's channel (no polling), producers stop, and
//!   [`Pipeline::join`] joins every thread and returns that first error.
//! * **Measuring.** Each stage counts items and the time it was busy, starved (waiting on
//!   input) or blocked (waiting on output); [`PipelineReport`] names the bottleneck.
//!
//! ```no_run
//! use slidestream::pipeline::{CancelToken, Pipeline};
//!
//! let cancel = CancelToken::new();
//! let mut run = Pipeline::new("squares", &cancel);
//! let numbers = run.source("count", 16, |emit| {
//!     for n in 0..1000_u64 {
//!         emit.send(n)?;
//!     }
//!     Ok(())
//! });
//! let squares = run.map("square", numbers, 4, 16, |n| Ok(n * n));
//! let mut total = 0;
//! run.sink("sum", squares, move |square| {
//!     total += square;
//!     Ok(())
//! });
//! let report = run.join()?;
//! println!("{}", report.bottleneck.unwrap_or_default());
//! # Ok::<(), slidestream::pipeline::PipelineError>(())
//! ```

mod cancel;
mod channel;
mod error;
mod progress;
mod reorder;
mod run;
mod signals;
mod stats;

pub use cancel::CancelToken;
pub use channel::{Emitter, Stream};
pub use error::{BoxError, PipelineError};
pub use progress::progress_bar;
pub use reorder::ReorderBuffer;
pub use run::Pipeline;
pub use signals::install_ctrl_c;
pub use stats::{PipelineReport, StageKind, StageReport};
