//! Predictions that reproduce fastText 0.9.3's float32 probabilities bit for bit.
//!
//! The numerics follow fastText's compiled code (x86-64 baseline, no fused multiply-add):
//!
//! * hidden = the f32 sum of the feature rows in feature order, times `(float)(1.0 / n)`;
//! * output dot products accumulate sequentially in f32 from 0;
//! * softmax: `e_i = (float)exp((double)(out_i - max))` with the double `exp`, `z = Σ e_i` in
//!   f32, `p_i = e_i / z`;
//! * ns and ova: fastText's 513-entry sigmoid table, not an exact sigmoid;
//! * hs: a depth-first walk of the Huffman tree with `f = (float)(1.0 / (1.f + expf(-dot)))`;
//! * scores are `std_log(p) = (float)log((double)p + 1e-5)`, the top k are kept in a binary
//!   heap with libstdc++'s algorithms (so ties come out in fastText's order), and the returned
//!   probability is `expf(score)`, about `p + 1e-5` (up to 1.00001: fastText does not clip).
//!
//! Rust's `f32::exp`, `f64::exp` and `f64::ln` call the platform's `expf`, `exp` and `log`,
//! which on Linux are glibc's, as in fastText.

use std::iter::once;
use std::ops::Range;

use rayon::prelude::*;

use super::dictionary::EOS;
use super::model::{FastTextModel, Loss};
use super::preprocess::{NewlineFound, Preprocess};
use crate::error::{Error, Result};
use crate::memory::prefetching_next;
use crate::text::Tokenizer;

/// fastText's `std_log`: the log of `p + 1e-5`, rounded to f32.
#[inline]
pub fn std_log(p: f32) -> f32 {
    (f64::from(p) + 1e-5).ln() as f32
}

/// A (score, label) pair as fastText's prediction heap holds it.
type Scored = (f32, i32);

/// The heap order: `a` before `b` when its score is greater (a min-heap on scores).
#[inline]
fn greater(a: &Scored, b: &Scored) -> bool {
    a.0 > b.0
}

/// libstdc++'s `__push_heap`: moves `value` up from `hole` towards `top`.
fn sift_up(heap: &mut [Scored], mut hole: usize, top: usize, value: Scored) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !greater(&heap[parent], &value) {
            break;
        }
        heap[hole] = heap[parent];
        hole = parent;
    }
    heap[hole] = value;
}

/// libstdc++'s `__adjust_heap` over `heap[..len]` from the root.
fn adjust_heap(heap: &mut [Scored], len: usize, value: Scored) {
    let mut hole = 0;
    let mut child = 0;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if greater(&heap[child], &heap[child - 1]) {
            child -= 1;
        }
        heap[hole] = heap[child];
        hole = child;
    }
    if len & 1 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        heap[hole] = heap[child - 1];
        hole = child - 1;
    }
    sift_up(heap, hole, 0, value);
}

/// `std::push_heap` of the last element.
fn push_heap(heap: &mut [Scored]) {
    let last = heap.len() - 1;
    sift_up(heap, last, 0, heap[last]);
}

/// `std::pop_heap`: the front moves to the back.
fn pop_heap(heap: &mut [Scored]) {
    let len = heap.len();
    if len > 1 {
        let value = heap[len - 1];
        heap[len - 1] = heap[0];
        adjust_heap(heap, len - 1, value);
    }
}

/// `std::sort_heap`: descending scores.
fn sort_heap(heap: &mut [Scored]) {
    let mut last = heap.len();
    while last > 1 {
        last -= 1;
        let value = heap[last];
        heap[last] = heap[0];
        adjust_heap(heap, last, value);
    }
}

/// Offers `(score, label)` to a heap of at most `k` (fastText's `findKBest` step).
#[inline]
fn offer(heap: &mut Vec<Scored>, k: usize, score: f32, label: i32) {
    if heap.len() == k && score < heap[0].0 {
        return;
    }
    heap.push((score, label));
    push_heap(heap);
    if heap.len() > k {
        pop_heap(heap);
        heap.pop();
    }
}

/// Working memory of one thread's predictions.
#[derive(Default)]
pub struct Scratch {
    spans: Vec<Range<usize>>,
    rows: Vec<i32>,
    hashes: Vec<i32>,
    word: Vec<u8>,
    hidden: Vec<f32>,
    output: Vec<f32>,
    heap: Vec<Scored>,
    stack: Vec<(u32, f32)>,
}

