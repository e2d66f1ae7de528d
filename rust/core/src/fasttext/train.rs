//! Training supervised classifiers with fastText's algorithm (`fasttext supervised`).
//!
//! * The dictionary is one pass over the training text with fastText's tokeniser (the 7
//!   separator bytes; every `\n` is the token `</s>`): tokens starting with the label prefix
//!   are labels, everything else a word; words below `minCount` and labels below
//!   `minCountLabel` are dropped; entries are sorted by kind, then by decreasing count (ties
//!   in order of first appearance, where fastText's unstable sort leaves them arbitrary).
//! * Features of a line are exactly those of a prediction (words, character n-grams, word
//!   n-grams in fastText's order), so a trained model predicts as it was trained.
//! * Weights: the input matrix `(nwords + bucket) × dim` is uniform in `±1/dim` **everywhere**
//!   (fastText fills only `min(thread, 10)` tenths of it and leaves the rest as whatever memory
//!   it got); it is filled in 10 blocks, block `b` by `minstd_rand(seed + b)`, so the weights do
//!   not depend on the thread count. The output matrix starts at zero.
//! * `thread` OS threads share the weights without locks (hogwild), thread `t` starting at byte
//!   `t · len / thread` of the text and wrapping around at the end; no shuffling.
//! * "Epochs" are a token budget of `epoch · ntokens`; before each line the learning rate is
//!   `lr · (1 − tokens done / budget)`, the shared count advancing every `lrUpdateRate` tokens.
//! * One update: a target label drawn uniformly from the line's labels with the thread's
//!   `minstd_rand(seed + thread)` (ova: all of them); the loss's forward pass updates output
//!   rows and accumulates the hidden gradient; the gradient, times `1/len(rows)`, is added to
//!   every feature row (a repeated row once per occurrence).
//! * Losses: softmax (exact `exp` in double, as at prediction), and the binary-logistic ones
//!   (hs along the Huffman path, ns with `neg` negatives drawn from the `√count` table, ova
//!   over every label) with fastText's 513-entry sigmoid table.
//!
//! With `thread = 1` training is deterministic: the same text, arguments and seed give
//! bit-identical weights.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::dictionary::{Dictionary, EOS, FeatureArgs, hash};
use super::matrix::{DenseMatrix, Floats, Matrix};
use super::model::{Args, FastTextModel, HsTree, Loss, SigmoidTable};
use crate::error::{Error, Result};
use crate::memory::advise_huge_pages;

/// fastText's supervised hyper-parameters, with its names in the comments.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    /// `lr`: the initial learning rate.
    pub lr: f64,
    /// `dim`.
    pub dim: i32,
    /// `ws` (stored in the file; unused by supervised training).
    pub ws: i32,
    /// `epoch`.
    pub epoch: i32,
    /// `minCount`.
    pub min_count: i64,
    /// `minCountLabel`.
    pub min_count_label: i64,
    /// `minn`, `maxn`: character n-gram lengths (`maxn = 0`: none).
    pub minn: i32,
    pub maxn: i32,
    /// `neg`: negatives per example (ns).
    pub neg: i32,
    /// `wordNgrams`.
    pub word_ngrams: i32,
    /// `loss`.
    pub loss: Loss,
    /// `bucket` (forced to 0 without word or character n-grams, as fastText's wrapper does).
    pub bucket: i32,
    /// `thread`.
    pub thread: usize,
    /// `lrUpdateRate`.
    pub lr_update_rate: i32,
    /// `t` (stored in the file; unused by supervised training).
    pub t: f64,
    /// `label`: the label prefix.
    pub label: Vec<u8>,
    /// `seed`.
    pub seed: i32,
}

impl Default for TrainArgs {
    /// fastText's `train_supervised` defaults, with one thread.
    fn default() -> Self {
        TrainArgs {
            lr: 0.1,
            dim: 100,
            ws: 5,
            epoch: 5,
            min_count: 1,
            min_count_label: 0,
            minn: 0,
            maxn: 0,
            neg: 5,
            word_ngrams: 1,
            loss: Loss::Softmax,
            bucket: 2_000_000,
            thread: 1,
            lr_update_rate: 100,
            t: 1e-4,
            label: b"__label__".to_vec(),
            seed: 0,
        }
    }
}

