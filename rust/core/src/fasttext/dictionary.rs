//! fastText's dictionary and the features of a line: word rows, character n-grams and word
//! n-grams in fastText's order, with its hashing quirks.
//!
//! * The string hash is FNV-1a over *sign-extended* bytes ([`hash`]).
//! * Word n-grams fold the int32 word hashes sign-extended to 64 bits with the multiplier
//!   116049371 and take the bucket modulo in unsigned 64-bit arithmetic.
//! * Character n-grams of `"<" + word + ">"` count code points and take the bucket modulo in
//!   unsigned 32-bit arithmetic.
//! * Unknown tokens add no row but their hash still joins word n-grams; `</s>` does too.

use crate::error::{Error, Result};
use crate::memory::{advise_huge_pages, prefetch};

/// The end-of-line token every line ends with.
pub const EOS: &[u8] = b"</s>";

/// The label prefix fastText assumes (it is not stored in model files).
pub const LABEL_PREFIX: &[u8] = b"__label__";

/// fastText's 32-bit string hash: FNV-1a in which each byte is sign-extended before the xor,
/// so bytes >= 0x80 contribute `0xFFFFFFxx`.
pub fn hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261u32, |h, &b| (h ^ (b as i8 as i32 as u32)).wrapping_mul(16_777_619))
}

/// Multiplier of the word n-gram fold.
const WORD_NGRAM_MULTIPLIER: u64 = 116_049_371;

/// The dictionary of a supervised model: words (ids `0..nwords`), then labels.
#[derive(Debug)]
pub struct Dictionary {
    /// The bytes of all entries, back to back; entry `i` is `arena[starts[i]..starts[i + 1]]`.
    arena: Vec<u8>,
    starts: Vec<usize>,
    counts: Vec<i64>,
    nwords: usize,
    ntokens: i64,
    /// `None`: not pruned. `Some(pairs)`: pruned, bucket → compact n-gram row, sorted by bucket
    /// (an empty list drops every n-gram, as fastText does for `pruneidx_size == 0`).
    prune: Option<Vec<(i32, i32)>>,
    /// Open addressing over `(hash << 32) | (id + 1)`, 0 meaning empty.
    table: Vec<u64>,
    table_shift: u32,
    args: FeatureArgs,
}

/// The settings of the model that shape its features.
#[derive(Clone, Copy, Debug)]
pub struct FeatureArgs {
    pub word_ngrams: i32,
    pub bucket: i32,
    pub minn: i32,
    pub maxn: i32,
}

impl Dictionary {
    /// Builds a dictionary from its entries (already checked: words first, then labels) and
    /// the pruning index as stored (`None` when `pruneidx_size == -1`).
    pub(crate) fn new(
        arena: Vec<u8>,
        starts: Vec<usize>,
        counts: Vec<i64>,
        nwords: usize,
        ntokens: i64,
        prune: Option<Vec<(i32, i32)>>,
        args: FeatureArgs,
    ) -> Result<Self> {
        let size = counts.len();
        debug_assert_eq!(starts.len(), size + 1);
        if (args.word_ngrams > 1 || args.maxn > 0) && args.bucket <= 0 {
            return Err(Error::invalid(format!(
                "bucket is {} but wordNgrams is {} and maxn is {}: n-grams need buckets",
                args.bucket, args.word_ngrams, args.maxn
            )));
        }
        // Later duplicates win, as in fastText's table (a map keeps the last assignment).
        let prune = prune.map(|mut pairs| {
            let mut last = std::collections::HashMap::with_capacity(pairs.len());
            for (k, v) in pairs.drain(..) {
                last.insert(k, v);
            }
            let mut pairs: Vec<(i32, i32)> = last.into_iter().collect();
            pairs.sort_unstable();
            pairs
        });
        let capacity = (size * 2).max(16).next_power_of_two();
        let mut dict = Dictionary {
            arena,
            starts,
            counts,
            nwords,
            ntokens,
            prune,
            table: vec![0; capacity],
            table_shift: 64 - capacity.trailing_zeros(),
            args,
        };
        advise_huge_pages(&dict.table);
        for id in 0..size {
            let word = dict.entry(id);
            let h = hash(word);
            let slot = dict.find_slot(word, h);
            dict.table[slot] = (u64::from(h) << 32) | (id as u64 + 1);
        }
        Ok(dict)
    }

