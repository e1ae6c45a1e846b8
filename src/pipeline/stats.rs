//! Per-stage counters and the report built from them.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a stage does with items, as shown in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Source,
    Map,
    Transform,
    Sink,
}

/// Live counters of one stage, updated by its threads with relaxed atomics (each number is
/// only read as a total after the threads are joined).
#[derive(Debug)]
pub(crate) struct StageStats {
    pub(crate) name: String,
    kind: StageKind,
    workers: usize,
    output_capacity: Option<usize>,
    items_in: AtomicU64,
    items_out: AtomicU64,
    /// Summed over the stage's threads, from start to exit.
    alive_ns: AtomicU64,
    input_wait_ns: AtomicU64,
    output_wait_ns: AtomicU64,
    queue_samples: AtomicU64,
    queue_total: AtomicU64,
    queue_max: AtomicU64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn secs(nanos: u64) -> f64 {
    nanos as f64 * 1e-9
}

impl StageStats {
    pub(crate) fn new(
        name: &str,
        kind: StageKind,
        workers: usize,
        output_capacity: Option<usize>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            workers,
            output_capacity,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            alive_ns: AtomicU64::new(0),
            input_wait_ns: AtomicU64::new(0),
            output_wait_ns: AtomicU64::new(0),
            queue_samples: AtomicU64::new(0),
            queue_total: AtomicU64::new(0),
            queue_max: AtomicU64::new(0),
        }
    }

    pub(crate) fn count_in(&self) {
        self.items_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_out(&self) {
        self.items_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_alive(&self, duration: Duration) {
        self.alive_ns.fetch_add(nanos(duration), Ordering::Relaxed);
    }

    pub(crate) fn add_input_wait(&self, duration: Duration) {
        self.input_wait_ns
            .fetch_add(nanos(duration), Ordering::Relaxed);
    }

    pub(crate) fn add_output_wait(&self, duration: Duration) {
        self.output_wait_ns
            .fetch_add(nanos(duration), Ordering::Relaxed);
    }

    /// Records how many items wait in the output channel as one more is sent: a queue that
    /// is always full means the consumer is slower, always empty that it is faster.
    pub(crate) fn sample_queue(&self, queued: usize) {
        let queued = queued as u64;
        self.queue_samples.fetch_add(1, Ordering::Relaxed);
        self.queue_total.fetch_add(queued, Ordering::Relaxed);
        self.queue_max.fetch_max(queued, Ordering::Relaxed);
    }

    pub(crate) fn report(&self, wall: Duration) -> StageReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let input_wait = load(&self.input_wait_ns);
        let output_wait = load(&self.output_wait_ns);
        // Busy is what is left of the threads' lives once waiting is taken out: it covers
        // the user's closure and the stage's own bookkeeping.
        let busy = load(&self.alive_ns).saturating_sub(input_wait + output_wait);
        let capacity = (self.workers as f64) * wall.as_secs_f64();
        let samples = load(&self.queue_samples);
        StageReport {
            name: self.name.clone(),
            kind: self.kind,
            workers: self.workers,
            items_in: load(&self.items_in),
            items_out: load(&self.items_out),
            busy_secs: secs(busy),
            input_wait_secs: secs(input_wait),
            output_wait_secs: secs(output_wait),
            utilization: if capacity > 0.0 {
                secs(busy) / capacity
            } else {
                0.0
            },
            output_capacity: self.output_capacity,
            mean_output_queue: if samples > 0 {
                load(&self.queue_total) as f64 / samples as f64
            } else {
                0.0
            },
            max_output_queue: load(&self.queue_max),
        }
    }
}

/// One stage's totals for a run.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: StageKind,
    pub workers: usize,
    pub items_in: u64,
    pub items_out: u64,
    /// Thread time not spent waiting, summed over workers.
    pub busy_secs: f64,
    /// Time blocked on an empty input: the stage before is slower.
    pub input_wait_secs: f64,
    /// Time blocked on a full output: the stage after is slower.
    pub output_wait_secs: f64,
    /// `busy / (workers × wall)`: close to 1 for the stage that limits throughput.
    pub utilization: f64,
    /// `None` for a sink.
    pub output_capacity: Option<usize>,
    pub mean_output_queue: f64,
    pub max_output_queue: u64,
}

/// What a finished run did, stage by stage, in the order stages were added.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub pipeline: String,
    pub wall_secs: f64,
    /// The stage with the highest utilization: adding workers there (or making it faster)
    /// is what speeds the run up.
    pub bottleneck: Option<String>,
    pub stages: Vec<StageReport>,
}

impl PipelineReport {
    pub(crate) fn new(pipeline: &str, wall: Duration, stages: Vec<StageReport>) -> Self {
        let bottleneck = stages
            .iter()
            .max_by(|a, b| a.utilization.total_cmp(&b.utilization))
            .map(|stage| stage.name.clone());
        Self {
            pipeline: pipeline.to_owned(),
            wall_secs: wall.as_secs_f64(),
            bottleneck,
            stages,
        }
    }

    /// The report of the stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|stage| stage.name == name)
    }
}