impl TrainArgs {
    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::invalid(what.to_string()));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(&format!("lr must be a positive number, got {}", self.lr));
        }
        if self.dim <= 0 {
            return bad(&format!("dim must be at least 1, got {}", self.dim));
        }
        if self.epoch <= 0 {
            return bad(&format!("epoch must be at least 1, got {}", self.epoch));
        }
        if self.word_ngrams <= 0 {
            return bad(&format!("wordNgrams must be at least 1, got {}", self.word_ngrams));
        }
        if self.minn < 0 || self.maxn < 0 || (self.maxn > 0 && self.minn > self.maxn) {
            return bad(&format!("minn and maxn must satisfy 0 <= minn <= maxn, got {} and {}", self.minn, self.maxn));
        }
        if self.bucket < 0 {
            return bad(&format!("bucket must be at least 0, got {}", self.bucket));
        }
        if self.neg <= 0 && self.loss == Loss::NegativeSampling {
            return bad(&format!("neg must be at least 1 for loss ns, got {}", self.neg));
        }
        if self.thread == 0 {
            return bad("thread must be at least 1");
        }
        if self.lr_update_rate <= 0 {
            return bad(&format!("lrUpdateRate must be at least 1, got {}", self.lr_update_rate));
        }
        if self.label.is_empty() {
            return bad("the label prefix is empty");
        }
        Ok(())
    }

    /// The bucket count the model uses: 0 without n-grams.
    fn effective_bucket(&self) -> i32 {
        if self.word_ngrams <= 1 && self.maxn == 0 { 0 } else { self.bucket }
    }
}

/// How far training has got: reported to the caller's callback every 20 ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrainProgress {
    /// Fraction of the token budget done, 0 to 1.
    pub progress: f64,
    /// The learning rate now.
    pub lr: f64,
    /// The average loss of thread 0's examples so far.
    pub loss: f64,
    /// Tokens processed so far, over all threads.
    pub tokens: i64,
}

/// fastText's separators (`readWord`).
#[inline]
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0)
}

/// fastText's `readWord` over a buffer: the next token from `*pos` (`</s>` for a newline), or
/// `None` at the end.
#[inline]
fn read_word<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = buf.len();
    while *pos < len && is_separator(buf[*pos]) {
        if buf[*pos] == b'\n' {
            *pos += 1;
            return Some(EOS);
        }
        *pos += 1;
    }
    if *pos == len {
        return None;
    }
    let start = *pos;
    while *pos < len && !is_separator(buf[*pos]) {
        *pos += 1;
    }
    // A newline right after the word stays for the next call (it becomes `</s>`).
    Some(&buf[start..*pos])
}

/// The largest vocabulary fastText keeps while counting (`0.75 × MAX_VOCAB_SIZE`).
const MAX_ENTRIES: usize = 22_500_000;

/// FNV-1a for the counting map (the words are short).
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<'a> = std::collections::HashMap<&'a [u8], (i64, usize), std::hash::BuildHasherDefault<Fnv>>;

/// fastText's dictionary pass (`readFromFile` + `threshold`).
fn build_dictionary(text: &[u8], args: &TrainArgs) -> Result<Dictionary> {
    let mut counts: FnvMap = FnvMap::default();
    let mut ntokens = 0i64;
    let mut pos = 0;
    let mut min_threshold = 1i64;
    while let Some(word) = read_word(text, &mut pos) {
        ntokens += 1;
        let next = counts.len();
        counts.entry(word).or_insert((0, next)).0 += 1;
        if counts.len() > MAX_ENTRIES {
            // fastText's `threshold(minThreshold, minThreshold)` while reading.
            min_threshold += 1;
            counts.retain(|_, (c, _)| *c >= min_threshold);
        }
    }
    let prefix = &args.label[..];
    let mut entries: Vec<(&[u8], i64, usize, bool)> = counts
        .into_iter()
        .map(|(w, (c, first))| (w, c, first, w.starts_with(prefix)))
        .filter(|&(_, c, _, label)| c >= if label { args.min_count_label } else { args.min_count })
        .collect();
    entries.sort_unstable_by_key(|&(_, c, first, label)| (label, std::cmp::Reverse(c), first));
    let nwords = entries.iter().filter(|e| !e.3).count();
    let nlabels = entries.len() - nwords;
    if nwords == 0 {
        return Err(Error::invalid(format!(
            "empty vocabulary: no word occurs at least minCount={} times",
            args.min_count
        )));
    }
    if nlabels == 0 {
        return Err(Error::invalid(format!(
            "no labels: no token starts with the label prefix {:?} (at least minCountLabel={} times)",
            String::from_utf8_lossy(prefix),
            args.min_count_label
        )));
    }
    if i32::try_from(entries.len()).is_err() || nwords as u64 + args.effective_bucket() as u64 > i32::MAX as u64 {
        return Err(Error::invalid("the vocabulary plus the buckets exceed 2^31 rows"));
    }
    let mut arena = Vec::with_capacity(entries.iter().map(|e| e.0.len()).sum());
    let mut starts = Vec::with_capacity(entries.len() + 1);
    starts.push(0);
    for e in &entries {
        arena.extend_from_slice(e.0);
        starts.push(arena.len());
    }
    let counts = entries.iter().map(|e| e.1).collect();
    let features = FeatureArgs {
        word_ngrams: args.word_ngrams,
        bucket: args.effective_bucket(),
        minn: args.minn,
        maxn: args.maxn,
    };
    Dictionary::new(arena, starts, counts, nwords, ntokens, None, features)
}

