//! fastText supervised classifiers: read `.bin` / `.ftz` files and predict exactly as
//! fastText 0.9.3 does (same labels, bit-identical float32 probabilities), in parallel.
//!
//! * [`model`] reads and checks a model file;
//! * [`dictionary`] turns tokens into feature rows with fastText's hashing quirks;
//! * [`matrix`] holds dense and product-quantised rows;
//! * [`preprocess`] names the newline policies of the pipelines that call fastText;
//! * [`predict`] reproduces fastText's numerics for the four losses;
//! * [`train`] trains classifiers with fastText's algorithm;
//! * [`FastTextModel::save`] writes fastText's format.

pub mod dictionary;
pub mod matrix;
pub mod model;
pub mod predict;
pub mod preprocess;
pub mod train;

pub use matrix::SharedFloats;
pub use model::{Args, FastTextModel, Loss};
pub use predict::{BatchPredictions, Scratch, std_log};
pub use preprocess::{Newline, Preprocess};
pub use train::{TrainArgs, TrainProgress, train_supervised};
