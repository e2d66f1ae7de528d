//! Corpus reading and thread settings.

use std::path::PathBuf;
use std::sync::Mutex;

use arrow_array::Array;
use arrow_array::ffi::to_ffi;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyCapsule, PyDict};
use tokensieve_core::io::{DocumentBatches, ReadOptions, ReadReport, parse_record, read_files};
use tokensieve_core::pool;

use crate::convert::{on_error, report_to_py};
use crate::errors::CoreError;
use crate::progress::Progress;

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
    let mut options = read_options(text_field, on_error, None)?;
    let pool = thread_pool(num_threads)?;
    let mut progress = Progress::new(None, &mut options);
    let read = py.detach(|| read_files(&paths, &options, &pool, &mut |docs| progress.advance(docs.len())));
    report_to_py(py, &progress.finish(read)?)
}

/// One parsed JSON Lines record: its text, its id, or why it is not a document (a skip
/// reason's name and the detail).
type ParsedLine = (Option<String>, Option<String>, Option<(&'static str, String)>);

/// The verdict of the readers on each of `lines` (JSON Lines records without their line
/// breaks), with the `id_field` of each document (see `tokensieve_core::io::parse_record`).
#[pyfunction]
#[pyo3(signature = (lines, *, text_field="text", id_field=None))]
pub fn parse_json_lines(
    py: Python<'_>,
    lines: Vec<PyBackedBytes>,
    text_field: &str,
    id_field: Option<&str>,
) -> Vec<ParsedLine> {
    py.detach(|| {
        lines
            .iter()
            .map(|line| match parse_record(line, text_field, id_field) {
                (Ok(text), id) => (Some(text.into_owned()), id, None),
                (Err(skip), _) => (None, None, Some((skip.reason.name(), skip.detail))),
            })
            .collect()
    })
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

/// Starts reading `paths` on a thread of its own; iterate the returned object for the batches.
#[pyfunction]
#[pyo3(signature = (paths, *, text_field="text", on_error="skip", num_threads=None, batch_rows=4096))]
pub fn read_batches(
    paths: Vec<PathBuf>,
    text_field: &str,
    on_error: &str,
    num_threads: Option<usize>,
    batch_rows: usize,
) -> PyResult<DocumentBatchReader> {
    let options = read_options(text_field, on_error, None)?;
    let batches = DocumentBatches::start(paths, options, thread_pool(num_threads)?, batch_rows).map_err(CoreError)?;
    Ok(DocumentBatchReader { batches: Mutex::new(batches), report: Mutex::new(None) })
}

/// The documents of corpus files in batches: each item is `(source, lines, (schema, array))`,
/// the file's index, the uint64 line (or row) of each document and the texts as Arrow
/// PyCapsules of a large_string array. The end of the iteration raises the read's error, if
/// any; then `report()` describes the whole read.
#[pyclass(module = "tokensieve._core")]
pub struct DocumentBatchReader {
    batches: Mutex<DocumentBatches>,
    report: Mutex<Option<ReadReport>>,
}

type BatchItem<'py> = (u32, Bound<'py, PyArray1<u64>>, (Bound<'py, PyCapsule>, Bound<'py, PyCapsule>));

#[pymethods]
impl DocumentBatchReader {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<BatchItem<'py>>> {
        let mut guard = self.batches.lock().expect("a batch read panicked");
        let batches: &mut DocumentBatches = &mut guard;
        let Some(batch) = py.detach(|| batches.next_batch()) else {
            if self.report.lock().expect("a batch read panicked").is_none() {
                let report = py.detach(|| batches.finish()).map_err(CoreError)?;
                *self.report.lock().expect("a batch read panicked") = Some(report);
            }
            return Ok(None);
        };
        let (array, schema) = to_ffi(&batch.texts.to_data())
            .map_err(|e| CoreError(tokensieve_core::Error::invalid(format!("exporting a batch to Arrow: {e}"))))?;
        let schema = PyCapsule::new_with_value(py, schema, c"arrow_schema")?;
        let array = PyCapsule::new_with_value(py, array, c"arrow_array")?;
        Ok(Some((batch.source, batch.lines.into_pyarray(py), (schema, array))))
    }

    /// The report of the read, once every batch has been taken.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &*self.report.lock().expect("a batch read panicked") {
            Some(report) => report_to_py(py, report),
            None => Err(CoreError(tokensieve_core::Error::invalid("the read has not finished")).into()),
        }
    }
}