/// libstdc++'s `std::minstd_rand`.
#[derive(Clone, Debug)]
pub(crate) struct MinStd(u64);

impl MinStd {
    const M: u64 = 2_147_483_647;

    pub(crate) fn new(seed: i64) -> Self {
        let s = (seed as u64) % Self::M;
        MinStd(if s == 0 { 1 } else { s })
    }

    /// A value in `1..=M-1`.
    #[inline]
    pub(crate) fn next_u32(&mut self) -> u32 {
        self.0 = self.0 * 48_271 % Self::M;
        self.0 as u32
    }

    /// libstdc++'s `uniform_int_distribution` on `0..=hi` (hi < 2^31 - 2).
    #[inline]
    pub(crate) fn below_or_equal(&mut self, hi: u64) -> u64 {
        let urng_range = Self::M - 2; // max - min
        let erange = hi + 1;
        let scaling = urng_range / erange;
        let past = erange * scaling;
        loop {
            let r = u64::from(self.next_u32()) - 1;
            if r < past {
                return r / scaling;
            }
        }
    }

    /// `uniform_real_distribution<double>(-a, a)` through `generate_canonical` (two draws).
    #[inline]
    fn uniform(&mut self, a: f64) -> f64 {
        let r = (Self::M - 1) as f64;
        let lo = f64::from(self.next_u32() - 1);
        let hi = f64::from(self.next_u32() - 1);
        let mut c = (lo + hi * r) / (r * r);
        if c >= 1.0 {
            c = 1.0 - f64::EPSILON / 2.0;
        }
        -a + 2.0 * a * c
    }
}

/// One weight of the model as the training threads see it.
///
/// With several threads the weights are shared without locks (hogwild), as fastText does: an
/// update may be lost or read half-applied, which the algorithm tolerates. They are then
/// `AtomicU32`s holding f32 bits, read and written with relaxed loads and stores (plain moves
/// on x86 and ARM), so those races are not undefined behaviour; `row += x` is a load then a
/// store, exactly like fastText's. A single thread uses `Cell<f32>`, whose loops vectorise.
trait Weight {
    fn new(value: f32) -> Self;
    fn get(&self) -> f32;
    fn set(&self, value: f32);
    fn into_inner(self) -> f32;
}

impl Weight for Cell<f32> {
    #[inline]
    fn new(value: f32) -> Self {
        Cell::new(value)
    }
    #[inline]
    fn get(&self) -> f32 {
        Cell::get(self)
    }
    #[inline]
    fn set(&self, value: f32) {
        Cell::set(self, value)
    }
    fn into_inner(self) -> f32 {
        Cell::into_inner(self)
    }
}

impl Weight for AtomicU32 {
    #[inline]
    fn new(value: f32) -> Self {
        AtomicU32::new(value.to_bits())
    }
    #[inline]
    fn get(&self) -> f32 {
        f32::from_bits(self.load(Ordering::Relaxed))
    }
    #[inline]
    fn set(&self, value: f32) {
        self.store(value.to_bits(), Ordering::Relaxed)
    }
    fn into_inner(self) -> f32 {
        f32::from_bits(AtomicU32::into_inner(self))
    }
}

/// A row-major matrix of weights that the training threads update through shared references.
struct Shared<W> {
    data: Box<[W]>,
    cols: usize,
}

impl<W: Weight> Shared<W> {
    fn new(data: Vec<f32>, cols: usize) -> Self {
        Shared { data: data.into_iter().map(W::new).collect(), cols }
    }

    fn into_vec(self) -> Vec<f32> {
        self.data.into_vec().into_iter().map(W::into_inner).collect()
    }

