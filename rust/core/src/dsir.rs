//! DSIR importance weights (Xie et al., 2023): the log-likelihood ratio of a document's hashed
//! n-grams under a target and a raw bag-of-n-grams model,
//! `log w(x) = sum_b c_x[b] * log_diff[b]` with `log_diff = log(p_t + 1e-8) - log(p_r + 1e-8)`
//! (computed by the caller), for one or several targets at once.

use rayon::prelude::*;

use std::path::Path;

use crate::error::{Error, Result};
use crate::memory::prefetching_next;
use crate::ngram::{Featurizer, with_scratch};
use crate::spill::{self, SpilledDocument};

/// Documents per parallel task.
const DOCS_PER_TASK: usize = 64;

/// Per-document results in document order: `targets` log-weights per document (row-major) and
/// the document's token count.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DocumentScores {
    pub log_weights: Vec<f64>,
    pub tokens: Vec<u32>,
}

impl DocumentScores {
    /// Room for `documents` documents of `targets` weights each, so that a read of a known size
    /// never reallocates (a doubling vector would hold up to twice the memory).
    pub fn with_capacity(documents: usize, targets: usize) -> Self {
        DocumentScores { log_weights: Vec::with_capacity(documents * targets), tokens: Vec::with_capacity(documents) }
    }
}

/// A fitted DSIR model: the feature space and `log_diff`, one row of `buckets` values per target.
pub struct ImportanceModel {
    featurizer: Featurizer,
    log_diff: Vec<f64>,
    targets: usize,
}

impl ImportanceModel {
    /// `log_diff` holds `targets` rows of `buckets` values (targets may be 0: token counts only).
    pub fn new(featurizer: Featurizer, log_diff: Vec<f64>, targets: usize) -> Result<Self> {
        let buckets = featurizer.space().buckets as usize;
        if log_diff.len() != targets * buckets {
            return Err(Error::invalid(format!(
                "log_diff has {} values, expected {targets} targets x {buckets} buckets",
                log_diff.len()
            )));
        }
        if log_diff.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("log_diff must be finite"));
        }
        Ok(ImportanceModel { featurizer, log_diff, targets })
    }

    pub fn targets(&self) -> usize {
        self.targets
    }

    /// Appends the log-weights and token counts of `docs`, in order, to `out`, computed on `pool`.
    pub fn score<D: AsRef<str> + Sync>(&self, pool: &rayon::ThreadPool, docs: &[D], out: &mut DocumentScores) {
        let pieces: Vec<DocumentScores> = pool.install(|| {
            docs.par_chunks(DOCS_PER_TASK)
                .map(|chunk| {
                    let mut buckets = Vec::new();
                    let mut piece = DocumentScores::default();
                    with_scratch(|scratch| {
                        for doc in prefetching_next(chunk) {
                            buckets.clear();
                            self.featurizer.for_each_bucket(doc.as_ref(), scratch, |b| buckets.push(b));
                            self.push_scores(buckets.as_slice(), &mut piece);
                        }
                    });
                    piece
                })
                .collect()
        });
        for piece in pieces {
            out.log_weights.extend_from_slice(&piece.log_weights);
            out.tokens.extend_from_slice(&piece.tokens);
        }
    }

    /// Appends the log-weights and token counts of the documents spilled to `path` while they
    /// were counted ([`crate::spill`]), in order, computed on `pool`: the same numbers as
    /// [`ImportanceModel::score`] over the documents themselves. Returns the documents read.
    pub fn score_spilled(&self, pool: &rayon::ThreadPool, path: &Path, out: &mut DocumentScores) -> Result<u64> {
        let buckets = self.featurizer.space().buckets;
        spill::for_each_spilled_batch(path, buckets, 4 << 20, &mut |batch| {
            let pieces: Result<Vec<DocumentScores>> = pool.install(|| {
                batch
                    .par_chunks(DOCS_PER_TASK)
                    .map(|chunk| {
                        if chunk.iter().any(|doc| doc.max_bucket().is_some_and(|b| b >= buckets)) {
                            let detail = "feature spill: bucket id out of range".to_string();
                            return Err(Error::Format { path: path.into(), detail });
                        }
                        let mut piece = DocumentScores::default();
                        chunk.iter().for_each(|doc| self.push_scores(doc, &mut piece));
                        Ok(piece)
                    })
                    .collect()
            });
            for piece in pieces? {
                out.log_weights.extend_from_slice(&piece.log_weights);
                out.tokens.extend_from_slice(&piece.tokens);
            }
            Ok(())
        })
    }

    /// Scores one document from its bucket ids.
    fn push_scores(&self, buckets: impl BucketIds, out: &mut DocumentScores) {
        let ngrams = self.featurizer.space().ngrams;
        let tokens = tokens_from_feature_count(buckets.len() as u64, ngrams);
        out.tokens.push(u32::try_from(tokens).unwrap_or(u32::MAX));
        let m = self.featurizer.space().buckets as usize;
        for row in self.log_diff.chunks_exact(m) {
            out.log_weights.push(buckets.gathered_sum(row));
        }
    }
}

/// A document's bucket ids, in emission order: featurised now, or read back from a spill.
trait BucketIds {
    fn len(&self) -> usize;
    /// `sum_i row[id_i]`, compensated ([`compensated_gather`]).
    fn gathered_sum(&self, row: &[f64]) -> f64;
}

impl BucketIds for &[u32] {
    fn len(&self) -> usize {
        <[u32]>::len(self)
    }
    fn gathered_sum(&self, row: &[f64]) -> f64 {
        compensated_gather(self.iter().copied(), row)
    }
}

