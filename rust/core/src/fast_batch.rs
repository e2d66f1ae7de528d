//! `fast-v1` for many tokens at once: the keys of a document's tokens and the buckets of its
//! unigrams and bigrams, eight 64-bit lanes at a time with AVX-512 or four with AVX2, whichever
//! the processor has. The results are those of [`crate::hash`]'s one-at-a-time functions, bit
//! for bit; the one-at-a-time path is also the fallback.
//!
//! AVX2 has no 64-bit multiply, so a multiply by a constant is three 32-bit multiplies; even so
//! four lanes take fewer instructions than four scalar hashes. Counting `raw_pool`'s n-grams
//! (ngrams=2) got 1.14x faster on 1 thread and 1.10x on 2, 1.36x with the whitespace tokenizer
//! (`benches/bench_fast_v1_ab.py`); the same batching without SIMD, and a second 8-byte round in
//! the lanes for tokens of 9 to 16 bytes, gained nothing measurable. AVX-512 (DQ's native
//! 64-bit multiply, eight lanes), together with the AVX-512 splitter of [`crate::text`], made it
//! 1.35x faster again on 1 thread, 1.28x on 2 and 1.27x with whitespace, on a Zen 4 processor
//! (the tokens' words are read with scalar loads: a gather, microcoded there, was slower).

use std::ops::Range;

use crate::hash;
use crate::simd::Simd;

/// `fast-v1` keys of the tokens `text[spans[i]]`, ASCII-lowercased if `lowercase`, written to
/// `keys[i]` for tokens of one to eight bytes (ASCII ones only when lowercasing) that start at
/// least eight bytes before the end of `text`. The indices of the other tokens go to `others`
/// in increasing order; their keys are placeholders for the caller to fill in.
pub fn short_token_keys(
    text: &[u8],
    spans: &[Range<usize>],
    lowercase: bool,
    keys: &mut Vec<u64>,
    others: &mut Vec<usize>,
) {
    short_token_keys_with(Simd::detected(), text, spans, lowercase, keys, others);
}

/// [`short_token_keys`] on the SIMD path of `simd` (which the processor must have).
fn short_token_keys_with(
    simd: Simd,
    text: &[u8],
    spans: &[Range<usize>],
    lowercase: bool,
    keys: &mut Vec<u64>,
    others: &mut Vec<usize>,
) {
    // Every slot of `keys` is written, by the lanes or by the caller for `others`, so the old
    // values are left in place instead of zeroed first (the zeroing showed in profiles); the
    // SIMD paths write `others` from its start and truncate it.
    keys.resize(spans.len(), 0);
    // SAFETY (both arms): the caller checked that the processor has the instructions of `simd`.
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe {
            if lowercase {
                avx512::short_token_keys::<true>(text, spans, keys, others);
            } else {
                avx512::short_token_keys::<false>(text, spans, keys, others);
            }
        },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe {
            if lowercase {
                avx2::short_token_keys::<true>(text, spans, keys, others);
            } else {
                avx2::short_token_keys::<false>(text, spans, keys, others);
            }
        },
        _ => {
            others.clear();
            others.extend(0..spans.len());
        }
    }
}

/// The buckets of the unigram at each position of `keys` and of the bigram starting there, in
/// the order of [`crate::ngram`] (unigram 0, bigram 0-1, unigram 1, ...), into `out`.
pub fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut Vec<u32>) {
    unigram_bigram_buckets_with(Simd::detected(), keys, buckets, out);
}

/// [`unigram_bigram_buckets`] on the SIMD path of `simd` (which the processor must have).
fn unigram_bigram_buckets_with(simd: Simd, keys: &[u64], buckets: u32, out: &mut Vec<u32>) {
    let Some(last) = keys.len().checked_sub(1) else {
        out.clear();
        return;
    };
    // Every slot is written below: old values are overwritten, not zeroed first.
    out.resize(2 * last + 1, 0);
    // SAFETY (both arms): the caller checked that the processor has the instructions of `simd`.
    let done = match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512::unigram_bigram_buckets(keys, buckets, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::unigram_bigram_buckets(keys, buckets, out) },
        _ => 0,
    };
    for i in done..keys.len() {
        out[2 * i] = hash::fast_bucket(keys[i], buckets);
        if i < last {
            out[2 * i + 1] = hash::fast_bucket(hash::fast_combine(keys[i], keys[i + 1]), buckets);
        }
    }
}