impl Scratch {
    /// The input rows of the last text given to [`FastTextModel::features`], in fastText's order.
    pub fn rows(&self) -> &[i32] {
        &self.rows
    }
}

/// One document's predictions: `(probability, label id)`, best first.
pub type Prediction<'a> = &'a [(f32, i32)];

/// Top-k predictions of many documents: row `i` of `labels` and `probs` (`k` wide) holds
/// document `i`'s, padded with label -1 and probability 0.
#[derive(Debug, Default)]
pub struct BatchPredictions {
    pub k: usize,
    pub labels: Vec<i32>,
    pub probs: Vec<f32>,
}

/// Documents per parallel task.
const CHUNK: usize = 64;

impl FastTextModel {
    /// Working memory sized for this model.
    pub fn scratch(&self) -> Scratch {
        Scratch { hidden: vec![0.0; self.dim()], output: vec![0.0; self.nlabels()], ..Default::default() }
    }

    fn nan_error(&self) -> Error {
        Error::Model { path: self.path.clone(), detail: "the model produced NaN (its weights hold NaN or inf)".into() }
    }

    fn newline_error(&self, index: Option<usize>) -> Error {
        let which = index.map_or_else(|| "the text".to_string(), |i| format!("text {i}"));
        Error::invalid(format!(
            "{which} contains '\\n' and newline=\"error\" (fastText predicts one line at a time): pass \
             newline=\" \", \"\" or \"splitlines\""
        ))
    }

    /// Fills `scratch.rows` with the features of `text` (its tokens, then `</s>`).
    pub fn features(
        &self,
        text: &str,
        prep: &Preprocess,
        scratch: &mut Scratch,
    ) -> std::result::Result<(), NewlineFound> {
        let text = prep.apply(text)?;
        let Scratch { spans, rows, hashes, word, .. } = scratch;
        spans.clear();
        rows.clear();
        Tokenizer::Whitespace.split_into(&text, spans);
        let bytes = text.as_bytes();
        let tokens = spans.iter().map(|s| &bytes[s.clone()]).chain(once(EOS));
        self.dict.line_features(tokens, rows, hashes, word);
        Ok(())
    }

    /// `scratch.hidden` = the average of `scratch.rows`.
    fn compute_hidden(&self, scratch: &mut Scratch) {
        self.input.average_rows(&scratch.rows, &mut scratch.hidden);
    }

    #[inline]
    fn dot(&self, row: usize, hidden: &[f32]) -> Result<f32> {
        let d = self.output.dot_row(row, hidden);
        if d.is_nan() { Err(self.nan_error()) } else { Ok(d) }
    }

    /// `scratch.output` = the label probabilities (softmax, ns, ova).
    fn compute_output(&self, scratch: &mut Scratch) -> Result<()> {
        let Scratch { hidden, output, .. } = scratch;
        for (i, out) in output.iter_mut().enumerate() {
            *out = self.dot(i, hidden)?;
        }
        match self.args.loss {
            Loss::Softmax => {
                let mut max = output[0];
                for &o in output.iter() {
                    max = if o < max { max } else { o };
                }
                let mut z = 0.0f32;
                for o in output.iter_mut() {
                    *o = f64::from(*o - max).exp() as f32;
                    z += *o;
                }
                for o in output.iter_mut() {
                    *o /= z;
                }
            }
            Loss::NegativeSampling | Loss::OneVsAll => {
                for o in output.iter_mut() {
                    *o = self.sigmoid.get(*o);
                }
            }
            Loss::HierarchicalSoftmax => unreachable!("hs has no flat output"),
        }
        Ok(())
    }

    /// The exact sigmoid of hs nodes.
    #[inline]
    fn node_sigmoid(&self, node: usize, hidden: &[f32]) -> Result<f32> {
        let dot = self.dot(node - self.nlabels(), hidden)?;
        Ok((1.0 / f64::from(1.0f32 + (-dot).exp())) as f32)
    }

