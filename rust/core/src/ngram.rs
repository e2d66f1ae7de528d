//! Hashed n-gram features: orders 1..=n of a document's tokens, all sharing one bucket space (as
//! DSIR does), counted per document ([`Featurizer::transform`]) or summed over a corpus
//! ([`CountAccumulator`]).
//!
//! A document with U tokens yields U + (U-1) + ... + (U-n+1) features (terms below zero count as
//! zero); n-grams slide across sentence and line boundaries and have no padding.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fast_batch;
use crate::hash::{self, HashFamily};
use crate::memory::{prefetch_text_start, prefetching_next};
use crate::spill::{self, SpillBuffer, SpillWriter};
use crate::text::{self, Tokenizer};

/// Everything that decides which bucket an n-gram lands in. Saved with every estimator and
/// compared on load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSpace {
    pub tokenizer: Tokenizer,
    pub hash: HashFamily,
    pub ngrams: usize,
    pub buckets: u32,
    pub lowercase: bool,
}

impl FeatureSpace {
    /// Checks the ranges: `ngrams` in 1..=8, `buckets` >= 1.
    pub fn validate(&self) -> Result<()> {
        if !(1..=8).contains(&self.ngrams) {
            return Err(Error::invalid(format!("ngrams must be in 1..=8, got {}", self.ngrams)));
        }
        if self.buckets == 0 {
            return Err(Error::invalid("buckets must be at least 1"));
        }
        Ok(())
    }
}

/// A token id that can be hashed: unsigned 32/64-bit, or signed 64-bit checked to be >= 0.
pub trait TokenId: Copy + Send + Sync {
    fn to_u64(self) -> Option<u64>;
}
impl TokenId for u32 {
    fn to_u64(self) -> Option<u64> {
        Some(u64::from(self))
    }
}
impl TokenId for u64 {
    fn to_u64(self) -> Option<u64> {
        Some(self)
    }
}
impl TokenId for i64 {
    fn to_u64(self) -> Option<u64> {
        u64::try_from(self).ok()
    }
}

/// Texts longer than this are featurised a piece at a time, each cut just before a space or line
/// break (a token boundary under both tokenizers, and a stop for the final-sigma rule's look
/// around), so that the scratch buffers stay small, in cache, whatever the document's size.
const PIECE_BYTES: usize = 1 << 16;

/// The end of the first piece of `text`: all of it when shorter than `piece_bytes` (at least
/// 1), else its first space or line break from there on, or its end.
fn piece_end(text: &[u8], piece_bytes: usize) -> usize {
    let from = piece_bytes.max(1);
    match text.get(from..) {
        Some(tail) => memchr::memchr2(b' ', b'\n', tail).map_or(text.len(), |i| from + i),
        None => text.len(),
    }
}

/// Per-thread scratch space, reused across documents.
#[derive(Default)]
pub struct Scratch {
    text: String,
    keys: Vec<u64>,
    /// The keys of tokens of earlier pieces whose n-grams are not all emitted yet, then those
    /// of the current piece (texts of more than one piece, see [`PIECE_BYTES`]).
    pending: Vec<u64>,
    /// Token byte ranges, and the tokens whose `fast-v1` keys take the one-at-a-time path.
    spans: Vec<Range<usize>>,
    others: Vec<usize>,
    /// A document's unigram and bigram buckets under `fast-v1`.
    unigram_bigram: Vec<u32>,
    /// Tokens joined by one space, and their byte ranges in it (for `dsir-sha256`).
    joined: Vec<u8>,
    bounds: Vec<Range<usize>>,
    token: Vec<u8>,
    buckets: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Scratch {
    /// The most bytes a buffer keeps between tasks. Texts are featurised a piece at a time, so
    /// their buffers stay below it; an enormous token-id document, or a long document's bucket
    /// ids, grow some beyond, and those are freed once the task is done.
    const KEPT_BYTES: usize = 8 << 20;

    /// Frees the buffers grown beyond [`Self::KEPT_BYTES`].
    fn free_large_buffers(&mut self) {
        fn free_if_large<T>(buffer: &mut Vec<T>) {
            if buffer.capacity() * std::mem::size_of::<T>() > Scratch::KEPT_BYTES {
                *buffer = Vec::new();
            }
        }
        let Scratch { text, keys, pending, spans, others, unigram_bigram, joined, bounds, token, buckets } = self;
        if text.capacity() > Self::KEPT_BYTES {
            *text = String::new();
        }
        free_if_large(keys);
        free_if_large(pending);
        free_if_large(spans);
        free_if_large(others);
        free_if_large(unigram_bigram);
        free_if_large(joined);
        free_if_large(bounds);
        free_if_large(token);
        free_if_large(buckets);
    }
}

/// Runs `f` with this thread's [`Scratch`]: a parallel task reuses the buffers that earlier
/// tasks on its thread grew, instead of growing new ones; a buffer grown beyond 8 MiB is freed
/// afterwards, so a pool thread does not hold on to the memory of the largest document it ever
/// saw.
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let result = f(&mut scratch);
        scratch.free_large_buffers();
        result
    })
}

