//! The bounded connections between stages.
//!
//! Every channel carries `(sequence number, item)`. Single-threaded producers number items
//! as they send them, so they arrive in order; a map stage's workers finish out of order,
//! and the consuming [`Stream`] puts their results back in order with a [`ReorderBuffer`]
//! whose size the map's [`Tickets`] bound. Every blocking call also watches the
//! [`CancelToken`], so no thread stays blocked once a run stops.

use super::reorder::ReorderBuffer;
use super::stats::StageStats;
use super::{CancelToken, PipelineError};
use crossbeam_channel::{select, Receiver, Sender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a blocking receive returned without a message.
enum Stop {
    /// Every sender is gone.
    Ended,
    Cancelled,
}

/// Receives from `rx` unless `cancel` fires first; `waited` gets the time spent blocked.
fn recv_or_cancel<M>(
    rx: &Receiver<M>,
    cancel: &CancelToken,
    waited: impl FnOnce(Duration),
) -> Result<M, Stop> {
    if cancel.is_cancelled() {
        return Err(Stop::Cancelled);
    }
    match rx.try_recv() {
        Ok(message) => return Ok(message),
        Err(TryRecvError::Disconnected) => return Err(Stop::Ended),
        Err(TryRecvError::Empty) => {}
    }
    let started = Instant::now();
    let received = select! {
        recv(rx) -> message => message.map_err(|_| Stop::Ended),
        recv(cancel.cancelled()) -> _ => Err(Stop::Cancelled),
    };
    waited(started.elapsed());
    received
}

/// The sending end of a connection, held by the producing stage (cloned per map worker).
pub(crate) struct Outlet<T> {
    tx: Sender<(u64, T)>,
    cancel: CancelToken,
    stats: Arc<StageStats>,
}

impl<T> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            cancel: self.cancel.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> Outlet<T> {
    /// Sends item number `seq`, blocking while the channel is full. Fails with
    /// [`PipelineError::Cancelled`] once the run is cancelled or the consumer is gone.
    pub(crate) fn send(&self, seq: u64, item: T) -> Result<(), PipelineError> {
        if self.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        self.stats.sample_queue(self.tx.len());
        match self.tx.try_send((seq, item)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(PipelineError::Cancelled),
            Err(TrySendError::Full(message)) => {
                let started = Instant::now();
                let sent = select! {
                    send(self.tx, message) -> sent => sent.is_ok(),
                    recv(self.cancel.cancelled()) -> _ => false,
                };
                self.stats.add_output_wait(started.elapsed());
                if !sent {
                    return Err(PipelineError::Cancelled);
                }
            }
        }
        self.stats.count_out();
        Ok(())
    }
}

/// How source and transform closures hand items to the next stage.
pub struct Emitter<T> {
    outlet: Outlet<T>,
    next_seq: u64,
}

impl<T> Emitter<T> {
    pub(crate) fn new(outlet: Outlet<T>) -> Self {
        Self {
            outlet,
            next_seq: 0,
        }
    }

    /// Sends `item` downstream, blocking while the next stage is behind (backpressure).
    ///
    /// An error means the run is stopping, or the next stage stopped reading: return it
    /// with `?` so the stage ends; it is not reported as this stage's failure.
    pub fn send(&mut self, item: T) -> Result<(), PipelineError> {
        self.outlet.send(self.next_seq, item)?;
        self.next_seq += 1;
        Ok(())
    }
}

/// Limits how many items a map stage holds between taking them from its input and its
/// consumer taking them out: one ticket per item, given back by the consumer. This is what
/// keeps the consumer's reorder buffer at a fixed size while one slow item holds up the rest.
#[derive(Clone)]
pub(crate) struct Tickets {
    rx: Receiver<()>,
    cancel: CancelToken,
    stats: Arc<StageStats>,
}

impl Tickets {
    /// Waits for a free ticket; waiting counts as output wait (the consumer is behind).
    pub(crate) fn acquire(&self) -> Result<(), PipelineError> {
        recv_or_cancel(&self.rx, &self.cancel, |waited| {
            self.stats.add_output_wait(waited)
        })
        // Ended: the consumer dropped its stream, nobody will take more items.
        .map_err(|_| PipelineError::Cancelled)
    }
}

/// The receiving end of a connection: the items of one stage, in the order they were
/// produced (map results are reordered here).
///
/// Yields `Err(PipelineError::Cancelled)` once if the run stops, so a consumer that
/// finalises something after its input ends (a file trailer) does not finalise a partial
/// run by mistake; with `?` it simply stops.
#[must_use = "a stream does nothing unless a stage consumes it"]
pub struct Stream<T> {
    rx: Receiver<(u64, T)>,
    reorder: ReorderBuffer<T>,
    /// Gives a ticket back to the producing map stage per item handed out.
    ticket_return: Option<Sender<()>>,
    cancel: CancelToken,
    /// The stage reading this stream, charged with its waiting time and item count.
    consumer: Option<Arc<StageStats>>,
    done: bool,
}

impl<T> Stream<T> {
    /// Attributes input waiting and counts to `stats` from now on.
    pub(crate) fn consumed_by(mut self, stats: Arc<StageStats>) -> Self {
        self.consumer = Some(stats);
        self
    }
}

impl<T> Iterator for Stream<T> {
    type Item = Result<T, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.reorder.pop() {
                if let Some(ticket_return) = &self.ticket_return {
                    // Never full: at most as many tickets are out as the channel holds.
                    let _ = ticket_return.try_send(());
                }
                if let Some(stats) = &self.consumer {
                    stats.count_in();
                }
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            let received = recv_or_cancel(&self.rx, &self.cancel, |waited| {
                if let Some(stats) = &self.consumer {
                    stats.add_input_wait(waited);
                }
            });
            match received {
                Ok((seq, item)) => self.reorder.insert(seq, item),
                // A producer that failed cancels before it drops its sender (`spawn` sees
                // to it), so an end seen here after a cancel is that failure, not a
                // complete input.
                Err(Stop::Ended) if !self.cancel.is_cancelled() => {
                    self.done = true;
                    return None;
                }
                Err(_) => {
                    self.done = true;
                    return Some(Err(PipelineError::Cancelled));
                }
            }
        }
    }
}

