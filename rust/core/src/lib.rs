//! tokensieve-core: the engine behind the `tokensieve` Python package, free of Python.
//!
//! One module per concern: [`text`] splits text into words, [`hash`] names and implements the
//! frozen hash families, [`ngram`] turns words or token ids into hashed n-gram counts, [`io`]
//! streams documents out of corpus files while accounting for every record, and [`pool`] owns
//! the thread pools everything runs on, [`spill`] keeps per-document bucket ids on disk for a
//! second pass, and [`fasttext`] reads fastText classifiers and
//! reproduces their predictions bit for bit.

pub mod dsir;
pub mod error;
pub mod fasttext;
pub mod hash;
pub mod io;
mod memory;
pub mod ngram;
pub mod pool;
pub mod spill;
pub mod text;

pub use error::{Error, Result};