/// Set when a token lowercased on its own holds a capital sigma (U+03A3): Python lowercases it by
/// its neighbours across token boundaries (the final-sigma rule), so the whole text is lowercased
/// instead. Only non-ASCII tokens are searched, and a capital sigma is rare, so the common text
/// is scanned once.
#[derive(Default)]
struct CapitalSigma(bool);

impl CapitalSigma {
    fn check(&mut self, token: &str) {
        // 'Σ' is 0xCE 0xA3 in UTF-8.
        self.0 |= memchr::memmem::find(token.as_bytes(), "Σ".as_bytes()).is_some();
    }
}

/// `fast-v1` hash of the token `text[span]`, lowercased like Python's `str.lower()` (final sigma
/// aside) when `lowercase`: ASCII eight bytes at a time, other tokens through `lowered`.
#[inline(always)]
fn fast_token_hash(
    text: &str,
    span: Range<usize>,
    lowercase: bool,
    lowered: &mut Vec<u8>,
    sigma: &mut CapitalSigma,
) -> u64 {
    if !lowercase {
        return hash::fast_hash_bytes(&text.as_bytes()[span]);
    }
    match hash::fast_hash_ascii_lowercase_in(text.as_bytes(), span.clone()) {
        Some(key) => key,
        None => fast_hash_unicode_lowercased(&text[span], lowered, sigma),
    }
}

#[cold]
#[inline(never)]
fn fast_hash_unicode_lowercased(token: &str, lowered: &mut Vec<u8>, sigma: &mut CapitalSigma) -> u64 {
    sigma.check(token);
    lowered.clear();
    text::lowercase_token_into(token, lowered);
    hash::fast_hash_bytes(lowered)
}

/// Appends the token `text[span]` to `joined`, lowercased if asked, and its range there to
/// `bounds`, then one space.
fn join_token(
    text: &str,
    span: Range<usize>,
    lowercase: bool,
    joined: &mut Vec<u8>,
    bounds: &mut Vec<Range<usize>>,
    sigma: &mut CapitalSigma,
) {
    let start = joined.len();
    let token = &text[span];
    if !lowercase {
        joined.extend_from_slice(token.as_bytes());
    } else if token.is_ascii() {
        joined.extend_from_slice(token.as_bytes());
        joined[start..].make_ascii_lowercase();
    } else {
        sigma.check(token);
        text::lowercase_token_into(token, joined);
    }
    bounds.push(start..joined.len());
    joined.push(b' ');
}

/// Per-document sparse counts in CSR layout; `indices` are sorted within each row.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CsrCounts {
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub counts: Vec<i64>,
}

impl CsrCounts {
    /// Appends the rows of `other` (a whole matrix, `indptr` starting at 0) after these.
    pub fn append(&mut self, other: CsrCounts) {
        if self.indptr.is_empty() {
            *self = other;
            return;
        }
        let base = self.indices.len() as u64;
        self.indptr.extend(other.indptr.iter().skip(1).map(|end| base + end));
        self.indices.extend_from_slice(&other.indices);
        self.counts.extend_from_slice(&other.counts);
    }
}

/// Documents per parallel task: large enough to amortise scheduling, small enough to balance.
const DOCS_PER_TASK: usize = 64;

/// Turns documents into hashed n-gram bucket ids.
#[derive(Clone, Debug)]
pub struct Featurizer {
    space: FeatureSpace,
}

