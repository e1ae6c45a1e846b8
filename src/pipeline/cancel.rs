//! Cooperative cancellation shared by every thread of a run.

use super::PipelineError;
use crossbeam_channel::{Receiver, Sender};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// A cloneable stop flag that also keeps the first error that caused the stop.
///
/// Blocked threads wake through [`CancelToken::cancelled`]: a channel that never carries a
/// message and is disconnected on cancel, so a `select!` over it and a data channel returns
/// at once; nothing polls or sleeps.
///
/// Tokens form a tree: cancelling a token cancels its [children](CancelToken::child), but a
/// child's failure stays in the child. A cohort run gives each slide's pipeline a child of
/// the Ctrl-C token: Ctrl-C stops every slide, one bad slide stops only itself.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cancelled: AtomicBool,
    first_error: Mutex<Option<PipelineError>>,
    /// Never sends; dropping it disconnects `woken`, which wakes all waiters at once.
    waker: Mutex<Option<Sender<Infallible>>>,
    woken: Receiver<Infallible>,
    children: Mutex<Vec<Weak<Inner>>>,
}

impl Default for Inner {
    fn default() -> Self {
        let (waker, woken) = crossbeam_channel::bounded(0);
        Self {
            cancelled: AtomicBool::new(false),
            first_error: Mutex::new(None),
            waker: Mutex::new(Some(waker)),
            woken,
            children: Mutex::new(Vec::new()),
        }
    }
}

/// No code runs user callbacks under these locks, so a poisoned lock holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled together with `self` (now, if `self` already is), whose own
    /// cancellation and errors do not reach `self`.
    pub fn child(&self) -> Self {
        let child = Self::new();
        {
            let mut children = lock(&self.inner.children);
            // Finished pipelines drop their tokens; forget them so a long cohort stays small.
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.inner));
        }
        // Checked after registering: a concurrent `cancel` either saw the child or had
        // already set the flag.
        if self.is_cancelled() {
            child.cancel();
        }
        child
    }

    /// Stops everything using this token or one of its children. Idempotent.
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        drop(lock(&self.inner.waker).take());
        let children = std::mem::take(&mut *lock(&self.inner.children));
        for inner in children.iter().filter_map(Weak::upgrade) {
            CancelToken { inner }.cancel();
        }
    }

    /// Records `error` as the reason for stopping, unless an earlier error or a cancel
    /// came first (then `error` is most likely a consequence of that), and cancels.
    pub fn fail(&self, error: PipelineError) {
        {
            let mut first = lock(&self.inner.first_error);
            if first.is_none() && !self.is_cancelled() {
                *first = Some(error);
            }
        }
        self.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Becomes ready (disconnected) when the token is cancelled; put it in a
    /// `crossbeam_channel::select!` next to the channel a thread blocks on.
    pub fn cancelled(&self) -> &Receiver<Infallible> {
        &self.inner.woken
    }

    /// Moves the recorded first error out, leaving none.
    pub(crate) fn take_error(&self) -> Option<PipelineError> {
        lock(&self.inner.first_error).take()
    }
}