    #[inline]
    fn row(&self, i: usize) -> &[W] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// `acc += row(i)`.
    #[inline]
    fn add_row_to(&self, i: usize, acc: &mut [f32]) {
        for (a, r) in acc.iter_mut().zip(self.row(i)) {
            *a += r.get();
        }
    }

    /// `acc += alpha · row(i)` (fastText's `Vector::addRow` with a factor).
    #[inline]
    fn add_row_to_scaled(&self, i: usize, acc: &mut [f32], alpha: f32) {
        for (a, r) in acc.iter_mut().zip(self.row(i)) {
            *a += alpha * r.get();
        }
    }

    /// `row(i) += alpha · v` (fastText's `addVectorToRow`).
    #[inline]
    fn add_to_row(&self, i: usize, v: &[f32], alpha: f32) {
        for (r, &x) in self.row(i).iter().zip(v) {
            r.set(r.get() + alpha * x);
        }
    }

    /// `row(i) · v`, sequential from 0.
    #[inline]
    fn dot_row(&self, i: usize, v: &[f32]) -> f32 {
        let mut d = 0.0f32;
        for (r, &x) in self.row(i).iter().zip(v) {
            d += r.get() * x;
        }
        d
    }
}

/// The table of negatives of ns: label `i` fills `ceil(√count_i · 10⁷ / Σ√count)` consecutive
/// slots (fastText shuffles its table, which does not change a uniform draw from it).
struct Negatives {
    /// `ends[i]`: one past the last slot of label `i`.
    ends: Vec<u64>,
}

impl Negatives {
    const TABLE_SIZE: f64 = 10_000_000.0;

    fn new(counts: &[i64]) -> Self {
        let z: f64 = counts.iter().map(|&c| (c as f64).sqrt()).sum();
        let mut end = 0u64;
        let ends = counts
            .iter()
            .map(|&c| {
                end += ((c as f64).sqrt() * Self::TABLE_SIZE / z).ceil() as u64;
                end
            })
            .collect();
        Negatives { ends }
    }

    #[inline]
    fn draw(&self, rng: &mut MinStd) -> usize {
        let slot = rng.below_or_equal(self.ends[self.ends.len() - 1] - 1);
        self.ends.partition_point(|&e| e <= slot)
    }
}

/// The loss-specific tables.
enum LossTables {
    Softmax,
    OneVsAll,
    Negative(Negatives),
    /// Per label: the internal nodes (output rows) from the leaf to the root and the branch
    /// taken at each (1 = right).
    Hierarchical(Vec<Vec<(u32, bool)>>),
}

/// The caller's progress callback.
type Progress<'p> = &'p mut dyn FnMut(TrainProgress) -> Result<()>;

/// Everything the threads share.
struct Trainer<'a, W> {
    text: &'a [u8],
    args: &'a TrainArgs,
    dict: &'a Dictionary,
    input: Shared<W>,
    output: Shared<W>,
    tables: &'a LossTables,
    sigmoid: &'a SigmoidTable,
    nlabels: usize,
    budget: i64,
    tokens: AtomicI64,
    stop: AtomicBool,
    failure: Mutex<Option<Error>>,
    /// Thread 0's running average loss, as f64 bits.
    loss: AtomicI64,
}

/// One thread's working memory (fastText's `Model::State`).
struct State {
    rng: MinStd,
    hidden: Vec<f32>,
    output: Vec<f32>,
    grad: Vec<f32>,
    rows: Vec<i32>,
    labels: Vec<i32>,
    hashes: Vec<i32>,
    word: Vec<u8>,
    loss: f64,
    examples: u64,
}

impl<'a, W: Weight> Trainer<'a, W> {
    /// fastText's initial state: input rows uniform in `±1/dim`, output rows zero.
    fn new(
        text: &'a [u8],
        args: &'a TrainArgs,
        dict: &'a Dictionary,
        tables: &'a LossTables,
        sigmoid: &'a SigmoidTable,
    ) -> Self {
        let dim = args.dim as usize;
        let input_rows = dict.nwords() + args.effective_bucket() as usize;
        Trainer {
            text,
            args,
            dict,
            input: Shared::new(random_input(input_rows, dim, args.seed, args.thread), dim),
            output: Shared::new(vec![0.0; dict.nlabels() * dim], dim),
            tables,
            sigmoid,
            nlabels: dict.nlabels(),
            budget: i64::from(args.epoch).saturating_mul(dict.ntokens()),
            tokens: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            loss: AtomicI64::new(0),
        }
    }

