//! tokensieve-core: the engine behind the `tokensieve` Python package, free of Python.
//!
//! One module per concern: [`text`] splits text into words, [`hash`] names and implements the
//! frozen hash families ([`fast_batch`] computes `fast-v1` for many tokens at once, with AVX2 or
//! AVX-512), [`ngram`] turns words or token ids into hashed n-gram counts, [`io`] streams
//! documents out of corpus files while accounting for every record, [`pool`] owns the thread
//! pools everything runs on, [`spill`] keeps per-document bucket ids on disk for a second pass,
//! [`memory`] holds prefetch and huge-page hints, and [`fasttext`] reads fastText classifiers
//! and reproduces their predictions bit for bit.

pub mod dsir;
pub mod error;
pub mod fast_batch;
pub mod fasttext;
pub mod hash;
pub mod io;
pub mod memory;
pub mod ngram;
pub mod pool;
mod simd;
pub mod spill;
pub mod text;

pub use error::{Error, Result};