    #[inline]
    fn home_slot(&self, h: u32) -> usize {
        (u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.table_shift) as usize
    }

    fn find_slot(&self, word: &[u8], h: u32) -> usize {
        let mask = self.table.len() - 1;
        let mut slot = self.home_slot(h);
        loop {
            let cell = self.table[slot];
            if cell == 0 || ((cell >> 32) as u32 == h && self.entry((cell as u32 - 1) as usize) == word) {
                return slot;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The id of `word` (whose hash is `h`), words and labels alike.
    pub fn id(&self, word: &[u8], h: u32) -> Option<usize> {
        let cell = self.table[self.find_slot(word, h)];
        (cell != 0).then(|| (cell as u32 - 1) as usize)
    }

    /// The bytes of entry `id`.
    pub fn entry(&self, id: usize) -> &[u8] {
        &self.arena[self.starts[id]..self.starts[id + 1]]
    }

    pub fn nwords(&self) -> usize {
        self.nwords
    }
    pub fn nlabels(&self) -> usize {
        self.counts.len() - self.nwords
    }
    /// Tokens read when the dictionary was built (labels and `</s>` included).
    pub fn ntokens(&self) -> i64 {
        self.ntokens
    }
    /// The count of entry `id`.
    pub fn count(&self, id: usize) -> i64 {
        self.counts[id]
    }
    /// The bytes of label `label` (0-based among labels).
    pub fn label(&self, label: usize) -> &[u8] {
        self.entry(self.nwords + label)
    }
    /// Whether the dictionary was pruned by quantisation.
    pub fn is_pruned(&self) -> bool {
        self.prune.is_some()
    }
    /// Entries of the pruning index.
    pub fn prune_len(&self) -> usize {
        self.prune.as_ref().map_or(0, Vec::len)
    }
    /// The pruning index (bucket, row), sorted by bucket; `None` when not pruned.
    pub fn prune_pairs(&self) -> Option<&[(i32, i32)]> {
        self.prune.as_deref()
    }
    /// Whether any feature can land in bucket rows.
    pub(crate) fn prune_values(&self) -> impl Iterator<Item = i32> + '_ {
        self.prune.iter().flatten().map(|&(_, v)| v)
    }

    /// fastText's `pushHash`: bucket `id` becomes row `nwords + id`, through the pruning index.
    #[inline]
    fn push_bucket(&self, id: u32, rows: &mut Vec<i32>) {
        match &self.prune {
            None => rows.push(self.nwords as i32 + id as i32),
            Some(pairs) => {
                if let Ok(i) = pairs.binary_search_by_key(&(id as i32), |&(k, _)| k) {
                    rows.push(self.nwords as i32 + pairs[i].1);
                }
            }
        }
    }

    /// Appends the character n-gram rows of `bracketed` (`"<" + word + ">"`), in fastText's
    /// order: by start character, then by length.
    pub fn push_char_ngrams(&self, bracketed: &[u8], rows: &mut Vec<i32>) {
        if self.args.maxn <= 0 {
            return;
        }
        let continuation = |b: u8| b & 0xC0 == 0x80;
        let len = bracketed.len();
        for i in 0..len {
            if continuation(bracketed[i]) {
                continue;
            }
            let mut j = i;
            let mut n = 1;
            while j < len && n <= self.args.maxn {
                j += 1;
                while j < len && continuation(bracketed[j]) {
                    j += 1;
                }
                if n >= self.args.minn && !(n == 1 && (i == 0 || j == len)) {
                    self.push_bucket(hash(&bracketed[i..j]) % self.args.bucket as u32, rows);
                }
                n += 1;
            }
        }
    }

    /// The rows of one token: its own row and, with character n-grams, those of its n-grams
    /// (unknown words only their n-grams; `</s>` never has n-grams). `scratch` holds the
    /// bracketed word.
    pub fn push_word(&self, token: &[u8], id: Option<usize>, scratch: &mut Vec<u8>, rows: &mut Vec<i32>) {
        if let Some(id) = id {
            rows.push(id as i32);
        }
        if self.args.maxn > 0 && token != EOS {
            scratch.clear();
            scratch.push(b'<');
            scratch.extend_from_slice(token);
            scratch.push(b'>');
            self.push_char_ngrams(scratch, rows);
        }
    }

    /// Appends the features of a line, given its tokens with the final `</s>`: fastText's
    /// `getLine` (labels are dropped, unknown label-prefixed tokens ignored) followed by its
    /// word n-grams. `hashes` and `scratch` are working space.
    pub fn line_features<'t>(
        &self,
        tokens: impl IntoIterator<Item = &'t [u8]>,
        rows: &mut Vec<i32>,
        hashes: &mut Vec<i32>,
        scratch: &mut Vec<u8>,
    ) {
        // Looking a token up reads its table slot, then its entry's start in `starts`, then the
        // entry's bytes in `arena`: three dependent cache misses for a word outside the caches.
        // Each step is first prefetched for every token of the line (the start and the bytes of
        // the entry that the home slot names, nearly always the match), so that the misses of
        // all the tokens overlap instead of following one another.
        let hashed: Vec<(&[u8], u32)> = tokens
            .into_iter()
            .map(|token| {
                let h = hash(token);
                prefetch(&self.table[self.home_slot(h)]);
                (token, h)
            })
            .collect();
        let candidate = |h: u32| {
            let cell = self.table[self.home_slot(h)];
            (cell != 0 && (cell >> 32) as u32 == h).then(|| (cell as u32 - 1) as usize)
        };
        for &(_, h) in &hashed {
            if let Some(id) = candidate(h) {
                prefetch(&self.starts[id]);
            }
        }
        for &(_, h) in &hashed {
            if let Some(byte) = candidate(h).and_then(|id| self.arena.get(self.starts[id])) {
                prefetch(byte);
            }
        }
        hashes.clear();
        for (token, h) in hashed {
            match self.id(token, h) {
                Some(id) if id >= self.nwords => {} // a label
                None if token.starts_with(LABEL_PREFIX) => {}
                id => {
                    self.push_word(token, id, scratch, rows);
                    hashes.push(h as i32);
                }
            }
        }
        self.push_word_ngrams(hashes, rows);
    }

    /// fastText's `addWordNgrams`.
    pub(crate) fn push_word_ngrams(&self, hashes: &[i32], rows: &mut Vec<i32>) {
        if self.args.word_ngrams <= 1 {
            return;
        }
        let n = self.args.word_ngrams as usize;
        let bucket = self.args.bucket as u64;
        for i in 0..hashes.len() {
            let mut h = hashes[i] as i64 as u64;
            for &next in &hashes[i + 1..hashes.len().min(i.saturating_add(n))] {
                h = h.wrapping_mul(WORD_NGRAM_MULTIPLIER).wrapping_add(next as i64 as u64);
                self.push_bucket((h % bucket) as u32, rows);
            }
        }
    }

    /// The rows fastText averages for `get_word_vector(word)`: a known entry's own row (labels
    /// included, as fastText does) and its n-grams, or an unknown word's n-grams.
    pub fn word_rows(&self, word: &[u8], rows: &mut Vec<i32>) {
        let mut scratch = Vec::new();
        let id = self.id(word, hash(word));
        self.push_word(word, id, &mut scratch, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(words: &[&str], labels: &[&str], args: FeatureArgs, prune: Option<Vec<(i32, i32)>>) -> Dictionary {
        let mut arena = Vec::new();
        let mut starts = vec![0];
        for w in words.iter().chain(labels) {
            arena.extend_from_slice(w.as_bytes());
            starts.push(arena.len());
        }
        let counts = vec![1; words.len() + labels.len()];
        Dictionary::new(arena, starts, counts, words.len(), 0, prune, args).unwrap()
    }

    const UNIGRAM: FeatureArgs = FeatureArgs { word_ngrams: 1, bucket: 0, minn: 0, maxn: 0 };

    #[test]
    fn hash_matches_fasttext_test_vectors() {
        for (s, h) in [
            ("</s>", 0xd79c9359u32),
            ("the", 0xb40eb21c),
            ("é", 0x3cfa68c1),
            ("naïve", 0xcd16ee2b),
            ("日本", 0xf8378251),
            ("Ωmega", 0xbd7a13de),
        ] {
            assert_eq!(hash(s.as_bytes()), h, "{s}");
        }
    }

    #[test]
    fn lookup_finds_every_entry_and_nothing_else() {
        let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let d = dict(&refs, &["__label__a"], UNIGRAM, None);
        for (i, w) in refs.iter().enumerate() {
            assert_eq!(d.id(w.as_bytes(), hash(w.as_bytes())), Some(i));
        }
        assert_eq!(d.id(b"__label__a", hash(b"__label__a")), Some(1000));
        assert_eq!(d.id(b"nope", hash(b"nope")), None);
    }

    #[test]
    fn duplicate_entries_resolve_to_the_last() {
        let d = dict(&["a", "b", "a"], &["__label__x"], UNIGRAM, None);
        assert_eq!(d.id(b"a", hash(b"a")), Some(2));
    }

    #[test]
    fn labels_and_unknown_label_tokens_add_nothing() {
        let d = dict(&["a", "b", "</s>"], &["__label__x"], FeatureArgs { word_ngrams: 2, bucket: 10, ..UNIGRAM }, None);
        let tokens: [&[u8]; 5] = [b"a", b"__label__x", b"__label__unknown", b"b", EOS];
        let (mut rows, mut hashes, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        d.line_features(tokens, &mut rows, &mut hashes, &mut scratch);
        // 3 word rows, then bigrams (a, b) and (b, </s>) as if the labels were not there.
        let ha = hash(b"a") as i32 as i64 as u64;
        let hb = hash(b"b") as i32 as i64 as u64;
        let he = hash(EOS) as i32 as i64 as u64;
        let ab = (ha.wrapping_mul(WORD_NGRAM_MULTIPLIER).wrapping_add(hb) % 10) as i32;
        let be = (hb.wrapping_mul(WORD_NGRAM_MULTIPLIER).wrapping_add(he) % 10) as i32;
        assert_eq!(rows, vec![0, 1, 2, 3 + ab, 3 + be]);
    }

    #[test]
    fn unknown_words_join_ngrams_without_a_row() {
        let d = dict(&["a"], &["__label__x"], FeatureArgs { word_ngrams: 3, bucket: 1000, ..UNIGRAM }, None);
        let tokens: [&[u8]; 3] = [b"zz", b"a", EOS];
        let (mut rows, mut hashes, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        d.line_features(tokens, &mut rows, &mut hashes, &mut scratch);
        // one word row, then (zz,a), (zz,a,</s>), (a,</s>)
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], 0);
    }

    #[test]
    fn char_ngrams_count_code_points_and_skip_lone_brackets() {
        let args = FeatureArgs { word_ngrams: 1, bucket: 1 << 30, minn: 1, maxn: 2 };
        let d = dict(&[], &["__label__x"], args, None);
        let mut rows = Vec::new();
        d.push_char_ngrams("<é>".as_bytes(), &mut rows);
        let expected: Vec<i32> = ["<é", "é", "é>"].iter().map(|g| (hash(g.as_bytes()) % (1 << 30)) as i32).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn pruning_maps_buckets_and_drops_the_rest() {
        let args = FeatureArgs { word_ngrams: 2, bucket: 7, minn: 0, maxn: 0 };
        let all: Vec<i32> = (0..7).collect();
        let d = dict(&["a"], &["__label__x"], args, Some(all.iter().map(|&b| (b, 6 - b)).collect()));
        let mut rows = Vec::new();
        for b in 0..7 {
            d.push_bucket(b, &mut rows);
        }
        assert_eq!(rows, vec![7, 6, 5, 4, 3, 2, 1]);
        let empty = dict(&["a"], &["__label__x"], args, Some(vec![]));
        let mut rows = Vec::new();
        empty.push_bucket(3, &mut rows);
        assert!(rows.is_empty());
    }

    #[test]
    fn ngrams_without_buckets_are_rejected() {
        let mut arena = b"a".to_vec();
        arena.extend_from_slice(b"__label__x");
        let err = Dictionary::new(
            arena,
            vec![0, 1, 11],
            vec![1, 1],
            1,
            0,
            None,
            FeatureArgs { word_ngrams: 2, bucket: 0, minn: 0, maxn: 0 },
        );
        assert!(err.is_err());
    }
}
