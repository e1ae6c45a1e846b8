//! [`Pipeline`]: adding stages, running each on its own threads, and joining them.

use super::channel::{connect, connect_windowed, Emitter, Outlet, Stream, Tickets};
use super::stats::{PipelineReport, StageKind, StageStats};
use super::{BoxError, CancelToken, PipelineError};
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// A set of stages connected by bounded channels, each stage on its own threads.
///
/// Stages start as soon as they are added; [`Pipeline::join`] waits for all of them. A
/// pipeline dropped without `join` cancels its stages and joins them, so no thread
/// outlives it.
pub struct Pipeline {
    name: String,
    /// A child of the caller's token: the caller's cancel reaches the stages, a stage's
    /// failure stays here.
    cancel: CancelToken,
    started: Instant,
    stages: Vec<Arc<StageStats>>,
    threads: Vec<JoinHandle<()>>,
}

/// The input of a map stage, shared by its workers: taking an item and numbering it
/// happen under one lock, so numbers follow input order.
struct Intake<T> {
    input: Stream<T>,
    next_seq: u64,
}

impl<T> Intake<T> {
    fn take(&mut self) -> Result<Option<(u64, T)>, PipelineError> {
        match self.input.next() {
            None => Ok(None),
            Some(Err(error)) => Err(error),
            Some(Ok(item)) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Ok(Some((seq, item)))
            }
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

impl Pipeline {
    /// A pipeline called `name` (used in reports and thread names), stopped when `cancel`
    /// (or any parent of it) is cancelled.
    pub fn new(name: impl Into<String>, cancel: &CancelToken) -> Self {
        Self {
            name: name.into(),
            cancel: cancel.child(),
            started: Instant::now(),
            stages: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// A stage that produces items on one thread: `produce` calls [`Emitter::send`] for
    /// each and returns when done. At most `capacity` sent items wait for the next stage.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn source<T, F>(&mut self, name: &str, capacity: usize, produce: F) -> Stream<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Emitter<T>) -> Result<(), BoxError> + Send + 'static,
    {
        let stats = self.add_stage(name, StageKind::Source, 1, Some(capacity));
        let (outlet, stream) = connect(capacity, Arc::clone(&stats), &self.cancel);
        self.spawn(&stats, 0, Emitter::new(outlet), produce);
        stream
    }

    /// A stage that applies `f` to every item on `workers` threads and yields the results
    /// **in input order**.
    ///
    /// It holds at most `workers + capacity` items between taking them from `input` and
    /// the next stage taking them out, however unequal the items' costs: a slow item makes
    /// the others wait rather than pile up.
    ///
    /// # Panics
    /// If `workers` or `capacity` is 0.
    pub fn map<T, U, F>(
        &mut self,
        name: &str,
        input: Stream<T>,
        workers: usize,
        capacity: usize,
        f: F,
    ) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> Result<U, BoxError> + Send + Sync + 'static,
    {
        assert!(workers > 0, "stage `{name}` needs at least one worker");
        let stats = self.add_stage(name, StageKind::Map, workers, Some(capacity));
        let (outlet, output, tickets) = connect_windowed(
            capacity,
            workers + capacity,
            Arc::clone(&stats),
            &self.cancel,
        );
        let intake = Arc::new(Mutex::new(Intake {
            input: input.consumed_by(Arc::clone(&stats)),
            next_seq: 0,
        }));
        let f = Arc::new(f);
        for worker in 0..workers {
            let (intake, tickets, outlet, f) = (
                Arc::clone(&intake),
                tickets.clone(),
                outlet.clone(),
                Arc::clone(&f),
            );
            let stats_for_worker = Arc::clone(&stats);
            self.spawn(&stats, worker, outlet, move |outlet| {
                map_worker(&intake, &tickets, outlet, &*f, &stats_for_worker)
            });
        }
        output
    }

    /// A stage on one thread that reads its whole input as an iterator and emits any number
    /// of items: batching, unbatching, assembling rows.
    ///
    /// Write the loop as `for item in input { let item = item?; ... }`: an `Err` means the
    /// run is stopping. Returning before the input ends (taking only the first N items)
    /// quietly stops the stages before it.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn transform<T, U, F>(
        &mut self,
        name: &str,
        input: Stream<T>,
        capacity: usize,
        f: F,
    ) -> Stream<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnOnce(Stream<T>, &mut Emitter<U>) -> Result<(), BoxError> + Send + 'static,
    {
        let stats = self.add_stage(name, StageKind::Transform, 1, Some(capacity));
        let (outlet, output) = connect(capacity, Arc::clone(&stats), &self.cancel);
        let input = input.consumed_by(Arc::clone(&stats));
        self.spawn(&stats, 0, Emitter::new(outlet), move |emitter| {
            f(input, emitter)
        });
        output
    }

    /// The last stage: calls `consume` for every item, in order, on one thread.
    pub fn sink<T, F>(&mut self, name: &str, input: Stream<T>, mut consume: F)
    where
        T: Send + 'static,
        F: FnMut(T) -> Result<(), BoxError> + Send + 'static,
    {
        let stats = self.add_stage(name, StageKind::Sink, 1, None);
        let input = input.consumed_by(Arc::clone(&stats));
        self.spawn(&stats, 0, (), move |_| {
            for item in input {
                consume(item?)?;
            }
            Ok(())
        });
    }

    /// The first stage failure so far, taken out. A consumer whose stream ended in
    /// `Cancelled` reports this instead: the failing stage is what stopped the run.
    pub fn take_failure(&self) -> Option<PipelineError> {
        self.cancel.take_error()
    }

    /// Waits for every stage to finish. Returns the per-stage report, or the first error
    /// of any stage ([`PipelineError::Cancelled`] if the run was cancelled without one).
    pub fn join(mut self) -> Result<PipelineReport, PipelineError> {
        self.join_threads();
        let report = self.report();
        if let Some(error) = self.cancel.take_error() {
            tracing::debug!(pipeline = %self.name, ?report, "pipeline failed");
            return Err(error);
        }
        if self.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        Ok(report)
    }

    /// Counters so far; complete once the stages have finished.
    fn report(&self) -> PipelineReport {
        let wall = self.started.elapsed();
        let stages = self.stages.iter().map(|stats| stats.report(wall)).collect();
        PipelineReport::new(&self.name, wall, stages)
    }

    fn add_stage(
        &mut self,
        name: &str,
        kind: StageKind,
        workers: usize,
        capacity: Option<usize>,
    ) -> Arc<StageStats> {
        assert!(
            capacity != Some(0),
            "stage `{name}` needs an output capacity of at least 1"
        );
        let stats = Arc::new(StageStats::new(name, kind, workers, capacity));
        self.stages.push(Arc::clone(&stats));
        stats
    }

    /// Runs `body` on a new thread; its error or panic becomes the run's error (if first).
    ///
    /// `output` (the stage's sending end) is dropped only after that error is recorded:
    /// the next stage must see the run cancelled before its input ends, or it would take
    /// the end of a failed stage's output for a complete input.
    fn spawn<K, F>(&mut self, stats: &Arc<StageStats>, worker: usize, output: K, body: F)
    where
        K: Send + 'static,
        F: FnOnce(&mut K) -> Result<(), BoxError> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        let stage_stats = Arc::clone(stats);
        let spawned = thread::Builder::new()
            .name(format!("{}/{}#{worker}", self.name, stats.name))
            .spawn(move || {
                let mut output = output;
                let started = Instant::now();
                // The closure (and what it captured) is dropped inside, so a panic while
                // dropping is caught too.
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(&mut output)));
                stage_stats.add_alive(started.elapsed());
                let stage = stage_stats.name.clone();
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) if PipelineError::is_cancellation(&error) => {}
                    Ok(Err(source)) => {
                        tracing::debug!(%stage, error = %source, "stage failed; stopping the run");
                        cancel.fail(PipelineError::Stage { stage, source });
                    }
                    Err(payload) => cancel.fail(PipelineError::Panicked {
                        stage,
                        message: panic_message(&*payload),
                    }),
                }
                drop(output);
            });
        match spawned {
            Ok(handle) => self.threads.push(handle),
            Err(error) => self.cancel.fail(PipelineError::Stage {
                stage: stats.name.clone(),
                source: Box::new(error),
            }),
        }
    }

    fn join_threads(&mut self) {
        for handle in self.threads.drain(..) {
            // Stage bodies catch their panics; a panic here could only come from the
            // bookkeeping around them, and the run is over either way.
            let _ = handle.join();
        }
    }
}

/// One map worker: take a ticket, take the next input item, apply `f`, send the result
/// with the item's number, until the input ends or the run stops.
fn map_worker<T, U>(
    intake: &Mutex<Intake<T>>,
    tickets: &Tickets,
    outlet: &Outlet<U>,
    f: &(dyn Fn(T) -> Result<U, BoxError> + Sync),
    stats: &StageStats,
) -> Result<(), BoxError> {
    loop {
        // The ticket first, outside the lock: a worker waiting for the consumer must not
        // keep the others from the input.
        tickets.acquire()?;
        let waiting = Instant::now();
        // Poisoning needs a panic under the lock, where only channel code runs.
        let mut guard = intake.lock().unwrap_or_else(PoisonError::into_inner);
        // Waiting for the lock is waiting for input: its holder is blocked on the input.
        stats.add_input_wait(waiting.elapsed());
        let next = guard.take()?;
        drop(guard);
        let Some((seq, item)) = next else {
            return Ok(());
        };
        outlet.send(seq, f(item)?)?;
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.cancel.cancel();
            self.join_threads();
        }
    }
}