/// The SIMD paths read a `Range<usize>` as two u64, its start then its end.
#[cfg(target_arch = "x86_64")]
const _SPAN_LAYOUT: () = assert!(
    std::mem::size_of::<Range<usize>>() == 16
        && std::mem::offset_of!(Range<usize>, start) == 0
        && std::mem::offset_of!(Range<usize>, end) == 8
);

/// Four or eight 64-bit lanes: the hashing that the AVX2 and AVX-512 paths share, written once
/// over both widths ([`lanes::Lanes`]; each width's module implements the trait with its
/// intrinsics). Against one copy of the algorithm per width it measured 0.98x, within the
/// run-to-run spread of code layout.
#[cfg(target_arch = "x86_64")]
mod lanes {
    use crate::hash::{FMIX_1, FMIX_2, K0, K1};

    /// The lane operations of one SIMD width. Each needs that width's instructions (AVX2, or
    /// AVX-512 F and DQ), so each is unsafe and called only from functions compiled for them.
    pub(super) trait Lanes: Copy {
        /// Lanes per vector.
        const WIDTH: usize;
        /// `x` in every lane.
        unsafe fn splat(x: u64) -> Self;
        /// The first [`Self::WIDTH`] values of `from`.
        unsafe fn load(from: &[u64]) -> Self;
        /// The lanes as twice as many u32 (low half first) into the first `2 * WIDTH` of `to`.
        unsafe fn store_halves(self, to: &mut [u32]);
        unsafe fn xor(self, other: Self) -> Self;
        unsafe fn or(self, other: Self) -> Self;
        unsafe fn add(self, other: Self) -> Self;
        unsafe fn shift_right<const N: u32>(self) -> Self;
        unsafe fn shift_left<const N: u32>(self) -> Self;
        /// The 64-bit products of the lanes' low 32 bits.
        unsafe fn mul_low_halves(self, other: Self) -> Self;
        /// The low 64 bits of each lane times `c`.
        unsafe fn mul_const(self, c: u64) -> Self;
        unsafe fn rotate_left_31(self) -> Self;
    }

    /// [`crate::hash`]'s `fmix64` in each lane.
    #[inline(always)]
    pub(super) unsafe fn fmix64<V: Lanes>(h: V) -> V {
        // SAFETY: the caller runs on a processor with `V`'s instructions.
        unsafe {
            let xor_shift_33 = |h: V| h.xor(h.shift_right::<33>());
            xor_shift_33(xor_shift_33(xor_shift_33(h).mul_const(FMIX_1)).mul_const(FMIX_2))
        }
    }

    /// The key of each lane's token of one to eight bytes, given its length and its bytes
    /// (zero-padded, lowercased if asked): the one round of `fast_hash_words`, then `fmix64`.
    #[inline(always)]
    pub(super) unsafe fn short_key<V: Lanes>(lens: V, word: V) -> V {
        // SAFETY: as for `fmix64`.
        unsafe { fmix64(lens.mul_const(K0).xor(word).mul_const(K1).rotate_left_31()) }
    }

    /// `floor(key * buckets / 2^64)` in each lane, from two 32x32-bit products: the sum of the
    /// high half's product and the carry of the low half's fits in 64 bits.
    #[inline(always)]
    unsafe fn bucket<V: Lanes>(key: V, buckets: V) -> V {
        // SAFETY: as for `fmix64`.
        unsafe {
            let high = key.shift_right::<32>().mul_low_halves(buckets);
            let carry = key.mul_low_halves(buckets).shift_right::<32>();
            high.add(carry).shift_right::<32>()
        }
    }

