//! `ImportanceModel`: DSIR log-weights and token counts of texts or files; writing selections.

use std::path::PathBuf;

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokensieve_core::Error;
use tokensieve_core::dsir::{DocumentScores, ImportanceModel as CoreModel};
use tokensieve_core::io::{self as core_io, Copies, OutputFormat, ReadReport, ScoredFile, ShardWriter, read_files};

use crate::convert::{HeldTexts, collect_documents, report_to_py, units};
use crate::errors::CoreError;
use crate::features::NgramFeaturizer;
use crate::io::{read_options, thread_pool};
use crate::progress::{Progress, for_each_slice};

/// A feature space with fitted `log_diff` rows, one per target.
#[pyclass(frozen, module = "tokensieve._core")]
pub struct ImportanceModel {
    inner: CoreModel,
}

type Scored<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<u32>>, Bound<'py, PyDict>);
/// Weights `[documents, targets]` and token counts.
type ScoreArrays<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<u32>>);

fn scores_to_py<'py>(
    py: Python<'py>,
    scores: DocumentScores,
    targets: usize,
    report: &ReadReport,
) -> PyResult<Scored<'py>> {
    let (weights, tokens) = score_arrays(py, scores, targets)?;
    Ok((weights, tokens, report_to_py(py, report)?))
}

/// `[documents, targets]` weights and the token counts, moved into numpy without a copy.
fn score_arrays(py: Python<'_>, scores: DocumentScores, targets: usize) -> PyResult<ScoreArrays<'_>> {
    let documents = scores.tokens.len();
    let weights = scores.log_weights.into_pyarray(py).reshape([documents, targets])?;
    Ok((weights, scores.tokens.into_pyarray(py)))
}

#[pymethods]
impl ImportanceModel {
    /// `log_diff`: float64 `[targets, buckets]` (targets may be 0 to count tokens only).
    #[new]
    fn new(featurizer: &NgramFeaturizer, log_diff: PyReadonlyArray2<'_, f64>) -> PyResult<Self> {
        let targets = log_diff.shape()[0];
        let values = log_diff.as_array().iter().copied().collect();
        Ok(ImportanceModel { inner: CoreModel::new(featurizer.inner.clone(), values, targets).map_err(CoreError)? })
    }

    /// Log-weights `[documents, targets]`, token counts and the read report of the items of
    /// `texts` (skipped items have no row).
    #[pyo3(signature = (texts, *, on_error="skip", num_threads=None, chunk_words=None))]
    fn score_texts<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        on_error: &str,
        num_threads: Option<usize>,
        chunk_words: Option<usize>,
    ) -> PyResult<Scored<'py>> {
        let on_error = crate::convert::on_error(on_error)?;
        let pool = thread_pool(num_threads)?;
        let held = HeldTexts::hold(texts)?;
        let (mut report, docs) = collect_documents(&held, on_error)?;
        let docs = units(&docs, chunk_words, &mut report)?;
        let mut scores = DocumentScores::default();
        for_each_slice(py, &docs, |_, slice| {
            self.inner.score(&pool, slice, &mut scores);
            Ok(())
        })?;
        scores_to_py(py, scores, self.inner.targets(), &report)
    }

    /// The same over the documents of corpus files, streamed.
    /// `expected_documents` (e.g. from an earlier read of the same files) sizes the results
    /// up front.
    #[pyo3(signature = (paths, *, text_field="text", on_error="skip", num_threads=None, progress=None, chunk_words=None, expected_documents=None))]
    #[allow(clippy::too_many_arguments)]
    fn score_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        text_field: &str,
        on_error: &str,
        num_threads: Option<usize>,
        progress: Option<Py<PyAny>>,
        chunk_words: Option<usize>,
        expected_documents: Option<usize>,
    ) -> PyResult<Scored<'py>> {
        let mut options = read_options(text_field, on_error, chunk_words)?;
        let pool = thread_pool(num_threads)?;
        let mut scores = DocumentScores::with_capacity(expected_documents.unwrap_or(0), self.inner.targets());
        let mut progress = Progress::new(progress, &mut options);
        let read = py.detach(|| {
            read_files(&paths, &options, &pool, &mut |docs| {
                self.inner.score(&pool, docs, &mut scores);
                progress.advance(docs.len())
            })
        });
        let report = progress.finish(read)?;
        scores_to_py(py, scores, self.inner.targets(), &report)
    }

    /// Log-weights `[documents, targets]` and token counts of the documents whose bucket ids a
    /// count spilled to `path` (`NgramFeaturizer.sum_counts_files(spill=...)`): the same numbers
    /// as `score_files` over the documents, without reading them again.
    #[pyo3(signature = (path, *, expected_documents=None, num_threads=None))]
    fn score_spilled<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        expected_documents: Option<usize>,
        num_threads: Option<usize>,
    ) -> PyResult<ScoreArrays<'py>> {
        let pool = thread_pool(num_threads)?;
        let mut scores = DocumentScores::with_capacity(expected_documents.unwrap_or(0), self.inner.targets());
        py.detach(|| self.inner.score_spilled(&pool, &path, &mut scores)).map_err(CoreError)?;
        score_arrays(py, scores, self.inner.targets())
    }
}