    /// fastText's supervised `getLine` from `*pos`: the line's features and labels, and the
    /// number of tokens read (labels, unknown words and `</s>` included).
    fn get_line(&self, pos: &mut usize, st: &mut State) -> i64 {
        if *pos >= self.text.len() {
            *pos = 0;
        }
        st.rows.clear();
        st.labels.clear();
        st.hashes.clear();
        let nwords = self.dict.nwords();
        let mut ntokens = 0;
        while let Some(token) = read_word(self.text, pos) {
            ntokens += 1;
            let h = hash(token);
            let id = self.dict.id(token, h);
            match id {
                Some(id) if id >= nwords => st.labels.push((id - nwords) as i32),
                None if token.starts_with(&self.args.label) => {}
                _ => {
                    self.dict.push_word(token, id, &mut st.word, &mut st.rows);
                    st.hashes.push(h as i32);
                }
            }
            if token == EOS {
                break;
            }
        }
        self.dict.push_word_ngrams(&st.hashes, &mut st.rows);
        ntokens
    }

    fn nan(&self) -> Error {
        Error::invalid(
            "training produced NaN (fastText: \"Encountered NaN\"); the learning rate is probably too high".to_string(),
        )
    }

    /// fastText's `binaryLogistic`: one sigmoid unit's update; returns its loss.
    #[inline]
    fn binary_logistic(&self, row: usize, positive: bool, lr: f32, st: &mut State) -> Result<f64> {
        let dot = self.output.dot_row(row, &st.hidden);
        if dot.is_nan() {
            return Err(self.nan());
        }
        let score = self.sigmoid.get(dot);
        let alpha = lr * (f32::from(u8::from(positive)) - score);
        self.output.add_row_to_scaled(row, &mut st.grad, alpha);
        self.output.add_to_row(row, &st.hidden, alpha);
        let p = if positive { score } else { 1.0 - score };
        Ok(-(f64::from(p) + 1e-5).ln())
    }

    /// The forward and backward pass of the loss for one example.
    fn forward(&self, target: usize, lr: f32, st: &mut State) -> Result<f64> {
        match self.tables {
            LossTables::Softmax => {
                for i in 0..self.nlabels {
                    let d = self.output.dot_row(i, &st.hidden);
                    if d.is_nan() {
                        return Err(self.nan());
                    }
                    st.output[i] = d;
                }
                let mut max = st.output[0];
                for &o in &st.output {
                    max = if o < max { max } else { o };
                }
                let mut z = 0.0f32;
                for o in st.output.iter_mut() {
                    *o = f64::from(*o - max).exp() as f32;
                    z += *o;
                }
                for o in st.output.iter_mut() {
                    *o /= z;
                }
                for i in 0..self.nlabels {
                    let label = if i == target { 1.0f32 } else { 0.0 };
                    let alpha = lr * (label - st.output[i]);
                    self.output.add_row_to_scaled(i, &mut st.grad, alpha);
                    self.output.add_to_row(i, &st.hidden, alpha);
                }
                Ok(-(f64::from(st.output[target]) + 1e-5).ln())
            }
            LossTables::OneVsAll => {
                let mut loss = 0.0;
                for i in 0..self.nlabels {
                    let positive = st.labels.contains(&(i as i32));
                    loss += self.binary_logistic(i, positive, lr, st)?;
                }
                Ok(loss)
            }
            LossTables::Negative(negatives) => {
                let mut loss = self.binary_logistic(target, true, lr, st)?;
                for _ in 0..self.args.neg {
                    let negative = loop {
                        let n = negatives.draw(&mut st.rng);
                        if n != target {
                            break n;
                        }
                    };
                    loss += self.binary_logistic(negative, false, lr, st)?;
                }
                Ok(loss)
            }
            LossTables::Hierarchical(paths) => {
                let mut loss = 0.0;
                for &(node, right) in &paths[target] {
                    loss += self.binary_logistic(node as usize, right, lr, st)?;
                }
                Ok(loss)
            }
        }
    }

