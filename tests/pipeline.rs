//! Behaviour of the pipeline runtime: order, backpressure, stopping, reporting.

use crossbeam_channel::{bounded, unbounded, RecvTimeoutError};
use slidestream::pipeline::{CancelToken, Pipeline, PipelineError};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Runs `body` on its own thread and fails the test if it has not finished within a
/// minute, so a deadlock shows up as a failure instead of a hung suite.
fn within_deadline<R: Send + 'static>(body: impl FnOnce() -> R + Send + 'static) -> R {
    let (done_tx, done_rx) = bounded(1);
    let handle = thread::spawn(move || {
        let result = body();
        let _ = done_tx.send(());
        result
    });
    if let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_secs(60)) {
        panic!("pipeline did not finish within a minute: deadlock");
    }
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// CPU work whose cost grows with `rounds`, standing in for decoding a tile.
fn spin(rounds: u64) -> u64 {
    (0..rounds).fold(rounds, |acc, i| {
        black_box(acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i))
    })
}

#[test]
fn map_with_many_workers_keeps_input_order() {
    within_deadline(|| {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("order", &cancel);
        let numbers = run.source("count", 4, |emit| {
            for n in 0..3000_u64 {
                emit.send(n)?;
            }
            Ok(())
        });
        // Item 0 finishes only after item 10, so results surely arrive out of order; the
        // others vary in cost to shuffle them further.
        let (item10_done, wait_for_item10) = bounded::<()>(1);
        let hashed = run.map("hash", numbers, 8, 4, move |n| {
            match n {
                0 => wait_for_item10.recv()?,
                10 => item10_done.send(())?,
                _ => {}
            }
            Ok((n, spin(n % 13 * 300)))
        });
        let (seen_tx, seen_rx) = unbounded();
        run.sink("collect", hashed, move |(n, hash)| {
            assert_eq!(hash, spin(n % 13 * 300));
            seen_tx.send(n)?;
            Ok(())
        });
        let report = run.join().expect("the run succeeds");

        assert_eq!(
            seen_rx.iter().collect::<Vec<_>>(),
            (0..3000).collect::<Vec<_>>()
        );
        let hash = report.stage("hash").unwrap();
        assert_eq!(
            (hash.items_in, hash.items_out, hash.workers),
            (3000, 3000, 8)
        );
        assert_eq!(report.stage("collect").unwrap().items_in, 3000);
    });
}

