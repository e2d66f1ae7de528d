//! `tokensieve._core`: the Python binding of `tokensieve-core`. It only converts arguments,
//! releases the GIL around engine calls, and maps engine errors onto `tokensieve.exceptions`.

mod convert;
mod dsir;
mod errors;
mod fasttext;
mod features;
mod io;
mod progress;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::dsir::{ImportanceModel, write_selected_files, write_selected_texts};
    #[pymodule_export]
    use super::fasttext::{FastTextModel, train_supervised};
    #[pymodule_export]
    use super::features::{NgramFeaturizer, tokenize};
    #[pymodule_export]
    use super::io::{DocumentBatchReader, parse_json_lines, read_batches, resolve_num_threads, scan_files};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        // The numpy crate imports numpy's C API on first use, running Python code: done lazily
        // after a long call, a Ctrl-C pending from it raised there, and the crate panicked
        // ("Failed to access NumPy array API capsule"). Importing it now leaves nothing to run.
        numpy::PyArray1::<f64>::zeros(m.py(), 0, false);
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