    /// fastText's hierarchical-softmax search, depth first with the left child first.
    fn hs_search(&self, k: usize, threshold: f32, scratch: &mut Scratch) -> Result<()> {
        let tree = self.tree.as_ref().expect("hs models have a tree");
        let Scratch { hidden, heap, stack, .. } = scratch;
        let floor = std_log(threshold);
        stack.clear();
        stack.push((tree.root() as u32, 0.0));
        while let Some((node, score)) = stack.pop() {
            let node = node as usize;
            if score < floor || (heap.len() == k && score < heap[0].0) {
                continue;
            }
            if tree.is_leaf(node) {
                offer(heap, k, score, node as i32);
                continue;
            }
            let f = self.node_sigmoid(node, hidden)?;
            stack.push((tree.right[node], score + std_log(f)));
            stack.push((tree.left[node], score + std_log((1.0 - f64::from(f)) as f32)));
        }
        Ok(())
    }

    /// Predicts from `scratch.rows`; `scratch.heap` ends up holding `(score, label)`, best
    /// first. No rows, no predictions (as in fastText).
    fn predict_rows(&self, k: usize, threshold: f32, scratch: &mut Scratch) -> Result<()> {
        scratch.heap.clear();
        if scratch.rows.is_empty() {
            return Ok(());
        }
        self.compute_hidden(scratch);
        if self.args.loss == Loss::HierarchicalSoftmax {
            self.hs_search(k, threshold, scratch)?;
        } else {
            self.compute_output(scratch)?;
            let Scratch { output, heap, .. } = scratch;
            for (i, &p) in output.iter().enumerate() {
                if p >= threshold {
                    offer(heap, k, std_log(p), i as i32);
                }
            }
        }
        sort_heap(&mut scratch.heap);
        for entry in &mut scratch.heap {
            entry.0 = entry.0.exp();
        }
        Ok(())
    }

    /// Resolves fastText's `k`: -1 means every label; otherwise it must be at least 1.
    pub fn resolve_k(&self, k: i64) -> Result<usize> {
        match k {
            -1 => Ok(self.nlabels()),
            k if k >= 1 => Ok(usize::try_from(k).unwrap_or(usize::MAX).min(self.nlabels())),
            k => Err(Error::invalid(format!("k must be -1 (all labels) or at least 1, got {k}"))),
        }
    }