    /// fastText's `supervised` + `Model::update` for the line in `st`.
    fn update(&self, lr: f32, st: &mut State) -> Result<()> {
        if st.labels.is_empty() || st.rows.is_empty() {
            return Ok(());
        }
        let target = if matches!(self.tables, LossTables::OneVsAll) {
            0 // unused: ova trains every label
        } else {
            let i = st.rng.below_or_equal(st.labels.len() as u64 - 1) as usize;
            st.labels[i] as usize
        };
        st.hidden.fill(0.0);
        for &r in &st.rows {
            self.input.add_row_to(r as usize, &mut st.hidden);
        }
        let scale = (1.0f64 / st.rows.len() as f64) as f32;
        for h in st.hidden.iter_mut() {
            *h *= scale;
        }
        st.grad.fill(0.0);
        st.loss += self.forward(target, lr, st)?;
        st.examples += 1;
        let scale = (1.0f64 / st.rows.len() as f64) as f32;
        for g in st.grad.iter_mut() {
            *g *= scale;
        }
        for &r in &st.rows {
            self.input.add_to_row(r as usize, &st.grad, 1.0);
        }
        Ok(())
    }

    /// One training thread. Thread 0 runs on the calling thread and reports `progress` every
    /// 20 ms; an error from it stops every thread.
    fn run_thread(&self, thread: usize, mut report: Option<Progress<'_>>) -> Result<()> {
        let dim = self.args.dim as usize;
        let mut st = State {
            rng: MinStd::new(i64::from(self.args.seed) + thread as i64),
            hidden: vec![0.0; dim],
            output: vec![0.0; self.nlabels],
            grad: vec![0.0; dim],
            rows: Vec::new(),
            labels: Vec::new(),
            hashes: Vec::new(),
            word: Vec::new(),
            loss: 0.0,
            examples: 0,
        };
        let mut pos = (thread as u128 * self.text.len() as u128 / self.args.thread as u128) as usize;
        let mut local = 0i64;
        let update_rate = i64::from(self.args.lr_update_rate);
        let mut reported = Instant::now();
        loop {
            let done = self.tokens.load(Ordering::Relaxed);
            if done >= self.budget || self.stop.load(Ordering::Relaxed) {
                break;
            }
            let progress = done as f32 / self.budget as f32;
            let lr = (self.args.lr * (1.0 - f64::from(progress))) as f32;
            local += self.get_line(&mut pos, &mut st);
            self.update(lr, &mut st)?;
            if local > update_rate {
                self.tokens.fetch_add(local, Ordering::Relaxed);
                local = 0;
                if thread == 0 && st.examples > 0 {
                    self.loss.store((st.loss / st.examples as f64).to_bits() as i64, Ordering::Relaxed);
                }
                if let Some(report) = report.as_mut()
                    && reported.elapsed() >= Duration::from_millis(20)
                {
                    reported = Instant::now();
                    report(self.progress())?;
                }
            }
        }
        Ok(())
    }

    /// After the threads: the first error, or the final progress report and the weights.
    fn finish(self, progress: Progress<'_>) -> Result<(Vec<f32>, Vec<f32>)> {
        let last = TrainProgress { progress: 1.0, lr: 0.0, ..self.progress() };
        if let Some(e) = self.failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        progress(last)?;
        Ok((self.input.into_vec(), self.output.into_vec()))
    }

    /// Stops the other threads and keeps the first error.
    fn fail(&self, error: Error) {
        self.stop.store(true, Ordering::Relaxed);
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
    }

    fn progress(&self) -> TrainProgress {
        let tokens = self.tokens.load(Ordering::Relaxed).min(self.budget);
        let progress = tokens as f64 / self.budget as f64;
        TrainProgress {
            progress,
            lr: self.args.lr * (1.0 - progress),
            loss: f64::from_bits(self.loss.load(Ordering::Relaxed) as u64),
            tokens,
        }
    }
}

/// The input matrix, uniform in `±1/dim`: 10 blocks, block `b` from `minstd_rand(seed + b)`
/// (the last block runs to the end), filled on up to `threads` threads.
fn random_input(rows: usize, dim: usize, seed: i32, threads: usize) -> Vec<f32> {
    let total = rows * dim;
    let mut data = vec![0.0f32; total];
    advise_huge_pages(&data);
    let a = 1.0 / dim as f64;
    let block = total / 10;
    let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(10);
    let mut rest = &mut data[..];
    for b in 0..10 {
        let take = if b == 9 { rest.len() } else { block };
        let (head, tail) = rest.split_at_mut(take);
        blocks.push((b, head));
        rest = tail;
    }
    let per = blocks.len().div_ceil(threads.clamp(1, 10));
    std::thread::scope(|scope| {
        while !blocks.is_empty() {
            let mine: Vec<_> = blocks.drain(..per.min(blocks.len())).collect();
            scope.spawn(move || {
                for (b, out) in mine {
                    let mut rng = MinStd::new(i64::from(seed) + b as i64);
                    for x in out.iter_mut() {
                        *x = rng.uniform(a) as f32;
                    }
                }
            });
        }
    });
    data
}

