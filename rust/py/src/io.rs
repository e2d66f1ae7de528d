//! Corpus reading and thread settings.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokensieve_core::io::{ReadOptions, read_files};
use tokensieve_core::pool;

use crate::convert::{on_error, report_to_py};
use crate::errors::CoreError;

/// The thread count a call with `num_threads` would use.
#[pyfunction]
#[pyo3(signature = (num_threads=None))]
pub fn resolve_num_threads(num_threads: Option<usize>) -> PyResult<usize> {
    Ok(pool::resolve_num_threads(num_threads).map_err(CoreError)?)
}

/// Reads `paths` and returns the report of what was found, without keeping any text.
#[pyfunction]
#[pyo3(signature = (paths, *, text_field="text", on_error="skip", num_threads=None))]
pub fn scan_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    text_field: &str,
    on_error: &str,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = read_options(text_field, on_error, None)?;
    let pool = thread_pool(num_threads)?;
    let report = py.detach(|| read_files(&paths, &options, &pool, &mut |_| Ok(()))).map_err(CoreError)?;
    report_to_py(py, &report)
}

/// The package's pool for `num_threads` (see [`resolve_num_threads`]).
pub fn thread_pool(num_threads: Option<usize>) -> PyResult<std::sync::Arc<pool::ThreadPool>> {
    Ok(pool::thread_pool(pool::resolve_num_threads(num_threads).map_err(CoreError)?))
}

/// Reading options; `chunk_words` cuts documents into chunks of that many words.
pub fn read_options(text_field: &str, on_error_name: &str, chunk_words: Option<usize>) -> PyResult<ReadOptions> {
    Ok(ReadOptions {
        text_field: text_field.to_owned(),
        on_error: on_error(on_error_name)?,
        chunk_words,
        ..Default::default()
    })
}