/// A connection for a producer that sends in order (one thread).
pub(crate) fn connect<T>(
    capacity: usize,
    producer: Arc<StageStats>,
    cancel: &CancelToken,
) -> (Outlet<T>, Stream<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let outlet = Outlet {
        tx,
        cancel: cancel.clone(),
        stats: producer,
    };
    let stream = Stream {
        rx,
        reorder: ReorderBuffer::new(1),
        ticket_return: None,
        cancel: cancel.clone(),
        consumer: None,
        done: false,
    };
    (outlet, stream)
}

/// A connection for a producer whose workers finish out of order: at most `window` items
/// are between the producer's intake and the consumer (see [`Tickets`]).
pub(crate) fn connect_windowed<T>(
    capacity: usize,
    window: usize,
    producer: Arc<StageStats>,
    cancel: &CancelToken,
) -> (Outlet<T>, Stream<T>, Tickets) {
    let (ticket_return, ticket_rx) = crossbeam_channel::bounded(window);
    for _ in 0..window {
        ticket_return
            .try_send(())
            .expect("the ticket channel holds exactly `window` tickets");
    }
    let tickets = Tickets {
        rx: ticket_rx,
        cancel: cancel.clone(),
        stats: Arc::clone(&producer),
    };
    let (outlet, mut stream) = connect(capacity, producer, cancel);
    stream.reorder = ReorderBuffer::new(window);
    stream.ticket_return = Some(ticket_return);
    (outlet, stream, tickets)
}
