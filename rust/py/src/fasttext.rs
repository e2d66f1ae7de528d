//! `FastTextModel`: a supervised fastText classifier, read once, predicting in parallel with
//! the GIL released.

use std::path::PathBuf;

use numpy::ndarray::ArrayView2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokensieve_core::Error;
use tokensieve_core::fasttext::{
    FastTextModel as CoreModel, Loss, Newline, Preprocess, SharedFloats, TrainArgs, TrainProgress,
};
use tokensieve_core::io::{OnError, ReadReport, read_files};

use crate::convert::{HeldTexts, collect_documents, report_to_py};
use crate::errors::CoreError;
use crate::io::{read_options, thread_pool};
use crate::progress::{Progress, for_each_slice};

/// A supervised fastText model (`.bin` or `.ftz`).
#[pyclass(frozen, module = "tokensieve._core")]
pub struct FastTextModel {
    inner: CoreModel,
}

/// A read-only, C-contiguous float32 numpy array lent to the engine as an input matrix.
struct NumpyFloats {
    _array: Py<PyArray2<f32>>,
    data: *const f32,
    len: usize,
}

// SAFETY: the floats are only read. The array is read-only and holds its data at a fixed
// address for as long as `_array` keeps it alive.
unsafe impl Send for NumpyFloats {}
unsafe impl Sync for NumpyFloats {}

impl NumpyFloats {
    fn new(array: &Bound<'_, PyArray2<f32>>) -> PyResult<Self> {
        let writeable: bool = array.getattr("flags")?.getattr("writeable")?.extract()?;
        if writeable || !array.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "a shared input matrix must be a read-only, C-contiguous float32 array (as ray.get returns, or \
                 with flags.writeable = False)",
            ));
        }
        Ok(NumpyFloats { _array: array.clone().unbind(), data: array.data(), len: array.len() })
    }
}

impl SharedFloats for NumpyFloats {
    fn floats(&self) -> &[f32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `data` points to `len` aligned floats (a contiguous float32 array) that
        // `self._array` keeps alive and that nothing writes (the array is read-only).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

fn preprocess(newline: &str, strip: bool) -> PyResult<Preprocess> {
    Ok(Preprocess { newline: Newline::from_name(newline).map_err(CoreError)?, strip })
}

type Scores<'py> = (Bound<'py, PyArray1<f32>>, Bound<'py, PyDict>);
type Predicted<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<f32>>);

#[pymethods]
impl FastTextModel {
    /// Reads the model at `path`; with `shared_input` (a read-only float32 array equal to the
    /// file's dense input matrix), uses that array's memory instead of a copy of its own.
    #[new]
    #[pyo3(signature = (path, *, shared_input=None))]
    fn new(py: Python<'_>, path: PathBuf, shared_input: Option<&Bound<'_, PyArray2<f32>>>) -> PyResult<Self> {
        let inner = match shared_input {
            None => py.detach(|| CoreModel::load(&path)),
            Some(array) => {
                let shared = Box::new(NumpyFloats::new(array)?);
                py.detach(|| CoreModel::load_sharing_input(&path, shared))
            }
        };
        Ok(FastTextModel { inner: inner.map_err(CoreError)? })
    }

    /// The dense input matrix (`[rows, dim]`) as a read-only array over the model's own
    /// memory, or None for a quantised model.
    fn input_matrix<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyArray2<f32>>>> {
        let model = &slf.get().inner;
        let Some(floats) = model.input_floats() else { return Ok(None) };
        let shape = (floats.len() / model.dim(), model.dim());
        let view = ArrayView2::from_shape(shape, floats).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // SAFETY: the floats belong to the model, which the array keeps alive as its base and
        // which never changes them (the class is frozen).
        let array = unsafe { PyArray2::borrow_from_array(&view, slf.clone().into_any()) };
        // Its base exports no writable buffer, so numpy will not let the flag be set again.
        array.getattr("flags")?.setattr("writeable", false)?;
        Ok(Some(array))
    }

    /// Writes the model in fastText's format (version 12).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        Ok(py.detach(|| self.inner.save(&path)).map_err(CoreError)?)
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    #[getter]
    fn quantized(&self) -> bool {
        self.inner.is_quantized()
    }