impl Featurizer {
    pub fn new(space: FeatureSpace) -> Result<Self> {
        space.validate()?;
        Ok(Featurizer { space })
    }

    pub fn space(&self) -> &FeatureSpace {
        &self.space
    }

    /// Calls `emit` with the bucket of every n-gram of `text`.
    pub fn for_each_bucket(&self, text: &str, scratch: &mut Scratch, mut emit: impl FnMut(u32)) {
        if text.len() > PIECE_BYTES {
            return self.for_each_bucket_in_pieces(text, PIECE_BYTES, scratch, emit);
        }
        scratch.joined.clear();
        scratch.bounds.clear();
        self.piece_tokens(text, scratch);
        let Scratch { keys, joined, bounds, unigram_bigram, .. } = scratch;
        match self.space.hash {
            HashFamily::FastV1 => self.emit_fast(keys, keys.len(), unigram_bigram, &mut emit),
            HashFamily::DsirSha256 => self.emit_sha256(joined, bounds, bounds.len(), &mut emit),
        }
    }

    /// [`Self::for_each_bucket`], `piece_bytes` (about) of the text at a time: the n-grams that
    /// start in a piece are emitted once the next pieces have given their last tokens, so the
    /// order is that of one pass.
    fn for_each_bucket_in_pieces(
        &self,
        text: &str,
        piece_bytes: usize,
        scratch: &mut Scratch,
        mut emit: impl FnMut(u32),
    ) {
        scratch.pending.clear();
        scratch.joined.clear();
        scratch.bounds.clear();
        let mut rest = text;
        loop {
            let (piece, after) = rest.split_at(piece_end(rest.as_bytes(), piece_bytes));
            let is_last = after.is_empty();
            self.piece_tokens(piece, scratch);
            match self.space.hash {
                HashFamily::FastV1 => {
                    let Scratch { keys, pending, unigram_bigram, .. } = scratch;
                    pending.extend_from_slice(keys);
                    let starts = self.complete_starts(pending.len(), is_last);
                    self.emit_fast(pending, starts, unigram_bigram, &mut emit);
                    pending.drain(..starts);
                }
                HashFamily::DsirSha256 => {
                    let Scratch { joined, bounds, .. } = scratch;
                    let starts = self.complete_starts(bounds.len(), is_last);
                    self.emit_sha256(joined, bounds, starts, &mut emit);
                    // The tokens whose n-grams are not all emitted move to the front.
                    let offset = bounds.get(starts).map_or(joined.len(), |b| b.start);
                    joined.drain(..offset);
                    bounds.drain(..starts);
                    for bound in bounds.iter_mut() {
                        *bound = bound.start - offset..bound.end - offset;
                    }
                }
            }
            if is_last {
                return;
            }
            rest = after;
        }
    }

    /// How many of the first of `tokens` pending tokens have all their n-grams known: at the end
    /// of the text all, else those followed by `ngrams - 1` tokens.
    fn complete_starts(&self, tokens: usize, is_last: bool) -> usize {
        if is_last { tokens } else { tokens.saturating_sub(self.space.ngrams - 1) }
    }

    /// The tokens of a piece of text into the scratch: their `fast-v1` keys in `keys` (replacing
    /// what was there), or their `dsir-sha256` form after what `joined` and `bounds` hold.
    fn piece_tokens(&self, piece: &str, scratch: &mut Scratch) {
        // Lowercasing keeps every character's class, so the text is split as it is and each
        // token is lowercased as it is hashed; only the final-sigma rule needs the whole piece.
        let (joined_len, bounds_len) = (scratch.joined.len(), scratch.bounds.len());
        if !self.hashable_tokens(piece, self.space.lowercase, scratch) {
            scratch.joined.truncate(joined_len);
            scratch.bounds.truncate(bounds_len);
            let mut lowered = std::mem::take(&mut scratch.text);
            let whole = text::lowercase_into(piece, &mut lowered);
            let complete = self.hashable_tokens(whole, false, scratch);
            debug_assert!(complete, "lowercasing off never restarts");
            scratch.text = lowered;
        }
    }