/// A contiguous uint8 or uint32 numpy array of copies per document, borrowed.
enum HeldCopies<'py> {
    U8(PyReadonlyArray1<'py, u8>),
    U32(PyReadonlyArray1<'py, u32>),
}

impl<'py> HeldCopies<'py> {
    fn hold(copies: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(array) = copies.extract::<PyReadonlyArray1<'py, u8>>() {
            return Ok(HeldCopies::U8(array));
        }
        match copies.extract::<PyReadonlyArray1<'py, u32>>() {
            Ok(array) => Ok(HeldCopies::U32(array)),
            Err(_) => Err(CoreError(Error::invalid("copies must be a 1-d uint8 or uint32 array")).into()),
        }
    }

    fn copies(&self) -> PyResult<Copies<'_>> {
        let not_contiguous = |e| CoreError(Error::invalid(format!("copies must be a contiguous array: {e}")));
        Ok(match self {
            HeldCopies::U8(array) => Copies::U8(array.as_slice().map_err(not_contiguous)?),
            HeldCopies::U32(array) => Copies::U32(array.as_slice().map_err(not_contiguous)?),
        })
    }
}

/// Writes `copies[k]` copies of the k-th document of `paths` into `out_dir/part-NNNNN.<format>`
/// shards, one per file with a selected document; returns `[(file index, path, documents)]`.
#[pyfunction]
#[pyo3(signature = (paths, documents_per_file, skipped_lines, copies, out_dir, *, format, text_field="text", on_error="skip", num_threads=None, chunk_words=None))]
#[allow(clippy::too_many_arguments)]
pub fn write_selected_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    documents_per_file: Vec<u64>,
    skipped_lines: Option<Vec<Vec<u64>>>,
    copies: &Bound<'_, PyAny>,
    out_dir: PathBuf,
    format: &str,
    text_field: &str,
    on_error: &str,
    num_threads: Option<usize>,
    chunk_words: Option<usize>,
) -> PyResult<Vec<(usize, PathBuf, u64)>> {
    let mut options = read_options(text_field, on_error, chunk_words)?;
    let format = OutputFormat::from_name(format).map_err(CoreError)?;
    let pool = thread_pool(num_threads)?;
    // No callback: it only runs the signal handlers (Ctrl-C stops the writing).
    let mut progress = Progress::new(None, &mut options);
    let held_copies = HeldCopies::hold(copies)?;
    let copies = held_copies.copies()?;
    if paths.len() != documents_per_file.len() || skipped_lines.as_ref().is_some_and(|s| s.len() != paths.len()) {
        return Err(CoreError(Error::invalid("paths, documents_per_file and skipped_lines differ in length")).into());
    }
    let mut skipped_lines = skipped_lines.map(Vec::into_iter);
    let files: Vec<ScoredFile> = paths
        .into_iter()
        .zip(documents_per_file)
        .map(|(path, documents)| ScoredFile {
            path,
            documents,
            skipped_lines: skipped_lines.as_mut().and_then(Iterator::next),
        })
        .collect();
    let written = py.detach(|| {
        core_io::write_selected_files(&files, copies, &options, &pool, &out_dir, format, &mut || progress.advance(0))
    });
    progress.finish(written)
}

/// Writes `copies[k]` copies of the k-th document (or chunk, with `chunk_words`) among `texts`
/// (skipped items are not documents) to the shard `path`; returns the count written.
#[pyfunction]
#[pyo3(signature = (texts, copies, path, *, format, text_field="text", on_error="skip", chunk_words=None))]
pub fn write_selected_texts<'py>(
    texts: &Bound<'py, PyAny>,
    copies: &Bound<'py, PyAny>,
    path: PathBuf,
    format: &str,
    text_field: &str,
    on_error: &str,
    chunk_words: Option<usize>,
) -> PyResult<u64> {
    let on_error = crate::convert::on_error(on_error)?;
    let format = OutputFormat::from_name(format).map_err(CoreError)?;
    let held = HeldTexts::hold(texts)?;
    let (mut report, docs) = collect_documents(&held, on_error)?;
    let docs = units(&docs, chunk_words, &mut report)?;
    let held_copies = HeldCopies::hold(copies)?;
    let copies = held_copies.copies()?;
    if copies.len() != docs.len() {
        let detail = format!("{} copies for {} documents", copies.len(), docs.len());
        return Err(CoreError(Error::invalid(detail)).into());
    }
    let mut writer = ShardWriter::create(&path, format, text_field, held.label()).map_err(CoreError)?;
    for (index, doc) in docs.iter().enumerate() {
        let n = copies.get(index);
        if n > 0 {
            writer.write(doc, n).map_err(CoreError)?;
        }
    }
    Ok(writer.finish().map_err(CoreError)?)
}