    /// The arguments stored in the file, with the format `version` and the `loss` name.
    fn args<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let a = self.inner.args();
        let d = PyDict::new(py);
        d.set_item("version", self.inner.version())?;
        d.set_item("dim", a.dim)?;
        d.set_item("ws", a.ws)?;
        d.set_item("epoch", a.epoch)?;
        d.set_item("minCount", a.min_count)?;
        d.set_item("neg", a.neg)?;
        d.set_item("wordNgrams", a.word_ngrams)?;
        d.set_item("loss", a.loss.name())?;
        d.set_item("bucket", a.bucket)?;
        d.set_item("minn", a.minn)?;
        d.set_item("maxn", a.maxn)?;
        d.set_item("lrUpdateRate", a.lr_update_rate)?;
        d.set_item("t", a.t)?;
        Ok(d)
    }

    /// The dictionary entries (`labels=False`: words, else labels) as bytes, with their counts.
    #[pyo3(signature = (*, labels))]
    fn entries<'py>(&self, py: Python<'py>, labels: bool) -> (Vec<Bound<'py, PyBytes>>, Bound<'py, PyArray1<i64>>) {
        let dict = self.inner.dictionary();
        let ids = if labels { dict.nwords()..dict.nwords() + dict.nlabels() } else { 0..dict.nwords() };
        let names = ids.clone().map(|id| PyBytes::new(py, dict.entry(id))).collect();
        let counts: Vec<i64> = ids.map(|id| dict.count(id)).collect();
        (names, counts.into_pyarray(py))
    }

    /// The id of a label (its full name, prefix included), or None.
    fn label_id(&self, label: &str) -> Option<usize> {
        self.inner.label_id(label.as_bytes())
    }

    /// Top-k predictions of each item of `texts`: `(label ids, probabilities)`, both
    /// `[len(texts), min(k, nlabels)]`, padded with -1 and 0.
    #[pyo3(signature = (texts, *, k=1, threshold=0.0, newline="error", strip=false, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn predict_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        k: i64,
        threshold: f32,
        newline: &str,
        strip: bool,
        num_threads: Option<usize>,
    ) -> PyResult<Predicted<'py>> {
        let prep = preprocess(newline, strip)?;
        let k = self.inner.resolve_k(k).map_err(CoreError)?;
        let pool = thread_pool(num_threads)?;
        let held = HeldTexts::hold(texts)?;
        let mut report = ReadReport::default();
        let source = report.add_source(held.label(), 0);
        let docs = report.collect_aligned(source, held.records()?, OnError::Raise).map_err(CoreError)?;
        let (mut labels, mut probs) = (Vec::with_capacity(docs.len() * k), Vec::with_capacity(docs.len() * k));
        for_each_slice(py, &docs, |first, slice| {
            let out = self.inner.predict_batch(&pool, slice, first, &prep, k, threshold)?;
            labels.extend(out.labels);
            probs.extend(out.probs);
            Ok(())
        })?;
        let n = docs.len();
        // `resolve_k` already bounds k to the labels, as `predict_batch` does.
        Ok((labels.into_pyarray(py).reshape([n, k])?, probs.into_pyarray(py).reshape([n, k])?))
    }

    /// P(label) per document of `texts` as fastText reports it with k=-1, and the read report
    /// (skipped items have no score).
    #[pyo3(signature = (texts, *, label, newline="error", strip=false, on_error="skip", num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn score_texts<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        label: usize,
        newline: &str,
        strip: bool,
        on_error: &str,
        num_threads: Option<usize>,
    ) -> PyResult<Scores<'py>> {
        let prep = preprocess(newline, strip)?;
        let on_error = crate::convert::on_error(on_error)?;
        let pool = thread_pool(num_threads)?;
        let held = HeldTexts::hold(texts)?;
        let (report, docs) = collect_documents(&held, on_error)?;
        let mut scores = Vec::with_capacity(docs.len());
        for_each_slice(py, &docs, |first, slice| {
            scores.extend(self.inner.score_batch(&pool, slice, first, &prep, label)?);
            Ok(())
        })?;
        Ok((scores.into_pyarray(py), report_to_py(py, &report)?))
    }

    /// The same over the documents of corpus files, streamed.
    /// `progress(bytes_read, documents)` is called after each batch of documents.
    #[pyo3(signature = (
        paths, *, label, newline="error", strip=false, text_field="text", on_error="skip", num_threads=None,
        progress=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn score_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        label: usize,
        newline: &str,
        strip: bool,
        text_field: &str,
        on_error: &str,
        num_threads: Option<usize>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Scores<'py>> {
        let prep = preprocess(newline, strip)?;
        let mut options = read_options(text_field, on_error, None)?;
        let pool = thread_pool(num_threads)?;
        let mut progress = Progress::new(progress, &mut options);
        let mut scores = Vec::new();
        let read = py.detach(|| {
            read_files(&paths, &options, &pool, &mut |docs| {
                scores.extend(self.inner.score_batch(&pool, docs, scores.len(), &prep, label)?);
                progress.advance(docs.len())
            })
        });
        let report = progress.finish(read)?;
        Ok((scores.into_pyarray(py), report_to_py(py, &report)?))
    }

    /// fastText's word vector: the average of the word's row and character n-gram rows.
    fn word_vector<'py>(&self, py: Python<'py>, word: &str) -> Bound<'py, PyArray1<f32>> {
        self.inner.word_vector(word).into_pyarray(py)
    }

    /// fastText's sentence vector of a supervised model: the average of the text's rows.
    #[pyo3(signature = (text, *, newline="error", strip=false))]
    fn sentence_vector<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        newline: &str,
        strip: bool,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let prep = preprocess(newline, strip)?;
        Ok(self.inner.sentence_vector(text, &prep).map_err(CoreError)?.into_pyarray(py))
    }
}