    /// Splits `text` into the scratch's tokens in the form the hash family needs (`keys` for
    /// `fast-v1`, replaced; `joined` and `bounds` for `dsir-sha256`, appended to), lowercasing
    /// token by token if asked.
    /// Returns false, with the scratch unusable, when a capital sigma means the text must be
    /// lowercased whole (see [`CapitalSigma`]).
    fn hashable_tokens(&self, text: &str, lowercase: bool, scratch: &mut Scratch) -> bool {
        let Scratch { keys, joined, bounds, token, spans, others, .. } = scratch;
        let mut sigma = CapitalSigma::default();
        let tokenizer = self.space.tokenizer;
        match self.space.hash {
            HashFamily::FastV1 => {
                spans.clear();
                tokenizer.split_into(text, spans);
                fast_batch::short_token_keys(text.as_bytes(), spans, lowercase, keys, others);
                for &i in others.iter() {
                    keys[i] = fast_token_hash(text, spans[i].clone(), lowercase, token, &mut sigma);
                }
            }
            HashFamily::DsirSha256 => {
                spans.clear();
                tokenizer.split_into(text, spans);
                for span in spans.iter() {
                    join_token(text, span.clone(), lowercase, joined, bounds, &mut sigma);
                }
            }
        }
        !sigma.0
    }

    /// Calls `emit` with the bucket of every n-gram of a sequence of token ids. Under
    /// `dsir-sha256` a token is its decimal string, so the buckets equal those of the text
    /// `" ".join(map(str, ids))`.
    pub fn for_each_bucket_of_ids<T: TokenId>(
        &self,
        ids: &[T],
        scratch: &mut Scratch,
        mut emit: impl FnMut(u32),
    ) -> Result<()> {
        let Scratch { keys, joined, bounds, unigram_bigram, .. } = scratch;
        let to_u64 = |id: T| id.to_u64().ok_or_else(|| Error::invalid("token ids must be >= 0"));
        match self.space.hash {
            HashFamily::FastV1 => {
                keys.clear();
                for &id in ids {
                    keys.push(hash::fast_hash_id(to_u64(id)?));
                }
                self.emit_fast(keys, keys.len(), unigram_bigram, &mut emit);
            }
            HashFamily::DsirSha256 => {
                use std::io::Write;
                joined.clear();
                bounds.clear();
                for &id in ids {
                    let start = joined.len();
                    write!(joined, "{}", to_u64(id)?).expect("writing to a Vec cannot fail");
                    bounds.push(start..joined.len());
                    joined.push(b' ');
                }
                self.emit_sha256(joined, bounds, bounds.len(), &mut emit);
            }
        }
        Ok(())
    }

    /// Emits the bucket of every n-gram starting at one of the first `starts` of the tokens whose
    /// `fast-v1` keys are `keys`; unigrams and bigrams, the common case, go through
    /// [`fast_batch`] (with `unigram_bigram` as room).
    #[inline(always)]
    fn emit_fast(&self, keys: &[u64], starts: usize, unigram_bigram: &mut Vec<u32>, emit: &mut impl FnMut(u32)) {
        let m = self.space.buckets;
        if self.space.ngrams == 2 {
            fast_batch::unigram_bigram_buckets(keys, m, unigram_bigram);
            // Two buckets per start, the last token's unigram alone.
            let emitted = (2 * starts).min(unigram_bigram.len());
            unigram_bigram[..emitted].iter().for_each(|&b| emit(b));
            return;
        }
        for start in 0..starts {
            let mut key = keys[start];
            emit(hash::fast_bucket(key, m));
            for &next in keys.iter().skip(start + 1).take(self.space.ngrams - 1) {
                key = hash::fast_combine(key, next);
                emit(hash::fast_bucket(key, m));
            }
        }
    }

    /// Takes the bucket of every n-gram starting at one of the first `starts` of the tokens
    /// `joined[bounds[i]]`, which `joined` holds separated by one space (so an n-gram is one
    /// slice of it), through this thread's SHA-256 cache.
    fn emit_sha256(&self, joined: &[u8], bounds: &[Range<usize>], starts: usize, emit: &mut impl FnMut(u32)) {
        hash::with_sha256_buckets(self.space.buckets, |cache| {
            cache.for_each_ngram_bucket(joined, bounds, self.space.ngrams, starts, emit);
        });
    }

