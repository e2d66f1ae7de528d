//! Progress reports from long reads to a Python callable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use tokensieve_core::Error;
use tokensieve_core::io::ReadOptions;

use crate::errors::CoreError;

/// Calls `callback(bytes_read, documents)` after each batch of documents of a read (bytes of the
/// files as stored). An exception in the callback (Ctrl-C included) stops the read and is
/// raised from the call that read.
pub struct Progress {
    callback: Option<Py<PyAny>>,
    bytes_read: Arc<AtomicU64>,
    documents: u64,
    failure: Option<PyErr>,
}

impl Progress {
    /// Installs the byte counter into `options` when there is a callback.
    pub fn new(callback: Option<Py<PyAny>>, options: &mut ReadOptions) -> Self {
        let bytes_read = Arc::new(AtomicU64::new(0));
        if callback.is_some() {
            options.bytes_read = Some(bytes_read.clone());
        }
        Progress { callback, bytes_read, documents: 0, failure: None }
    }

    /// Reports `documents` more documents; takes the GIL only when there is a callback.
    pub fn advance(&mut self, documents: usize) -> Result<(), Error> {
        self.documents += documents as u64;
        let Some(callback) = &self.callback else { return Ok(()) };
        let bytes = self.bytes_read.load(Ordering::Relaxed);
        Python::attach(|py| {
            py.check_signals()?;
            callback.call1(py, (bytes, self.documents)).map(drop)
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