/// Trains a supervised classifier on fastText-format text (`data`) or on the file at `path`,
/// on `thread` threads of its own with the GIL released. `progress(fraction, lr, loss, tokens)`
/// is called every 20 ms; an exception in it stops training and is raised.
#[pyfunction]
#[pyo3(signature = (
    *, path=None, data=None, lr, dim, ws, epoch, min_count, min_count_label, minn, maxn, neg, word_ngrams,
    loss, bucket, thread, lr_update_rate, t, label, seed, progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn train_supervised(
    py: Python<'_>,
    path: Option<PathBuf>,
    data: Option<&[u8]>,
    lr: f64,
    dim: i32,
    ws: i32,
    epoch: i32,
    min_count: i64,
    min_count_label: i64,
    minn: i32,
    maxn: i32,
    neg: i32,
    word_ngrams: i32,
    loss: &str,
    bucket: i32,
    thread: usize,
    lr_update_rate: i32,
    t: f64,
    label: &str,
    seed: i32,
    progress: Option<Py<PyAny>>,
) -> PyResult<FastTextModel> {
    let loss = Loss::from_name(loss).ok_or_else(|| {
        CoreError(Error::invalid(format!("loss must be \"softmax\", \"hs\", \"ns\" or \"ova\", got {loss:?}")))
    })?;
    let args = TrainArgs {
        lr,
        dim,
        ws,
        epoch,
        min_count,
        min_count_label,
        minn,
        maxn,
        neg,
        word_ngrams,
        loss,
        bucket,
        thread,
        lr_update_rate,
        t,
        label: label.as_bytes().to_vec(),
        seed,
    };
    let mut failure: Option<PyErr> = None;
    // Called about every 20 ms from the calling thread: the signal handlers run (Ctrl-C stops
    // the training) with or without a callback.
    let mut report = |p: TrainProgress| -> Result<(), Error> {
        Python::attach(|py| {
            py.check_signals()?;
            match &progress {
                Some(callback) => callback.call1(py, (p.progress, p.lr, p.loss, p.tokens)).map(drop),
                None => Ok(()),
            }
        })
        .map_err(|e| {
            failure = Some(e);
            Error::Stopped
        })
    };
    let result = py.detach(|| {
        let owned;
        let text = match (&path, data) {
            (Some(path), None) => {
                owned = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                &owned[..]
            }
            (None, Some(data)) => data,
            _ => return Err(Error::invalid("give exactly one of path and data")),
        };
        tokensieve_core::fasttext::train_supervised(text, &args, &mut report)
    });
    match (result, failure) {
        (Err(Error::Stopped), Some(e)) => Err(e),
        (result, _) => Ok(FastTextModel { inner: result.map_err(CoreError)? }),
    }
}