    /// Sparse per-document counts of `docs`, in input order, computed on `pool`.
    pub fn transform<D: AsRef<str> + Sync>(&self, pool: &rayon::ThreadPool, docs: &[D]) -> CsrCounts {
        let prefetch = |doc: &D| prefetch_text_start(doc.as_ref());
        let Ok(csr) = csr_rows::<_, std::convert::Infallible>(pool, docs, prefetch, |doc, scratch, emit| {
            self.for_each_bucket(doc.as_ref(), scratch, emit);
            Ok(())
        });
        csr
    }

    /// Sparse per-document counts of token-id documents: document i is
    /// `ids[offsets[i]..offsets[i + 1]]`.
    pub fn transform_ids<T: TokenId>(&self, pool: &rayon::ThreadPool, ids: &[T], offsets: &[u64]) -> Result<CsrCounts> {
        self.transform_id_ranges(pool, ids, &id_document_ranges(ids.len(), offsets)?)
    }

    /// [`Self::transform_ids`] of the documents `ids[range]` for each of `ranges` (from
    /// [`id_document_ranges`], or a run of them).
    pub fn transform_id_ranges<T: TokenId>(
        &self,
        pool: &rayon::ThreadPool,
        ids: &[T],
        ranges: &[Range<usize>],
    ) -> Result<CsrCounts> {
        csr_rows(
            pool,
            ranges,
            |_| {},
            |range, scratch, emit| self.for_each_bucket_of_ids(&ids[range.clone()], scratch, emit),
        )
    }
}

/// One CSR row per item, in order, computed in parallel: `row(item, scratch, emit)` emits the
/// item's buckets, and `prefetch(next)` is called on the next item of a task just before.
fn csr_rows<T: Sync, E: Send>(
    pool: &rayon::ThreadPool,
    items: &[T],
    prefetch: impl Fn(&T) + Sync,
    row: impl Fn(&T, &mut Scratch, &mut dyn FnMut(u32)) -> Result<(), E> + Sync,
) -> Result<CsrCounts, E> {
    let pieces: Result<Vec<CsrCounts>, E> = pool.install(|| {
        items
            .par_chunks(DOCS_PER_TASK)
            .map(|chunk| {
                with_scratch(|scratch| {
                    let mut piece = CsrCounts { indptr: Vec::with_capacity(chunk.len()), ..Default::default() };
                    for (i, item) in chunk.iter().enumerate() {
                        if let Some(next) = chunk.get(i + 1) {
                            prefetch(next);
                        }
                        let mut buckets = std::mem::take(&mut scratch.buckets);
                        buckets.clear();
                        row(item, scratch, &mut |b| buckets.push(b))?;
                        push_row(&mut piece, &mut buckets);
                        scratch.buckets = buckets;
                    }
                    Ok(piece)
                })
            })
            .collect()
    });
    Ok(concat_rows(pieces?))
}

/// Checks that `offsets` is a non-decreasing list of positions into `len` token ids starting at
/// 0 and ending at `len`, and returns the documents' ranges of ids.
pub fn id_document_ranges(len: usize, offsets: &[u64]) -> Result<Vec<Range<usize>>> {
    if offsets.first() != Some(&0) || offsets.last().map(|&o| o as usize) != Some(len) {
        return Err(Error::invalid(format!(
            "offsets must start at 0 and end at len(ids) = {len} (got {} offsets)",
            offsets.len()
        )));
    }
    offsets
        .windows(2)
        .enumerate()
        .map(|(doc, w)| {
            if w[0] > w[1] {
                Err(Error::invalid(format!("offsets decrease at document {doc}: {} > {}", w[0], w[1])))
            } else {
                Ok(w[0] as usize..w[1] as usize)
            }
        })
        .collect()
}

/// Sorts one document's buckets and appends them to `piece` as (bucket, count) pairs.
fn push_row(piece: &mut CsrCounts, buckets: &mut [u32]) {
    buckets.sort_unstable();
    for run in buckets.chunk_by(|a, b| a == b) {
        piece.indices.push(run[0]);
        piece.counts.push(run.len() as i64);
    }
    // Within a piece `indptr` holds each row's end; `concat_rows` rebases it.
    piece.indptr.push(piece.indices.len() as u64);
}