    /// See [`super::unigram_bigram_buckets`]; `out` holds `2 * keys.len() - 1` slots. Returns
    /// the positions done (a multiple of the width; the caller does the rest).
    #[inline(always)]
    pub(super) unsafe fn unigram_bigram_buckets<V: Lanes>(keys: &[u64], buckets: u32, out: &mut [u32]) -> usize {
        let width = V::WIDTH;
        let mut done = 0;
        // SAFETY: as for `fmix64`; loads and stores stay within the slices they are given.
        unsafe {
            let buckets = V::splat(u64::from(buckets));
            // A position needs the key after it too.
            while done + width < keys.len() {
                let key = V::load(&keys[done..done + width]);
                let next = V::load(&keys[done + 1..done + 1 + width]);
                let bigram = fmix64(key.mul_const(K0).xor(next));
                // Lane i: the unigram's bucket in its low half, the bigram's in its high one,
                // which in memory is out[2i], out[2i + 1].
                let pairs = bucket(key, buckets).or(bucket(bigram, buckets).shift_left::<32>());
                pairs.store_halves(&mut out[2 * done..2 * (done + width)]);
                done += width;
            }
        }
        done
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::lanes::{self, Lanes};

    impl Lanes for __m512i {
        const WIDTH: usize = 8;
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn splat(x: u64) -> Self {
            _mm512_set1_epi64(x as i64)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(from: &[u64]) -> Self {
            // SAFETY: the load reads eight u64 of `from`.
            unsafe { _mm512_loadu_si512(from[..8].as_ptr().cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store_halves(self, to: &mut [u32]) {
            // SAFETY: the store writes sixteen u32 of `to`.
            unsafe { _mm512_storeu_si512(to[..16].as_mut_ptr().cast(), self) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn xor(self, other: Self) -> Self {
            _mm512_xor_si512(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn or(self, other: Self) -> Self {
            _mm512_or_si512(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn add(self, other: Self) -> Self {
            _mm512_add_epi64(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn shift_right<const N: u32>(self) -> Self {
            _mm512_srli_epi64::<N>(self)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn shift_left<const N: u32>(self) -> Self {
            _mm512_slli_epi64::<N>(self)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn mul_low_halves(self, other: Self) -> Self {
            _mm512_mul_epu32(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512dq")]
        unsafe fn mul_const(self, c: u64) -> Self {
            _mm512_mullo_epi64(self, _mm512_set1_epi64(c as i64))
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn rotate_left_31(self) -> Self {
            _mm512_rol_epi64::<31>(self)
        }
    }

    /// The low `bytes` bytes of each lane of `words` (`bytes` <= 8), the others zero.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn keep_low_bytes(words: __m512i, bytes: __m512i) -> __m512i {
        let shift = _mm512_sub_epi64(_mm512_set1_epi64(64), _mm512_slli_epi64(bytes, 3));
        _mm512_and_si512(words, _mm512_srlv_epi64(_mm512_set1_epi64(-1), shift))
    }

    /// ASCII capitals of every byte lowercased.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn ascii_lowercase(w: __m512i) -> __m512i {
        let upper = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(w, _mm512_set1_epi8(b'A' as i8)), _mm512_set1_epi8(26));
        _mm512_mask_add_epi8(w, upper, w, _mm512_set1_epi8(0x20))
    }

    /// See [`super::short_token_keys`]: the AVX2 algorithm, eight lanes at a time, the refused
    /// lanes' indices compressed into `others`. (A second round in the lanes, for tokens of nine
    /// to sixteen bytes, gained nothing measurable; nor did a second pass giving only those
    /// tokens, once refused, two rounds eight at a time: 1.01x.)
    #[target_feature(enable = "avx512f,avx512bw,avx512dq")]
    pub(super) fn short_token_keys<const LOWERCASE: bool>(
        text: &[u8],
        spans: &[Range<usize>],
        keys: &mut [u64],
        others: &mut Vec<usize>,
    ) {
        // Tokens starting in the last seven bytes cannot be read with one load.
        let loadable = spans.partition_point(|span| span.start + 8 <= text.len());
        let groups = loadable / 8;
        // Room for a full store of eight indices after the last refused one.
        others.resize(groups * 8 + 8, 0);
        let mut refused = 0;
        let eight = _mm512_set1_epi64(8);
        let high_bits = _mm512_set1_epi8(0x80u8 as i8);
        // Lane i of a pair of span vectors: the even (start) or odd (end) u64 of the 16.
        let even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        let odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        let lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        for group in 0..groups {
            let spans = &spans[8 * group..8 * group + 8];
            // SAFETY: a `Range<usize>` is two u64, start then end (checked by `_SPAN_LAYOUT`), so
            // eight spans are 16 u64, read with two unaligned loads.
            let lens = unsafe {
                let first = _mm512_loadu_si512(spans.as_ptr().cast());
                let second = _mm512_loadu_si512(spans.as_ptr().add(4).cast());
                let starts = _mm512_permutex2var_epi64(first, even, second);
                let ends = _mm512_permutex2var_epi64(first, odd, second);
                _mm512_sub_epi64(ends, starts)
            };
            // Eight scalar loads: a gather is slower on processors that microcode it (Zen 4).
            let word = |i: usize| {
                i64::from_le_bytes(*text[spans[i].start..].first_chunk::<8>().expect("start + 8 <= text.len()"))
            };
            let words = _mm512_setr_epi64(word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7));
            let w = keep_low_bytes(words, _mm512_min_epu64(lens, eight));
            let mut refuse =
                _mm512_cmpgt_epu64_mask(lens, eight) | _mm512_cmpeq_epi64_mask(lens, _mm512_setzero_si512());
            let w = if LOWERCASE {
                refuse |= _mm512_test_epi64_mask(w, high_bits);
                ascii_lowercase(w)
            } else {
                w
            };
            // SAFETY: the processor has AVX-512 F and DQ; `keys` holds `spans.len()` slots, eight
            // of them from 8 * group.
            unsafe {
                _mm512_storeu_si512(keys[8 * group..8 * group + 8].as_mut_ptr().cast(), lanes::short_key(lens, w))
            };
            if refuse != 0 {
                let indices = _mm512_add_epi64(lane, _mm512_set1_epi64((8 * group) as i64));
                // SAFETY: `others` has room for eight u64 (usize) from `refused` on: `refused`
                // is at most 8 * group, and `others` holds 8 * groups + 8.
                unsafe {
                    let into = others[refused..refused + 8].as_mut_ptr().cast();
                    _mm512_storeu_si512(into, _mm512_maskz_compress_epi64(refuse, indices));
                }
                refused += refuse.count_ones() as usize;
            }
        }
        others.truncate(refused);
        others.extend(8 * groups..spans.len());
    }

    /// See [`super::unigram_bigram_buckets`].
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut [u32]) -> usize {
        // SAFETY: the processor has AVX-512 F and DQ.
        unsafe { lanes::unigram_bigram_buckets::<__m512i>(keys, buckets, out) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::lanes::{self, Lanes};

    impl Lanes for __m256i {
        const WIDTH: usize = 4;
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn splat(x: u64) -> Self {
            _mm256_set1_epi64x(x as i64)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn load(from: &[u64]) -> Self {
            // SAFETY: the load reads four u64 of `from`.
            unsafe { _mm256_loadu_si256(from[..4].as_ptr().cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn store_halves(self, to: &mut [u32]) {
            // SAFETY: the store writes eight u32 of `to`.
            unsafe { _mm256_storeu_si256(to[..8].as_mut_ptr().cast(), self) }
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn xor(self, other: Self) -> Self {
            _mm256_xor_si256(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn or(self, other: Self) -> Self {
            _mm256_or_si256(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn add(self, other: Self) -> Self {
            _mm256_add_epi64(self, other)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn shift_right<const N: u32>(self) -> Self {
            // (The immediate forms take an i32 constant; this count folds to one.)
            _mm256_srl_epi64(self, _mm_set_epi64x(0, i64::from(N)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn shift_left<const N: u32>(self) -> Self {
            _mm256_sll_epi64(self, _mm_set_epi64x(0, i64::from(N)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn mul_low_halves(self, other: Self) -> Self {
            _mm256_mul_epu32(self, other)
        }
        /// AVX2 has no 64-bit multiply: lo*lo + ((hi*lo + lo*hi) << 32).
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn mul_const(self, c: u64) -> Self {
            let c_lo = _mm256_set1_epi64x(c as i64);
            let c_hi = _mm256_set1_epi64x((c >> 32) as i64);
            let cross =
                _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(self, 32), c_lo), _mm256_mul_epu32(self, c_hi));
            _mm256_add_epi64(_mm256_mul_epu32(self, c_lo), _mm256_slli_epi64(cross, 32))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn rotate_left_31(self) -> Self {
            _mm256_or_si256(_mm256_slli_epi64(self, 31), _mm256_srli_epi64(self, 33))
        }
    }

    /// ASCII capitals of every byte lowercased (bytes >= 0x80 are negative, so left alone).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn ascii_lowercase(w: __m256i) -> __m256i {
        let at_least_a = _mm256_cmpgt_epi8(w, _mm256_set1_epi8((b'A' - 1) as i8));
        let at_most_z = _mm256_cmpgt_epi8(_mm256_set1_epi8((b'Z' + 1) as i8), w);
        _mm256_or_si256(w, _mm256_and_si256(_mm256_and_si256(at_least_a, at_most_z), _mm256_set1_epi8(0x20)))
    }

    /// See [`super::short_token_keys`]; `keys` holds `spans.len()` slots, `others` is empty.
    #[target_feature(enable = "avx2")]
    pub(super) fn short_token_keys<const LOWERCASE: bool>(
        text: &[u8],
        spans: &[Range<usize>],
        keys: &mut [u64],
        others: &mut Vec<usize>,
    ) {
        // Tokens starting in the last seven bytes cannot be read with one load; spans are in order.
        let loadable = spans.partition_point(|span| span.start + 8 <= text.len());
        let groups = loadable / 4;
        others.resize(groups * 4, 0);
        let mut refused = 0;
        let eight = _mm256_set1_epi64x(8);
        let all_ones = _mm256_set1_epi64x(-1);
        let high_bits = _mm256_set1_epi8(0x80u8 as i8);
        for (group, (spans, keys)) in spans.chunks_exact(4).zip(keys.chunks_exact_mut(4)).take(groups).enumerate() {
            let word = |i: usize| {
                i64::from_le_bytes(*text[spans[i].start..].first_chunk::<8>().expect("start + 8 <= text.len()"))
            };
            let len = |i: usize| spans[i].len() as i64;
            let words = _mm256_setr_epi64x(word(0), word(1), word(2), word(3));
            let lens = _mm256_setr_epi64x(len(0), len(1), len(2), len(3));
            // The token's bytes of the 8 loaded: all ones shifted right by 64 - 8 * min(len, 8).
            let kept_bits =
                _mm256_sub_epi64(_mm256_set1_epi64x(64), _mm256_slli_epi64(_mm256_min_epu32(lens, eight), 3));
            let w = _mm256_and_si256(words, _mm256_srlv_epi64(all_ones, kept_bits));
            let mut refuse =
                _mm256_or_si256(_mm256_cmpgt_epi64(lens, eight), _mm256_cmpeq_epi64(lens, _mm256_setzero_si256()));
            let w = if LOWERCASE {
                let ascii = _mm256_cmpeq_epi64(_mm256_and_si256(w, high_bits), _mm256_setzero_si256());
                refuse = _mm256_or_si256(refuse, _mm256_andnot_si256(ascii, all_ones));
                ascii_lowercase(w)
            } else {
                w
            };
            // SAFETY: the processor has AVX2; `keys` is a chunk of four u64 (`storeu` has no
            // alignment requirement).
            unsafe { _mm256_storeu_si256(keys.as_mut_ptr().cast(), lanes::short_key(lens, w)) };
            let refused_lanes = _mm256_movemask_pd(_mm256_castsi256_pd(refuse)) as usize;
            for lane in 0..4 {
                others[refused] = 4 * group + lane;
                refused += (refused_lanes >> lane) & 1;
            }
        }
        others.truncate(refused);
        others.extend(4 * groups..spans.len());
    }

    /// See [`super::unigram_bigram_buckets`].
    #[target_feature(enable = "avx2")]
    pub(super) fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut [u32]) -> usize {
        // SAFETY: the processor has AVX2.
        unsafe { lanes::unigram_bigram_buckets::<__m256i>(keys, buckets, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn short_token_keys_equal_the_one_at_a_time_hash() {
        // Bytes of every kind (capitals, the letters' neighbours, bytes >= 0x80) in spans of
        // length 0 to 20, including spans that end at the end of the text.
        let alphabet = b"aZ@[`{AzM09_ .\x80\xc3\xa9\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let mut reused: std::collections::HashMap<(Simd, bool), (Vec<u64>, Vec<usize>)> = Default::default();
        for round in 0..600 {
            // Every other text is ASCII only, so that lowercased tokens fill whole groups of lanes.
            let letters = if round % 2 == 0 { alphabet.len() } else { 14 };
            let text: Vec<u8> =
                (0..next(&mut state) % 240).map(|_| alphabet[next(&mut state) as usize % letters]).collect();
            let mut spans = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let end = (at + (next(&mut state) % 21) as usize).min(text.len());
                spans.push(at..end);
                at = end + (next(&mut state) % 2) as usize;
            }
            for (simd, lowercase) in Simd::available().into_iter().flat_map(|simd| [(simd, false), (simd, true)]) {
                // Buffers reused from earlier texts hold stale values and lengths.
                let (keys, others) = reused.entry((simd, lowercase)).or_default();
                short_token_keys_with(simd, &text, &spans, lowercase, keys, others);
                assert_eq!(keys.len(), spans.len());
                assert!(others.windows(2).all(|w| w[0] < w[1]));
                // The lanes take every token they can: only the last incomplete group of
                // loadable tokens goes to `others` without needing to.
                let lanes = match simd {
                    Simd::Avx512 => 8,
                    Simd::Avx2 => 4,
                    Simd::Baseline => spans.len() + 1,
                };
                let lane_token = |span: &Range<usize>| {
                    let token = &text[span.clone()];
                    (1..=8).contains(&token.len()) && span.start + 8 <= text.len() && (!lowercase || token.is_ascii())
                };
                assert!(others.iter().filter(|&&i| lane_token(&spans[i])).count() < lanes, "{simd:?}");
                for (i, span) in spans.iter().enumerate() {
                    let token = &text[span.clone()];
                    let expected = if lowercase {
                        token.is_ascii().then(|| hash::fast_hash_bytes(&token.to_ascii_lowercase()))
                    } else {
                        Some(hash::fast_hash_bytes(token))
                    };
                    if others.binary_search(&i).is_err() {
                        assert_eq!(Some(keys[i]), expected, "{token:?} lowercase={lowercase} {simd:?}");
                        assert!((1..=8).contains(&token.len()) && span.start + 8 <= text.len());
                    }
                }
            }
        }
    }

    #[test]
    fn unigram_bigram_buckets_equal_the_one_at_a_time_ones() {
        let mut state = 0x2545_f491_4f6c_dd1d;
        for len in 0..40 {
            let keys: Vec<u64> = (0..len)
                .map(|i| match i {
                    1 => 0,
                    2 => u64::MAX,
                    _ => next(&mut state),
                })
                .collect();
            for buckets in [1, 7, 10_000, 1 << 31, u32::MAX] {
                let mut expected = Vec::new();
                for (i, &key) in keys.iter().enumerate() {
                    expected.push(hash::fast_bucket(key, buckets));
                    if let Some(&next) = keys.get(i + 1) {
                        expected.push(hash::fast_bucket(hash::fast_combine(key, next), buckets));
                    }
                }
                for simd in Simd::available() {
                    let mut out = vec![99; 2 * len + 7]; // stale values, and more of them
                    unigram_bigram_buckets_with(simd, &keys, buckets, &mut out);
                    assert_eq!(out, expected, "{len} keys, {buckets} buckets, {simd:?}");
                }
            }
        }
    }
}