/// Trains a supervised classifier on `text`: fastText's training format, one example per
/// line (`__label__a __label__b words ...`). `progress` is called every 20 ms from the calling
/// thread; an error from it stops training and is returned.
pub fn train_supervised(
    text: &[u8],
    args: &TrainArgs,
    progress: &mut dyn FnMut(TrainProgress) -> Result<()>,
) -> Result<FastTextModel> {
    args.check()?;
    let dict = build_dictionary(text, args)?;
    let nlabels = dict.nlabels();
    let label_counts: Vec<i64> = (dict.nwords()..dict.nwords() + nlabels).map(|id| dict.count(id)).collect();
    let tables = match args.loss {
        Loss::Softmax => LossTables::Softmax,
        Loss::OneVsAll => LossTables::OneVsAll,
        Loss::NegativeSampling => {
            if nlabels < 2 {
                return Err(Error::invalid("loss ns needs at least 2 labels (a negative must differ from the target)"));
            }
            LossTables::Negative(Negatives::new(&label_counts))
        }
        Loss::HierarchicalSoftmax => {
            let tree = HsTree::build(&label_counts).map_err(Error::invalid)?;
            let paths = (0..nlabels)
                .map(|leaf| {
                    let mut path = Vec::new();
                    let mut node = leaf;
                    while tree.parent[node] != u32::MAX {
                        let parent = tree.parent[node] as usize;
                        path.push(((parent - nlabels) as u32, tree.right[parent] as usize == node));
                        node = parent;
                    }
                    path
                })
                .collect();
            LossTables::Hierarchical(paths)
        }
    };
    let dim = args.dim as usize;
    let input_rows = dict.nwords() + args.effective_bucket() as usize;
    let sigmoid = SigmoidTable::new();
    let (input, output) = if args.thread == 1 {
        let alone: Trainer<Cell<f32>> = Trainer::new(text, args, &dict, &tables, &sigmoid);
        alone.run_thread(0, Some(progress))?;
        alone.finish(progress)?
    } else {
        let hogwild: Trainer<AtomicU32> = Trainer::new(text, args, &dict, &tables, &sigmoid);
        std::thread::scope(|scope| {
            let hogwild = &hogwild;
            for t in 1..args.thread {
                scope.spawn(move || {
                    if let Err(e) = hogwild.run_thread(t, None) {
                        hogwild.fail(e);
                    }
                });
            }
            if let Err(e) = hogwild.run_thread(0, Some(&mut *progress)) {
                hogwild.fail(e);
            }
        });
        hogwild.finish(progress)?
    };
    let model_args = Args {
        dim: args.dim,
        ws: args.ws,
        epoch: args.epoch,
        min_count: i32::try_from(args.min_count).unwrap_or(i32::MAX),
        neg: args.neg,
        word_ngrams: args.word_ngrams,
        loss: args.loss,
        bucket: args.effective_bucket(),
        minn: args.minn,
        maxn: args.maxn,
        lr_update_rate: args.lr_update_rate,
        t: args.t,
    };
    let input = Matrix::Dense(DenseMatrix { rows: input_rows, cols: dim, data: Floats::Owned(input) });
    let output = Matrix::Dense(DenseMatrix { rows: nlabels, cols: dim, data: Floats::Owned(output) });
    FastTextModel::from_parts(model_args, dict, input, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[u8]) -> Vec<&[u8]> {
        let mut pos = 0;
        std::iter::from_fn(|| read_word(text, &mut pos)).collect()
    }

    #[test]
    fn read_word_follows_fasttext() {
        let w = words(b"  a\tb\n\nc\r\x0bd\x00e\n f");
        let expected: Vec<&[u8]> = vec![b"a", b"b", EOS, EOS, b"c", b"d", b"e", EOS, b"f"];
        assert_eq!(w, expected);
        assert!(words(b"").is_empty());
        assert!(words(b"   ").is_empty());
    }

    #[test]
    fn minstd_matches_the_standard() {
        // The C++ standard requires the 10000th value of a default-seeded minstd_rand to be
        // 399268537.
        let mut r = MinStd::new(1);
        let mut v = 0;
        for _ in 0..10_000 {
            v = r.next_u32();
        }
        assert_eq!(v, 399_268_537);
        assert_eq!(MinStd::new(0).0, 1);
        let mut r = MinStd::new(5);
        for _ in 0..1000 {
            assert!(r.below_or_equal(2) <= 2);
            let u = r.uniform(0.5);
            assert!((-0.5..0.5).contains(&u));
        }
    }

    #[test]
    fn negatives_follow_square_root_counts() {
        let n = Negatives::new(&[100, 25, 1]);
        // √ counts 10, 5, 1 of 16.
        assert_eq!(n.ends, vec![6_250_000, 9_375_000, 10_000_000]);
        let mut rng = MinStd::new(3);
        let mut hist = [0usize; 3];
        for _ in 0..16_000 {
            hist[n.draw(&mut rng)] += 1;
        }
        assert!((9_500..10_500).contains(&hist[0]), "{hist:?}");
        assert!((700..1_300).contains(&hist[2]), "{hist:?}");
    }

    fn corpus() -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..300 {
            let (label, words) = if i % 3 == 0 {
                ("__label__x", "alpha beta gamma delta")
            } else if i % 3 == 1 {
                ("__label__y", "one two three four")
            } else {
                ("__label__z", "red green blue beta")
            };
            text.extend_from_slice(format!("{label} {words} w{}\n", i % 7).as_bytes());
        }
        text
    }

    fn accuracy(model: &FastTextModel) -> f64 {
        let prep = super::super::Preprocess::default();
        let mut scratch = model.scratch();
        let cases = [("alpha gamma", "__label__x"), ("two four", "__label__y"), ("green blue", "__label__z")];
        let good = cases
            .iter()
            .filter(|(text, label)| {
                let p = model.predict(text, &prep, 1, 0.0, &mut scratch).unwrap();
                model.label(p[0].1 as usize) == label.as_bytes()
            })
            .count();
        good as f64 / cases.len() as f64
    }

    #[test]
    fn every_loss_learns_a_separable_task() {
        for loss in [Loss::Softmax, Loss::HierarchicalSoftmax, Loss::NegativeSampling, Loss::OneVsAll] {
            let args =
                TrainArgs { dim: 8, epoch: 20, word_ngrams: 2, bucket: 1000, loss, lr: 0.5, ..TrainArgs::default() };
            let model = train_supervised(&corpus(), &args, &mut |_| Ok(())).unwrap();
            assert_eq!(accuracy(&model), 1.0, "{loss:?}");
            assert_eq!(model.nlabels(), 3);
            assert_eq!(model.dict.ntokens(), 300 * 7);
        }
    }

    #[test]
    fn one_thread_is_deterministic_and_the_seed_matters() {
        let args = TrainArgs { dim: 8, epoch: 3, word_ngrams: 2, bucket: 1000, ..TrainArgs::default() };
        let weights = |args: &TrainArgs| {
            let m = train_supervised(&corpus(), args, &mut |_| Ok(())).unwrap();
            match (&m.input, &m.output) {
                (Matrix::Dense(i), Matrix::Dense(o)) => (i.data.to_vec(), o.data.to_vec()),
                _ => unreachable!(),
            }
        };
        assert_eq!(weights(&args), weights(&args));
        assert_ne!(weights(&args), weights(&TrainArgs { seed: 1, ..args.clone() }));
        // Several threads: no NaN, every weight initialised.
        let (input, _) = weights(&TrainArgs { thread: 3, ..args });
        assert!(input.iter().all(|x| x.is_finite() && *x != 0.0));
    }

    #[test]
    fn bad_input_is_named() {
        let err =
            |text: &[u8], args: TrainArgs| train_supervised(text, &args, &mut |_| Ok(())).unwrap_err().to_string();
        assert!(err(b"a b c\n", TrainArgs::default()).contains("no labels"));
        assert!(err(b"__label__a\n", TrainArgs { min_count: 5, ..TrainArgs::default() }).contains("empty vocabulary"));
        assert!(
            err(b"__label__a b\n", TrainArgs { loss: Loss::NegativeSampling, ..TrainArgs::default() })
                .contains("at least 2 labels")
        );
        assert!(err(b"__label__a b\n", TrainArgs { dim: 0, ..TrainArgs::default() }).contains("dim"));
        let stopped = train_supervised(&corpus(), &TrainArgs { epoch: 1000, ..TrainArgs::default() }, &mut |_| {
            Err(Error::Stopped)
        });
        assert!(matches!(stopped, Err(Error::Stopped)));
    }
}