impl BucketIds for &SpilledDocument<'_> {
    fn len(&self) -> usize {
        SpilledDocument::len(self)
    }
    fn gathered_sum(&self, row: &[f64]) -> f64 {
        if self.width == 2 {
            compensated_gather(self.ids.chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))), row)
        } else {
            compensated_gather(self.ids.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])), row)
        }
    }
}

/// The number of tokens U of a document with `features` n-gram features of orders 1..=n:
/// the U with `sum_{i<n} max(U - i, 0) == features`.
pub fn tokens_from_feature_count(features: u64, ngrams: usize) -> u64 {
    let n = ngrams as u64;
    let full = (features + n * (n - 1) / 2) / n;
    if full + 1 >= n {
        // Every order has windows: features = n*U - n(n-1)/2.
        return full;
    }
    // Fewer tokens than orders: features = U + (U-1) + ... + 1.
    (0..n).find(|u| u * (u + 1) / 2 == features).unwrap_or(full)
}

/// Compensated (Neumaier) summation: the weight does not depend on how many n-grams a document
/// has beyond the last bits, so it is comparable with any other summation order.
#[derive(Clone, Copy, Default)]
struct NeumaierSum {
    sum: f64,
    compensation: f64,
}

impl NeumaierSum {
    #[inline]
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        // The smaller addend's lost low bits; a select rather than a branch, whose direction
        // follows the signs of the weights and is hard to predict.
        let (big, small) = if self.sum.abs() >= x.abs() { (self.sum, x) } else { (x, self.sum) };
        self.compensation += (big - t) + small;
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// `sum_i row[id_i]` as four Neumaier sums taking the values in turn, added up at the end: four
/// independent chains of additions instead of one, each as accurate as a single compensated sum.
#[inline]
fn compensated_gather(mut ids: impl Iterator<Item = u32>, row: &[f64]) -> f64 {
    let mut lanes = [NeumaierSum::default(); 4];
    'values: loop {
        for lane in &mut lanes {
            let Some(b) = ids.next() else { break 'values };
            lane.add(row[b as usize]);
        }
    }
    let mut total = NeumaierSum::default();
    for lane in lanes {
        total.add(lane.sum);
        total.add(lane.compensation);
    }
    total.value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashFamily;
    use crate::ngram::FeatureSpace;
    use crate::text::Tokenizer;

    fn featurizer(ngrams: usize, buckets: u32) -> Featurizer {
        Featurizer::new(FeatureSpace {
            tokenizer: Tokenizer::WordPunct,
            hash: HashFamily::DsirSha256,
            ngrams,
            buckets,
            lowercase: true,
        })
        .unwrap()
    }

    #[test]
    fn token_count_inverts_feature_count() {
        for n in 1..=8usize {
            for u in 0..40u64 {
                let features: u64 = (0..n as u64).map(|i| u.saturating_sub(i)).sum();
                assert_eq!(tokens_from_feature_count(features, n), u, "n={n} u={u}");
            }
        }
    }

    #[test]
    fn weight_is_the_dot_product_of_counts_and_log_diff() {
        let f = featurizer(2, 97);
        let log_diff: Vec<f64> = (0..2 * 97).map(|i| (i as f64 * 0.37).sin()).collect();
        let model = ImportanceModel::new(f.clone(), log_diff.clone(), 2).unwrap();
        let docs = ["Alice went to the store", "", "the the the", "x"];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut scores = DocumentScores::default();
        model.score(&pool, &docs, &mut scores);
        assert_eq!(scores.tokens, [5, 0, 3, 1]);
        for (i, doc) in docs.iter().enumerate() {
            let mut expected = [0.0f64; 2];
            f.for_each_bucket(doc, &mut crate::ngram::Scratch::default(), |b| {
                for (t, e) in expected.iter_mut().enumerate() {
                    *e += log_diff[t * 97 + b as usize];
                }
            });
            for t in 0..2 {
                let got = scores.log_weights[2 * i + t];
                assert!(
                    (got - expected[t]).abs() <= 1e-12 * (1.0 + expected[t].abs()),
                    "{doc:?}: {got} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn compensated_gather_keeps_what_cancellation_would_lose() {
        // Integers, so the exact sum is an integer sum; a plain f64 sum loses every 1 and 3 next
        // to 1e16.
        let row = [1e16, 1.0, -1e16, 3.0, 0.5];
        for len in 0..40usize {
            let ids: Vec<u32> = (0..len).map(|i| ((i * 7 + i / 3) % 5) as u32).collect();
            let exact: f64 = ids.iter().map(|&b| (row[b as usize] * 2.0) as i128).sum::<i128>() as f64 / 2.0;
            assert_eq!(compensated_gather(ids.iter().copied(), &row), exact, "{ids:?}");
        }
    }

    #[test]
    fn a_spilled_bucket_id_out_of_range_is_an_error() {
        let path = std::env::temp_dir().join(format!("tokensieve-dsir-spill-{}", std::process::id()));
        let mut writer = spill::SpillWriter::create(&path).unwrap();
        let mut buffer = spill::SpillBuffer::default();
        buffer.push_document(&[1, 96], 2);
        buffer.push_document(&[3, 97], 2);
        writer.write(buffer).unwrap();
        writer.finish().unwrap();
        let model = ImportanceModel::new(featurizer(2, 97), vec![0.0; 97], 1).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let error = model.score_spilled(&pool, &path, &mut DocumentScores::default()).unwrap_err();
        assert!(error.to_string().contains("bucket id out of range"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn mismatched_or_non_finite_log_diff_is_rejected() {
        assert!(ImportanceModel::new(featurizer(2, 10), vec![0.0; 9], 1).is_err());
        assert!(ImportanceModel::new(featurizer(2, 10), vec![f64::NAN; 10], 1).is_err());
        assert!(ImportanceModel::new(featurizer(2, 10), vec![], 0).is_ok());
    }
}
