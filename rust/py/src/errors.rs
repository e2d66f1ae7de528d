//! The one mapping from engine errors onto the classes of `tokensieve.exceptions`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokensieve_core::Error;

/// An engine error on its way to Python.
pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(CoreError(error): CoreError) -> PyErr {
        Python::attach(|py| match to_py_err(py, &error) {
            Ok(err) => err,
            Err(import_failure) => import_failure,
        })
    }
}

fn to_py_err(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let exceptions = py.import("tokensieve.exceptions")?;
    let message = error.to_string();
    let attrs = PyDict::new(py);
    let class = match error {
        Error::InvalidArgument(_) => "InvalidArgumentError",
        Error::Stopped => "TokensieveError",
        Error::Io { path, source } => {
            attrs.set_item("path", path.display().to_string())?;
            match source.kind() {
                std::io::ErrorKind::NotFound => "CorpusNotFoundError",
                _ => "CorpusReadError",
            }
        }
        Error::Format { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "CorpusFormatError"
        }
        Error::Model { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "ModelFormatError"
        }
        Error::BadRecord { path, line, reason, detail } => {
            attrs.set_item("path", path)?;
            attrs.set_item("line", line)?;
            attrs.set_item("reason", reason.name())?;
            attrs.set_item("detail", detail)?;
            "BadRecordError"
        }
    };
    let instance = exceptions.getattr(class)?.call1((message,))?;
    for (key, value) in attrs.iter() {
        instance.setattr(key.cast::<pyo3::types::PyString>()?, value)?;
    }
    Ok(PyErr::from_value(instance))
}