/// An item that counts how many of its kind are alive.
struct Tracked {
    live: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(live: &Arc<AtomicUsize>, peak: &AtomicUsize) -> Self {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Self {
            live: Arc::clone(live),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_slow_sink_throttles_the_source() {
    const ITEMS: u64 = 300;
    const SOURCE_CAPACITY: usize = 3;
    const WORKERS: usize = 3;
    const MAP_CAPACITY: usize = 2;
    // Items alive at most: both channels, one per worker, one in the source's hand (made,
    // not yet sent) and one in the sink's.
    const BOUND: usize = SOURCE_CAPACITY + WORKERS + MAP_CAPACITY + 2;
    // How far the test lets the source run ahead before the sink may take an item: less
    // than the pipeline can hold, so it is always reached when backpressure works.
    const LEAD: u64 = (SOURCE_CAPACITY + MAP_CAPACITY) as u64;

    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (sent_tx, sent_rx) = unbounded::<u64>();
    let (permit_tx, permit_rx) = unbounded::<()>();
    let source_counters = (Arc::clone(&live), Arc::clone(&peak));
    within_deadline(move || {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("backpressure", &cancel);
        let items = run.source("make", SOURCE_CAPACITY, move |emit| {
            let (live, peak) = source_counters;
            for n in 0..ITEMS {
                emit.send(Tracked::new(&live, &peak))?;
                sent_tx.send(n)?;
            }
            Ok(())
        });
        let passed = run.map("pass", items, WORKERS, MAP_CAPACITY, Ok);
        // The sink takes an item only when the test hands it a permit.
        run.sink("slow", passed, move |item| {
            permit_rx.recv()?;
            drop(item);
            Ok(())
        });
        let mut latest_sent = 0;
        for consumed in 0..ITEMS {
            let target = (consumed + LEAD).min(ITEMS - 1);
            while latest_sent < target {
                latest_sent = sent_rx.recv().expect("the source keeps sending");
            }
            permit_tx.send(()).unwrap();
        }
        run.join().expect("the run succeeds");
    });

    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= BOUND,
        "{peak} items alive at once; the bound is {BOUND}"
    );
    assert!(
        peak as u64 >= LEAD,
        "the test never filled the pipeline (peak {peak})"
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn an_error_in_a_middle_stage_stops_the_source_and_names_the_stage() {
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&produced);
    // Every closure holds a clone: once `join` returns, all of them must be dropped,
    // i.e. every stage thread has finished.
    let alive = Arc::new(());
    let (a, b, c) = (Arc::clone(&alive), Arc::clone(&alive), Arc::clone(&alive));
    let error = within_deadline(move || {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("failing", &cancel);
        let tiles = run.source("tiles", 4, move |emit| {
            let _alive = a;
            for n in 0..1_000_000_u64 {
                emit.send(n)?;
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        let decoded = run.map("decode", tiles, 4, 4, move |n| {
            let _alive = &b;
            if n == 100 {
                return Err(format!("tile {n} is corrupt").into());
            }
            Ok(n)
        });
        run.sink("write", decoded, move |_| {
            let _alive = &c;
            Ok(())
        });
        run.join().expect_err("the run fails")
    });

    match error {
        PipelineError::Stage { stage, source } => {
            assert_eq!(stage, "decode");
            assert_eq!(source.to_string(), "tile 100 is corrupt");
        }
        other => panic!("expected a stage error, got {other:?}"),
    }
    let produced = produced.load(Ordering::SeqCst);
    assert!(produced < 1000, "the source went on to {produced} items");
    assert_eq!(Arc::strong_count(&alive), 1, "a stage thread outlived join");
}

#[test]
fn cancelling_the_token_stops_an_endless_source() {
    let cancel = CancelToken::new();
    let outside = cancel.clone();
    let alive = Arc::new(());
    let (source_alive, sink_alive) = (Arc::clone(&alive), Arc::clone(&alive));
    let (reached_tx, reached_rx) = bounded(1);
    let pipeline = thread::spawn(move || {
        let mut run = Pipeline::new("endless", &cancel);
        let numbers = run.source("count", 8, move |emit| {
            let _alive = source_alive;
            let mut n = 0_u64;
            loop {
                emit.send(n)?;
                n += 1;
            }
        });
        let mut seen = 0;
        run.sink("consume", numbers, move |_| {
            let _alive = &sink_alive;
            seen += 1;
            if seen == 50 {
                reached_tx.send(())?;
            }
            Ok(())
        });
        run.join()
    });
    reached_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the sink consumes items");
    outside.cancel();
    let result = within_deadline(move || pipeline.join().unwrap());
    assert!(
        matches!(result, Err(PipelineError::Cancelled)),
        "{result:?}"
    );
    assert_eq!(Arc::strong_count(&alive), 1, "a stage thread outlived join");
}

#[test]
fn a_panicking_worker_becomes_an_error() {
    let error = within_deadline(|| {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("panicky", &cancel);
        let numbers = run.source("count", 4, |emit| {
            for n in 0..1_000_000_u64 {
                emit.send(n)?;
            }
            Ok(())
        });
        let checked = run.map("explode", numbers, 3, 4, |n| {
            assert_ne!(n, 7, "boom at 7");
            Ok(n)
        });
        run.sink("drain", checked, |_| Ok(()));
        run.join().expect_err("the run fails")
    });
    match error {
        PipelineError::Panicked { stage, message } => {
            assert_eq!(stage, "explode");
            assert!(message.contains("boom at 7"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

#[test]
fn a_failing_sink_does_not_deadlock_producers_blocked_on_full_channels() {
    const CAPACITY: usize = 2;
    let (sent_tx, sent_rx) = unbounded::<u64>();
    let error = within_deadline(move || {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("blocked", &cancel);
        let numbers = run.source("count", CAPACITY, move |emit| {
            for n in 0..1_000_000_u64 {
                emit.send(n)?;
                sent_tx.send(n)?;
            }
            Ok(())
        });
        let doubled = run.map("double", numbers, 2, CAPACITY, |n| Ok(n * 2));
        run.sink("write", doubled, move |_| {
            // Fail only once everything upstream is full: the source and both workers are
            // then blocked sending.
            while sent_rx.recv()? < 2 * CAPACITY as u64 {}
            Err("disk full".into())
        });
        run.join().expect_err("the run fails")
    });
    match error {
        PipelineError::Stage { stage, source } => {
            assert_eq!(stage, "write");
            assert_eq!(source.to_string(), "disk full");
        }
        other => panic!("expected a stage error, got {other:?}"),
    }
}

#[test]
fn a_failed_pipeline_leaves_its_parent_token_and_siblings_running() {
    let cohort = CancelToken::new();
    within_deadline({
        let cohort = cohort.clone();
        move || {
            let mut bad = Pipeline::new("bad-slide", &cohort);
            let tiles = bad.source("tiles", 2, |emit| {
                emit.send(1_u8)?;
                Err("unreadable slide".into())
            });
            bad.sink("write", tiles, |_| Ok(()));
            assert!(bad.join().is_err());

            let mut good = Pipeline::new("good-slide", &cohort);
            let tiles = good.source("tiles", 2, |emit| {
                for n in 0..10_u8 {
                    emit.send(n)?;
                }
                Ok(())
            });
            good.sink("write", tiles, |_| Ok(()));
            let report = good.join().expect("a sibling is unaffected");
            assert_eq!(report.stage("write").unwrap().items_in, 10);
        }
    });
    assert!(!cohort.is_cancelled());
}

#[test]
fn dropping_a_pipeline_without_join_stops_and_joins_its_threads() {
    let alive = Arc::new(());
    let (source_alive, sink_alive) = (Arc::clone(&alive), Arc::clone(&alive));
    let (started_tx, started_rx) = bounded(1);
    within_deadline(move || {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("abandoned", &cancel);
        let numbers = run.source("count", 2, move |emit| {
            let _alive = source_alive;
            loop {
                emit.send(0_u8)?;
            }
        });
        run.sink("consume", numbers, move |_| {
            let _alive = &sink_alive;
            let _ = started_tx.try_send(());
            Ok(())
        });
        started_rx.recv().unwrap();
        drop(run);
        assert!(
            !cancel.is_cancelled(),
            "only the pipeline's own token is cancelled"
        );
    });
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "a stage thread outlived the pipeline"
    );
}

#[test]
fn transform_batches_in_order() {
    let batches = within_deadline(|| {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("batching", &cancel);
        let numbers = run.source("count", 2, |emit| {
            for n in 0..10_u32 {
                emit.send(n)?;
            }
            Ok(())
        });
        let squared = run.map("square", numbers, 3, 2, |n| Ok(n * n));
        let batches = run.transform("batch", squared, 2, |input, emit| {
            let mut batch = Vec::new();
            for item in input {
                batch.push(item?);
                if batch.len() == 3 {
                    emit.send(std::mem::take(&mut batch))?;
                }
            }
            if !batch.is_empty() {
                emit.send(batch)?;
            }
            Ok(())
        });
        let (out_tx, out_rx) = unbounded();
        run.sink("collect", batches, move |batch| Ok(out_tx.send(batch)?));
        let report = run.join().expect("the run succeeds");
        let batch = report.stage("batch").unwrap();
        assert_eq!((batch.items_in, batch.items_out), (10, 4));
        out_rx.iter().collect::<Vec<_>>()
    });
    assert_eq!(
        batches,
        [vec![0, 1, 4], vec![9, 16, 25], vec![36, 49, 64], vec![81]]
    );
}

#[test]
fn the_report_names_the_slow_stage_and_serializes() {
    let report = within_deadline(|| {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("measured", &cancel);
        let numbers = run.source("count", 4, |emit| {
            for n in 0..200_u64 {
                emit.send(n)?;
            }
            Ok(())
        });
        let plus_one = run.map("increment", numbers, 2, 4, |n| Ok(n + 1));
        run.sink("write", plus_one, |n| {
            black_box(spin(200_000 + n));
            Ok(())
        });
        run.join().expect("the run succeeds")
    });

    assert_eq!(report.bottleneck.as_deref(), Some("write"));
    let source = report.stage("count").unwrap();
    assert_eq!(source.items_out, 200);
    assert!(
        source.output_wait_secs > source.busy_secs,
        "the source mostly waits for the slow sink: {source:?}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["pipeline"], "measured");
    assert_eq!(json["stages"][1]["kind"], "map");
    assert_eq!(json["stages"][2]["items_in"], 200);
}