    /// The top `k` labels of `text` with probability at least `threshold`, as fastText's
    /// `predict`: `(probability, label id)`, best first.
    pub fn predict<'s>(
        &self,
        text: &str,
        prep: &Preprocess,
        k: usize,
        threshold: f32,
        scratch: &'s mut Scratch,
    ) -> Result<Prediction<'s>> {
        self.features(text, prep, scratch).map_err(|_| self.newline_error(None))?;
        self.predict_rows(k, threshold, scratch)?;
        Ok(&scratch.heap)
    }

    /// [`FastTextModel::predict`] over many texts on `pool`. Results do not depend on the
    /// thread count; the first failing text (in input order) names the error, numbered from
    /// `first_index` (the position of `texts[0]` among all the caller's texts).
    pub fn predict_batch<D: AsRef<str> + Sync>(
        &self,
        pool: &rayon::ThreadPool,
        texts: &[D],
        first_index: usize,
        prep: &Preprocess,
        k: usize,
        threshold: f32,
    ) -> Result<BatchPredictions> {
        let k = k.clamp(1, self.nlabels());
        let mut out = BatchPredictions { k, labels: vec![-1; texts.len() * k], probs: vec![0.0; texts.len() * k] };
        let results: Vec<Result<()>> = pool.install(|| {
            out.labels
                .par_chunks_mut(CHUNK * k)
                .zip(out.probs.par_chunks_mut(CHUNK * k))
                .zip(texts.par_chunks(CHUNK))
                .enumerate()
                .map_init(
                    || self.scratch(),
                    |scratch, (chunk, ((labels, probs), texts))| {
                        for (j, text) in prefetching_next(texts).enumerate() {
                            let index = first_index + chunk * CHUNK + j;
                            self.features(text.as_ref(), prep, scratch).map_err(|_| self.newline_error(Some(index)))?;
                            self.predict_rows(k, threshold, scratch)?;
                            for (slot, &(p, label)) in scratch.heap.iter().enumerate() {
                                labels[j * k + slot] = label;
                                probs[j * k + slot] = p;
                            }
                        }
                        Ok(())
                    },
                )
                .collect()
        });
        results.into_iter().collect::<Result<()>>()?;
        Ok(out)
    }

    /// The probability fastText reports for `label` with `k = -1` and threshold 0, computed
    /// from `scratch.rows`. For hs it is the label's path score even where fastText's search
    /// would cut the label off (below 1e-5). NaN when the text has no features.
    fn label_score(&self, label: usize, scratch: &mut Scratch) -> Result<f32> {
        if scratch.rows.is_empty() {
            return Ok(f32::NAN);
        }
        self.compute_hidden(scratch);
        let score = match self.args.loss {
            Loss::HierarchicalSoftmax => {
                let tree = self.tree.as_ref().expect("hs models have a tree");
                let Scratch { hidden, stack, .. } = scratch;
                // The path from the root down, then the scores summed in that order.
                stack.clear();
                let mut node = label;
                while node != tree.root() {
                    let parent = tree.parent[node] as usize;
                    stack.push((parent as u32, if tree.right[parent] as usize == node { 1.0 } else { 0.0 }));
                    node = parent;
                }
                let mut score = 0.0f32;
                for &(parent, right) in stack.iter().rev() {
                    let f = self.node_sigmoid(parent as usize, hidden)?;
                    score += if right == 1.0 { std_log(f) } else { std_log((1.0 - f64::from(f)) as f32) };
                }
                score
            }
            Loss::Softmax => {
                self.compute_output(scratch)?;
                std_log(scratch.output[label])
            }
            Loss::NegativeSampling | Loss::OneVsAll => {
                let dot = self.dot(label, &scratch.hidden)?;
                std_log(self.sigmoid.get(dot))
            }
        };
        Ok(score.exp())
    }

    /// The probability of `label` for each text, as fastText reports it with `k = -1` (see
    /// [`FastTextModel::predict`]); NaN for a text without features. Errors name texts as
    /// [`Self::predict_batch`] does.
    pub fn score_batch<D: AsRef<str> + Sync>(
        &self,
        pool: &rayon::ThreadPool,
        texts: &[D],
        first_index: usize,
        prep: &Preprocess,
        label: usize,
    ) -> Result<Vec<f32>> {
        if label >= self.nlabels() {
            return Err(Error::invalid(format!("label id {label} is not below {}", self.nlabels())));
        }
        let mut scores = vec![0.0f32; texts.len()];
        let results: Vec<Result<()>> = pool.install(|| {
            scores
                .par_chunks_mut(CHUNK)
                .zip(texts.par_chunks(CHUNK))
                .enumerate()
                .map_init(
                    || self.scratch(),
                    |scratch, (chunk, (scores, texts))| {
                        for (j, (score, text)) in scores.iter_mut().zip(prefetching_next(texts)).enumerate() {
                            self.features(text.as_ref(), prep, scratch)
                                .map_err(|_| self.newline_error(Some(first_index + chunk * CHUNK + j)))?;
                            *score = self.label_score(label, scratch)?;
                        }
                        Ok(())
                    },
                )
                .collect()
        });
        results.into_iter().collect::<Result<()>>()?;
        Ok(scores)
    }

    /// fastText's `get_sentence_vector` for supervised models: the average of the text's
    /// feature rows (zeros without features).
    pub fn sentence_vector(&self, text: &str, prep: &Preprocess) -> Result<Vec<f32>> {
        let mut scratch = self.scratch();
        self.features(text, prep, &mut scratch).map_err(|_| self.newline_error(None))?;
        self.compute_hidden(&mut scratch);
        Ok(scratch.hidden)
    }

    /// fastText's `get_word_vector`: the average of the word's row and character n-gram rows
    /// (an unknown word: of its n-grams only; zeros without any).
    pub fn word_vector(&self, word: &str) -> Vec<f32> {
        let mut rows = Vec::new();
        self.dict.word_rows(word.as_bytes(), &mut rows);
        // A label's "word row" is a bucket row in fastText; where there is none, leave it out.
        rows.retain(|&r| (r as usize) < self.input.rows());
        let mut v = vec![0.0; self.dim()];
        self.input.average_rows(&rows, &mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::{Spec, read, write_model};
    use super::*;

    #[test]
    fn heap_keeps_the_top_k_in_fasttext_order() {
        let mut heap = Vec::new();
        for (i, s) in [0.5f32, 0.1, 0.9, 0.5, 0.3].iter().enumerate() {
            offer(&mut heap, 3, *s, i as i32);
        }
        sort_heap(&mut heap);
        assert_eq!(heap, vec![(0.9, 2), (0.5, 3), (0.5, 0)]);
        // k = 1 with a tie: the later label wins.
        let mut heap = Vec::new();
        offer(&mut heap, 1, 0.5, 0);
        offer(&mut heap, 1, 0.5, 1);
        assert_eq!(heap, vec![(0.5, 1)]);
    }

    #[test]
    fn heap_sort_matches_a_stable_sort_without_ties() {
        let scores: Vec<f32> = (0..50).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        for k in [1, 2, 7, 50] {
            let mut heap = Vec::new();
            for (i, &s) in scores.iter().enumerate() {
                offer(&mut heap, k, s, i as i32);
            }
            sort_heap(&mut heap);
            let mut expected: Vec<Scored> = scores.iter().enumerate().map(|(i, &s)| (s, i as i32)).collect();
            expected.sort_by(|a, b| b.0.total_cmp(&a.0));
            expected.truncate(k);
            assert_eq!(heap, expected);
        }
    }

    #[test]
    fn std_log_and_the_probability_quirk() {
        // fastText's predict("") on a one-label model: 1.00001001 (bits 0x3f800054).
        assert_eq!(std_log(1.0).exp().to_bits(), 0x3f80_0054);
        assert_eq!(std_log(0.0), (1e-5f64).ln() as f32);
    }

    #[test]
    fn every_loss_predicts_a_distribution() {
        for loss in 1..=4 {
            let m = read(&write_model(&Spec { loss, ..Spec::default() })).unwrap();
            let mut scratch = m.scratch();
            let p = m.predict("the cat sat", &Preprocess::default(), 2, 0.0, &mut scratch).unwrap().to_vec();
            assert_eq!(p.len(), 2, "loss {loss}");
            assert!(p[0].0 >= p[1].0);
            let mut labels: Vec<i32> = p.iter().map(|x| x.1).collect();
            labels.sort_unstable();
            assert_eq!(labels, vec![0, 1]);
            for &(prob, label) in &p {
                let scores = m
                    .score_batch(
                        &crate::pool::thread_pool(1),
                        &["the cat sat"],
                        0,
                        &Preprocess::default(),
                        label as usize,
                    )
                    .unwrap();
                assert_eq!(scores[0].to_bits(), prob.to_bits(), "loss {loss}");
            }
            let batch = m
                .predict_batch(&crate::pool::thread_pool(2), &["the cat sat"; 130], 0, &Preprocess::default(), 5, 0.0)
                .unwrap();
            assert_eq!(batch.k, 2);
            assert_eq!(&batch.labels[258..], &[p[0].1, p[1].1]);
            assert_eq!(&batch.probs[258..], &[p[0].0, p[1].0]);
        }
    }

    #[test]
    fn newlines_follow_the_policy() {
        let m = read(&write_model(&Spec::default())).unwrap();
        let mut scratch = m.scratch();
        assert!(m.predict("a\nb", &Preprocess::default(), 1, 0.0, &mut scratch).is_err());
        let pool = crate::pool::thread_pool(1);
        let err = m.predict_batch(&pool, &["ok", "a\nb"], 0, &Preprocess::default(), 1, 0.0).unwrap_err();
        assert!(err.to_string().contains("text 1 "), "{err}");
        let err = m.score_batch(&pool, &["ok", "a\nb"], 40, &Preprocess::default(), 0).unwrap_err();
        assert!(err.to_string().contains("text 41 "), "{err}");
        let space = Preprocess { newline: super::super::preprocess::Newline::Space, strip: false };
        let a = m.predict("the\ncat", &space, 1, 0.0, &mut scratch).unwrap().to_vec();
        let b = m.predict("the cat", &Preprocess::default(), 1, 0.0, &mut scratch).unwrap().to_vec();
        assert_eq!(a, b);
    }

    #[test]
    fn threshold_and_k_are_fasttexts() {
        let m = read(&write_model(&Spec::default())).unwrap();
        assert!(m.resolve_k(0).is_err());
        assert_eq!(m.resolve_k(-1).unwrap(), 2);
        assert_eq!(m.resolve_k(9).unwrap(), 2);
        let mut scratch = m.scratch();
        assert!(m.predict("the", &Preprocess::default(), 2, 1.5, &mut scratch).unwrap().is_empty());
    }
}