fn concat_rows(pieces: Vec<CsrCounts>) -> CsrCounts {
    let nnz = pieces.iter().map(|p| p.indices.len()).sum();
    let rows = pieces.iter().map(|p| p.indptr.len()).sum::<usize>();
    let mut out = CsrCounts {
        indptr: Vec::with_capacity(rows + 1),
        indices: Vec::with_capacity(nnz),
        counts: Vec::with_capacity(nnz),
    };
    out.indptr.push(0);
    for piece in pieces {
        let base = out.indices.len() as u64;
        out.indptr.extend(piece.indptr.iter().map(|end| base + end));
        out.indices.extend_from_slice(&piece.indices);
        out.counts.extend_from_slice(&piece.counts);
    }
    out
}

/// Dense int64 totals over a stream of document batches. Each worker thread adds into its own
/// vector; integer sums make the total independent of thread count and batch order.
pub struct CountAccumulator {
    featurizer: Featurizer,
    per_thread: Vec<Mutex<Vec<i64>>>,
}

impl CountAccumulator {
    pub fn new(featurizer: Featurizer, pool: &rayon::ThreadPool) -> Self {
        let per_thread = (0..pool.current_num_threads()).map(|_| Mutex::new(Vec::new())).collect();
        CountAccumulator { featurizer, per_thread }
    }

    fn with_thread_counts(&self, f: impl FnOnce(&mut Vec<i64>)) {
        let slot = rayon::current_thread_index().unwrap_or(0) % self.per_thread.len();
        let mut counts = self.per_thread[slot].lock().expect("a counting task panicked");
        if counts.is_empty() {
            counts.resize(self.featurizer.space.buckets as usize, 0);
        }
        f(&mut counts);
    }

    /// Adds the n-gram counts of `docs`.
    pub fn add_texts<D: AsRef<str> + Sync>(&self, pool: &rayon::ThreadPool, docs: &[D]) {
        pool.install(|| {
            docs.par_chunks(DOCS_PER_TASK).for_each(|chunk| {
                with_scratch(|scratch| {
                    self.with_thread_counts(|counts| {
                        let counts = counts.as_mut_slice();
                        for doc in prefetching_next(chunk) {
                            self.featurizer.for_each_bucket(doc.as_ref(), scratch, |b| counts[b as usize] += 1);
                        }
                    })
                });
            })
        });
    }

    /// Adds the n-gram counts of `docs` and writes each document's bucket ids to `spill`.
    pub fn add_texts_spilling<D: AsRef<str> + Sync>(
        &self,
        pool: &rayon::ThreadPool,
        docs: &[D],
        spill: &mut SpillWriter,
    ) -> Result<()> {
        let width = spill::id_width(self.featurizer.space.buckets);
        let pieces: Vec<SpillBuffer> = pool.install(|| {
            docs.par_chunks(DOCS_PER_TASK)
                .map(|chunk| {
                    let mut buffer = SpillBuffer::default();
                    let mut buckets = Vec::new();
                    with_scratch(|scratch| {
                        self.with_thread_counts(|counts| {
                            for doc in prefetching_next(chunk) {
                                buckets.clear();
                                self.featurizer.for_each_bucket(doc.as_ref(), scratch, |b| buckets.push(b));
                                for &b in &buckets {
                                    counts[b as usize] += 1;
                                }
                                buffer.push_document(&buckets, width);
                            }
                        })
                    });
                    buffer
                })
                .collect()
        });
        pieces.into_iter().try_for_each(|buffer| spill.write(buffer))
    }

    /// Adds the n-gram counts of the token-id documents `ids[range]` for each of `ranges` (see
    /// [`id_document_ranges`] and [`Featurizer::transform_ids`]).
    pub fn add_id_ranges<T: TokenId>(
        &self,
        pool: &rayon::ThreadPool,
        ids: &[T],
        ranges: &[Range<usize>],
    ) -> Result<()> {
        pool.install(|| {
            ranges.par_chunks(DOCS_PER_TASK).try_for_each(|chunk| {
                with_scratch(|scratch| {
                    let mut result = Ok(());
                    self.with_thread_counts(|counts| {
                        result = chunk.iter().try_for_each(|range| {
                            self.featurizer
                                .for_each_bucket_of_ids(&ids[range.clone()], scratch, |b| counts[b as usize] += 1)
                        });
                    });
                    result
                })
            })
        })
    }

