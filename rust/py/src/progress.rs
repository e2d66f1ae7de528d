//! Progress reports from long reads to a Python callable, and Ctrl-C during them and during
//! long calls over texts in memory.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokensieve_core::Error;
use tokensieve_core::io::ReadOptions;

use crate::errors::CoreError;

/// Calls `callback(bytes_read, documents)` after each batch of documents of a read (bytes of the
/// files as stored). An exception in the callback stops the read and is raised from the call
/// that read; so does Ctrl-C (a signal handler raising), callback or not.
pub struct Progress {
    callback: Option<Py<PyAny>>,
    bytes_read: Arc<AtomicU64>,
    documents: u64,
    failure: Option<PyErr>,
    signals_checked: Instant,
}

/// How often a read without a callback takes the GIL to run Python's signal handlers. Python
/// runs them only when the main thread executes Python code, which it does not during a call
/// that released the GIL: without these checks Ctrl-C would wait for the whole read.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

impl Progress {
    /// Installs the byte counter into `options` when there is a callback.
    pub fn new(callback: Option<Py<PyAny>>, options: &mut ReadOptions) -> Self {
        let bytes_read = Arc::new(AtomicU64::new(0));
        if callback.is_some() {
            options.bytes_read = Some(bytes_read.clone());
        }
        Progress { callback, bytes_read, documents: 0, failure: None, signals_checked: Instant::now() }
    }

    /// Reports `documents` more documents. Takes the GIL for the callback, and without one
    /// every [`SIGNAL_CHECK_INTERVAL`] to run the signal handlers (they do nothing off the main
    /// thread, where the read runs when Python calls it from there).
    pub fn advance(&mut self, documents: usize) -> Result<(), Error> {
        self.documents += documents as u64;
        if self.callback.is_none() && self.signals_checked.elapsed() < SIGNAL_CHECK_INTERVAL {
            return Ok(());
        }
        self.signals_checked = Instant::now();
        let bytes = self.bytes_read.load(Ordering::Relaxed);
        Python::attach(|py| {
            py.check_signals()?;
            match &self.callback {
                Some(callback) => callback.call1(py, (bytes, self.documents)).map(drop),
                None => Ok(()),
            }
        })
        .map_err(|e| {
            self.failure = Some(e);
            Error::Stopped
        })
    }

    /// The result of the read, with the callback's exception in place of [`Error::Stopped`].
    pub fn finish<T>(self, result: Result<T, Error>) -> PyResult<T> {
        match (result, self.failure) {
            (Err(Error::Stopped), Some(failure)) => Err(failure),
            (result, _) => Ok(result.map_err(CoreError)?),
        }
    }
}

/// Text bytes per slice of an in-memory call over texts: tens of milliseconds of work at most.
const SLICE_BYTES: usize = 8 << 20;

/// Token ids per slice of an in-memory call over token-id documents (as [`SLICE_BYTES`]).
const SLICE_IDS: usize = 2 << 20;

/// Runs `work(first_index, slice)` with the GIL released over consecutive slices of `docs` of
/// about [`SLICE_BYTES`] of text each (at least one document), in order, and Python's signal
/// handlers between slices, so that Ctrl-C stops a long call over texts in memory within a
/// slice instead of at its end (the engine's parallel loops do not stop on their own).
pub fn for_each_slice<D: AsRef<str> + Sync>(
    py: Python<'_>,
    docs: &[D],
    work: impl FnMut(usize, &[D]) -> Result<(), Error> + Send,
) -> PyResult<()> {
    for_each_slice_of(py, docs, |doc| doc.as_ref().len(), SLICE_BYTES, work)
}

/// [`for_each_slice`] over token-id documents, given as their ranges of ids, [`SLICE_IDS`] ids
/// a slice.
pub fn for_each_id_slice(
    py: Python<'_>,
    ranges: &[Range<usize>],
    work: impl FnMut(usize, &[Range<usize>]) -> Result<(), Error> + Send,
) -> PyResult<()> {
    for_each_slice_of(py, ranges, |range| range.len(), SLICE_IDS, work)
}

/// Slices of `items` whose `size`s add up to about `limit` each (at least one item); see
/// [`for_each_slice`].
fn for_each_slice_of<T: Sync>(
    py: Python<'_>,
    items: &[T],
    size: impl Fn(&T) -> usize,
    limit: usize,
    mut work: impl FnMut(usize, &[T]) -> Result<(), Error> + Send,
) -> PyResult<()> {
    let mut start = 0;
    while start < items.len() {
        let (mut end, mut total) = (start, 0);
        while end < items.len() && (end == start || total < limit) {
            total += size(&items[end]);
            end += 1;
        }
        let slice = &items[start..end];
        py.detach(|| work(start, slice)).map_err(CoreError)?;
        py.check_signals()?;
        start = end;
    }
    Ok(())
}
