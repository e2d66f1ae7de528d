//! `NgramFeaturizer`: hashed n-gram counts of texts, token ids or files.

use std::ops::Range;
use std::path::PathBuf;

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tokensieve_core::hash::HashFamily;
use tokensieve_core::io::{ReadReport, read_files};
use tokensieve_core::ngram::{CountAccumulator, CsrCounts, FeatureSpace, Featurizer, TokenId, id_document_ranges};
use tokensieve_core::spill::SpillWriter;
use tokensieve_core::text::Tokenizer;
use tokensieve_core::{Error, pool};

use crate::convert::{HeldTexts, collect_documents, counts_to_py, csr_to_py, report_to_py, units};
use crate::errors::CoreError;
use crate::io::{read_options, thread_pool};
use crate::progress::{Progress, for_each_id_slice, for_each_slice};

/// A hashed n-gram feature space and the featuriser over it.
#[pyclass(frozen, module = "tokensieve._core")]
pub struct NgramFeaturizer {
    pub(crate) inner: Featurizer,
}

/// Token ids as numpy arrays of the dtypes read without a copy.
#[derive(FromPyObject)]
pub enum IdArray<'py> {
    U32(PyReadonlyArray1<'py, u32>),
    I64(PyReadonlyArray1<'py, i64>),
    U64(PyReadonlyArray1<'py, u64>),
}

fn offsets_vec(offsets: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u64>> {
    offsets
        .as_array()
        .iter()
        .map(|&o| u64::try_from(o).map_err(|_| PyValueError::new_err("offsets must be >= 0")))
        .collect()
}

/// Keeps the documents whose running index is set in an optional mask.
struct DocumentFilter<'a> {
    include: Option<&'a [bool]>,
    seen: usize,
}

impl<'a> DocumentFilter<'a> {
    fn new(include: Option<&'a PyReadonlyArray1<'_, bool>>) -> PyResult<Self> {
        let include = include
            .map(|a| a.as_slice().map_err(|e| CoreError(Error::invalid(format!("include must be contiguous: {e}")))))
            .transpose()?;
        Ok(DocumentFilter { include, seen: 0 })
    }

    /// Adds the next documents (those included) to `acc`.
    fn add<D: AsRef<str> + Sync>(&mut self, acc: &CountAccumulator, pool: &pool::ThreadPool, docs: &[D]) {
        let first = self.seen;
        self.seen += docs.len();
        match self.include {
            None => acc.add_texts(pool, docs),
            Some(mask) => {
                let chosen: Vec<&D> = docs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask.get(first + i).copied().unwrap_or(false))
                    .map(|(_, d)| d)
                    .collect();
                acc.add_texts(pool, &chosen);
            }
        }
    }

    fn check_complete(&self, documents: u64) -> PyResult<()> {
        match self.include {
            Some(mask) if mask.len() as u64 != documents => Err(CoreError(Error::invalid(format!(
                "include has {} entries but the source has {documents} documents (did it change?)",
                mask.len()
            )))
            .into()),
            _ => Ok(()),
        }
    }
}

impl NgramFeaturizer {
    /// Runs `f` on the ids as a slice of their own dtype.
    fn with_ids<R>(ids: &IdArray<'_>, f: impl FnOnce(&dyn IdSlice) -> R) -> PyResult<R> {
        let contiguous = |e| PyValueError::new_err(format!("ids must be a contiguous 1-D array: {e}"));
        Ok(match ids {
            IdArray::U32(a) => f(&a.as_slice().map_err(contiguous)?),
            IdArray::I64(a) => f(&a.as_slice().map_err(contiguous)?),
            IdArray::U64(a) => f(&a.as_slice().map_err(contiguous)?),
        })
    }
}

/// Dispatches the engine's generic id functions over the supported dtypes.
trait IdSlice: Sync {
    fn len(&self) -> usize;
    fn transform(
        &self,
        f: &Featurizer,
        pool: &pool::ThreadPool,
        ranges: &[Range<usize>],
    ) -> tokensieve_core::Result<tokensieve_core::ngram::CsrCounts>;
    fn accumulate(
        &self,
        acc: &CountAccumulator,
        pool: &pool::ThreadPool,
        ranges: &[Range<usize>],
    ) -> tokensieve_core::Result<()>;
}

impl<T: TokenId> IdSlice for &[T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn transform(
        &self,
        f: &Featurizer,
        pool: &pool::ThreadPool,
        ranges: &[Range<usize>],
    ) -> tokensieve_core::Result<tokensieve_core::ngram::CsrCounts> {
        f.transform_id_ranges(pool, self, ranges)
    }
    fn accumulate(
        &self,
        acc: &CountAccumulator,
        pool: &pool::ThreadPool,
        ranges: &[Range<usize>],
    ) -> tokensieve_core::Result<()> {
        acc.add_id_ranges(pool, self, ranges)
    }
}

#[pymethods]
impl NgramFeaturizer {
    #[new]
    #[pyo3(signature = (*, ngrams, buckets, tokenizer, hash, lowercase))]
    fn new(ngrams: usize, buckets: u32, tokenizer: &str, hash: &str, lowercase: bool) -> PyResult<Self> {
        let space = FeatureSpace {
            tokenizer: Tokenizer::from_name(tokenizer).map_err(CoreError)?,
            hash: HashFamily::from_name(hash).map_err(CoreError)?,
            ngrams,
            buckets,
            lowercase,
        };
        Ok(NgramFeaturizer { inner: Featurizer::new(space).map_err(CoreError)? })
    }

    #[getter]
    fn ngrams(&self) -> usize {
        self.inner.space().ngrams
    }
    #[getter]
    fn buckets(&self) -> u32 {
        self.inner.space().buckets
    }
    #[getter]
    fn tokenizer(&self) -> &'static str {
        self.inner.space().tokenizer.name()
    }
    #[getter]
    fn hash(&self) -> &'static str {
        self.inner.space().hash.name()
    }
    #[getter]
    fn lowercase(&self) -> bool {
        self.inner.space().lowercase
    }

    /// One row of counts per item of `texts` (an empty row for a skipped item):
    /// `(data, indices, indptr, report)`.
    #[pyo3(signature = (texts, *, on_error="raise", num_threads=None))]
    fn transform_texts<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        on_error: &str,
        num_threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let on_error = crate::convert::on_error(on_error)?;
        let pool = thread_pool(num_threads)?;
        let held = HeldTexts::hold(texts)?;
        let mut report = ReadReport::default();
        let source = report.add_source(held.label(), 0);
        let docs = report.collect_aligned(source, held.records()?, on_error).map_err(CoreError)?;
        let mut csr = self.inner.transform(&pool, &docs[..0]);
        for_each_slice(py, &docs, |_, slice| {
            csr.append(self.inner.transform(&pool, slice));
            Ok(())
        })?;
        Ok((csr_to_py(py, csr, self.inner.space().buckets)?, report_to_py(py, &report)?))
    }

    /// Total counts over the items of `texts`: `(counts, report)`. With `include`, only the
    /// documents k (skipped items are not documents) with `include[k]` count.
    #[pyo3(signature = (texts, *, include=None, on_error="skip", num_threads=None, chunk_words=None))]
    #[allow(clippy::too_many_arguments)]
    fn sum_counts_texts<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        include: Option<PyReadonlyArray1<'py, bool>>,
        on_error: &str,
        num_threads: Option<usize>,
        chunk_words: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyDict>)> {
        let on_error = crate::convert::on_error(on_error)?;
        let pool = thread_pool(num_threads)?;
        let held = HeldTexts::hold(texts)?;
        let (mut report, docs) = collect_documents(&held, on_error)?;
        let docs = units(&docs, chunk_words, &mut report)?;
        let mut filter = DocumentFilter::new(include.as_ref())?;
        let acc = CountAccumulator::new(self.inner.clone(), &pool);
        for_each_slice(py, &docs, |_, slice| {
            filter.add(&acc, &pool, slice);
            Ok(())
        })?;
        let counts = acc.finish();
        filter.check_complete(report.units())?;
        Ok((counts_to_py(py, counts), report_to_py(py, &report)?))
    }

    /// Total counts over the documents of corpus files: `(counts, report)`; `include` as for
    /// texts, over documents in read order.
    /// With `spill`, each document's bucket ids are also written to that file (see
    /// `ImportanceModel.score_spilled`); it cannot be combined with `include`.
    #[pyo3(signature = (paths, *, include=None, text_field="text", on_error="skip", num_threads=None, progress=None, chunk_words=None, spill=None))]
    #[allow(clippy::too_many_arguments)]
    fn sum_counts_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        include: Option<PyReadonlyArray1<'py, bool>>,
        text_field: &str,
        on_error: &str,
        num_threads: Option<usize>,
        progress: Option<Py<PyAny>>,
        chunk_words: Option<usize>,
        spill: Option<PathBuf>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyDict>)> {
        let mut options = read_options(text_field, on_error, chunk_words)?;
        let pool = thread_pool(num_threads)?;
        let mut filter = DocumentFilter::new(include.as_ref())?;
        if include.is_some() && spill.is_some() {
            return Err(
                CoreError(Error::invalid("spill needs every document: it cannot be combined with include")).into()
            );
        }
        let mut spill = spill.map(|path| SpillWriter::create(&path)).transpose().map_err(CoreError)?;
        let mut progress = Progress::new(progress, &mut options);
        let read = py.detach(|| {
            let acc = CountAccumulator::new(self.inner.clone(), &pool);
            let report = read_files(&paths, &options, &pool, &mut |docs| {
                match &mut spill {
                    Some(writer) => acc.add_texts_spilling(&pool, docs, writer)?,
                    None => filter.add(&acc, &pool, docs),
                }
                progress.advance(docs.len())
            })?;
            if let Some(writer) = spill {
                writer.finish()?;
            }
            Ok((acc.finish(), report))
        });
        let (counts, report) = progress.finish(read)?;
        filter.check_complete(report.units())?;
        Ok((counts_to_py(py, counts), report_to_py(py, &report)?))
    }

    /// One row of counts per token-id document (`ids[offsets[i]:offsets[i+1]]`):
    /// `(data, indices, indptr)`.
    #[pyo3(signature = (ids, offsets, *, num_threads=None))]
    fn transform_ids<'py>(
        &self,
        py: Python<'py>,
        ids: IdArray<'py>,
        offsets: PyReadonlyArray1<'py, i64>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let pool = thread_pool(num_threads)?;
        let offsets = offsets_vec(&offsets)?;
        let csr = Self::with_ids(&ids, |ids| {
            let ranges = id_document_ranges(ids.len(), &offsets).map_err(CoreError)?;
            let mut csr = CsrCounts { indptr: vec![0], ..CsrCounts::default() };
            for_each_id_slice(py, &ranges, |_, slice| {
                csr.append(ids.transform(&self.inner, &pool, slice)?);
                Ok(())
            })?;
            PyResult::Ok(csr)
        })??;
        csr_to_py(py, csr, self.inner.space().buckets)
    }

    /// Total counts over token-id documents.
    #[pyo3(signature = (ids, offsets, *, num_threads=None))]
    fn sum_counts_ids<'py>(
        &self,
        py: Python<'py>,
        ids: IdArray<'py>,
        offsets: PyReadonlyArray1<'py, i64>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let pool = thread_pool(num_threads)?;
        let offsets = offsets_vec(&offsets)?;
        let counts = Self::with_ids(&ids, |ids| {
            let ranges = id_document_ranges(ids.len(), &offsets).map_err(CoreError)?;
            let acc = CountAccumulator::new(self.inner.clone(), &pool);
            for_each_id_slice(py, &ranges, |_, slice| ids.accumulate(&acc, &pool, slice))?;
            PyResult::Ok(acc.finish())
        })??;
        Ok(counts_to_py(py, counts))
    }
}

/// The tokens of `text` as the featuriser sees them (lowercased first when asked).
#[pyfunction]
#[pyo3(signature = (text, *, tokenizer, lowercase))]
pub fn tokenize(text: &str, tokenizer: &str, lowercase: bool) -> PyResult<Vec<String>> {
    let tokenizer = Tokenizer::from_name(tokenizer).map_err(CoreError)?;
    let mut scratch = String::new();
    let text = if lowercase { tokensieve_core::text::lowercase_into(text, &mut scratch) } else { text };
    let mut spans = Vec::new();
    tokenizer.split_into(text, &mut spans);
    Ok(spans.into_iter().map(|span| text[span].to_owned()).collect())
}