    /// The total count per bucket.
    pub fn finish(self) -> Vec<i64> {
        let mut total = vec![0i64; self.featurizer.space.buckets as usize];
        for counts in self.per_thread {
            let counts = counts.into_inner().expect("a counting task panicked");
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool;

    fn space(hash: HashFamily, ngrams: usize, buckets: u32) -> FeatureSpace {
        FeatureSpace { tokenizer: Tokenizer::WordPunct, hash, ngrams, buckets, lowercase: true }
    }

    fn buckets_of(f: &Featurizer, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        f.for_each_bucket(text, &mut Scratch::default(), |b| out.push(b));
        out.sort_unstable();
        out
    }

    #[test]
    fn alice_went_to_the_store_gives_the_reference_buckets() {
        let f = Featurizer::new(space(HashFamily::DsirSha256, 2, 10_000)).unwrap();
        assert_eq!(buckets_of(&f, "Alice went to the store"), [114, 1087, 2441, 3440, 4126, 5816, 6720, 8288, 9879]);
    }

    /// A text of `words` words from a fixed mix (capitals, punctuation, non-ASCII, capital
    /// sigmas, tokens over eight bytes) separated by runs of spaces, tabs and line breaks.
    fn mixed_text(words: usize, seed: u64) -> String {
        const WORDS: [&str; 12] =
            ["Alice", "went", "to", "the", "STORE,", "don't", "Ünïcödé", "ΟΔΟΣ", "Σ", "ΣΑΣ.", "extraordinarily", "x²"];
        const GAPS: [&str; 6] = [" ", " ", "  ", "\n", " \t", "\n\n "];
        let mut state = seed;
        let mut next = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut text = String::new();
        for _ in 0..words {
            text.push_str(WORDS[next(WORDS.len())]);
            text.push_str(GAPS[next(GAPS.len())]);
        }
        text
    }

    #[test]
    fn pieces_give_the_buckets_of_one_pass_in_the_same_order() {
        let texts = [mixed_text(600, 1), mixed_text(600, 2).trim_end().to_string(), " ".repeat(300), String::new()];
        let mut scratch = Scratch::default();
        for hash in [HashFamily::FastV1, HashFamily::DsirSha256] {
            for tokenizer in [Tokenizer::WordPunct, Tokenizer::Whitespace] {
                for (ngrams, lowercase) in [(1, true), (2, true), (2, false), (3, true), (4, false)] {
                    let space = FeatureSpace { tokenizer, hash, ngrams, buckets: 1 << 20, lowercase };
                    let f = Featurizer::new(space).unwrap();
                    for text in &texts {
                        assert!(text.len() <= PIECE_BYTES);
                        let mut one_pass = Vec::new();
                        f.for_each_bucket(text, &mut scratch, |b| one_pass.push(b));
                        for piece_bytes in [1, 2, 7, 64, 500] {
                            let mut pieces = Vec::new();
                            f.for_each_bucket_in_pieces(text, piece_bytes, &mut scratch, |b| pieces.push(b));
                            assert!(
                                pieces == one_pass,
                                "{hash:?} {tokenizer:?} n={ngrams} lowercase={lowercase} piece={piece_bytes}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn feature_count_is_sum_of_window_counts() {
        for hash in [HashFamily::DsirSha256, HashFamily::FastV1] {
            for n in 1..=4 {
                let f = Featurizer::new(space(hash, n, 1 << 20)).unwrap();
                for u in 0..6usize {
                    let text = vec!["w"; u].join(" ");
                    let expected: usize = (0..n).map(|k| u.saturating_sub(k)).sum();
                    assert_eq!(buckets_of(&f, &text).len(), expected, "{hash:?} n={n} u={u}");
                }
            }
        }
    }

    #[test]
    fn ids_under_sha256_equal_their_decimal_text() {
        let f = Featurizer::new(space(HashFamily::DsirSha256, 3, 10_000)).unwrap();
        let ids: [u32; 5] = [17, 4, 17, 99_999, 0];
        let mut from_ids = Vec::new();
        f.for_each_bucket_of_ids(&ids, &mut Scratch::default(), |b| from_ids.push(b)).unwrap();
        from_ids.sort_unstable();
        assert_eq!(from_ids, buckets_of(&f, "17 4 17 99999 0"));
    }

    #[test]
    fn negative_ids_and_bad_offsets_are_rejected() {
        let f = Featurizer::new(space(HashFamily::FastV1, 2, 100)).unwrap();
        let pool = pool::thread_pool(1);
        assert!(f.transform_ids(&pool, &[1i64, -2], &[0, 2]).is_err());
        assert!(f.transform_ids(&pool, &[1u32, 2], &[0, 1]).is_err());
        assert!(f.transform_ids(&pool, &[1u32, 2], &[0, 2, 1, 2]).is_err());
        assert!(f.transform_ids(&pool, &[1u32, 2], &[1, 2]).is_err());
        assert_eq!(f.transform_ids(&pool, &[1u32, 2], &[0, 0, 2, 2]).unwrap().indptr, [0, 0, 3, 3]);
    }

    #[test]
    fn a_thread_frees_the_scratch_an_enormous_document_grew() {
        let f = Featurizer::new(space(HashFamily::FastV1, 2, 97)).unwrap();
        let ids: Vec<u32> = (0..2_000_000).collect(); // 16 MB of keys
        let mut buckets = 0usize;
        with_scratch(|scratch| f.for_each_bucket_of_ids(&ids, scratch, |_| buckets += 1)).unwrap();
        assert_eq!(buckets, 2 * ids.len() - 1);
        with_scratch(|scratch| {
            assert!(scratch.keys.capacity() * 8 <= Scratch::KEPT_BYTES, "{}", scratch.keys.capacity());
            assert!(scratch.unigram_bigram.capacity() * 4 <= Scratch::KEPT_BYTES);
        });
        // Small buffers stay for the next task.
        with_scratch(|scratch| f.for_each_bucket_of_ids(&ids[..1000], scratch, |_| {})).unwrap();
        with_scratch(|scratch| assert!(scratch.keys.capacity() >= 1000));
    }

    #[test]
    fn appended_matrices_equal_one_transform() {
        let f = Featurizer::new(space(HashFamily::FastV1, 2, 97)).unwrap();
        let pool = crate::pool::thread_pool(2);
        let docs: Vec<String> = (0..150).map(|i| mixed_text(i % 7, i as u64)).collect();
        let mut parts = CsrCounts::default();
        for (start, end) in [(0, 0), (0, 1), (1, 90), (90, 90), (90, 150)] {
            parts.append(f.transform(&pool, &docs[start..end]));
        }
        assert_eq!(parts, f.transform(&pool, &docs));
    }

    #[test]
    fn transform_rows_add_up_to_the_accumulated_total_for_any_thread_count() {
        let docs: Vec<String> = (0..1000).map(|i| format!("doc {i} has words, {} and more", i % 7)).collect();
        for hash in [HashFamily::DsirSha256, HashFamily::FastV1] {
            let f = Featurizer::new(space(hash, 2, 1000)).unwrap();
            let mut totals = Vec::new();
            for threads in [1, 2, 3] {
                let pool = pool::thread_pool(threads);
                let csr = f.transform(&pool, &docs);
                assert_eq!(csr.indptr.len(), docs.len() + 1);
                let mut from_rows = vec![0i64; 1000];
                for (&b, &c) in csr.indices.iter().zip(&csr.counts) {
                    from_rows[b as usize] += c;
                }
                let acc = CountAccumulator::new(f.clone(), &pool);
                acc.add_texts(&pool, &docs[..500]);
                acc.add_texts(&pool, &docs[500..]);
                let total = acc.finish();
                assert_eq!(total, from_rows);
                totals.push(total);
            }
            assert!(totals.windows(2).all(|w| w[0] == w[1]));
        }
    }

    #[test]
    fn invalid_spaces_are_rejected() {
        assert!(Featurizer::new(space(HashFamily::FastV1, 0, 10)).is_err());
        assert!(Featurizer::new(space(HashFamily::FastV1, 9, 10)).is_err());
        assert!(Featurizer::new(space(HashFamily::FastV1, 2, 0)).is_err());
    }
}
