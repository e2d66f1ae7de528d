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
    keys.clear();
    keys.resize(spans.len(), 0);
    others.clear();
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
        _ => others.extend(0..spans.len()),
    }
}

/// The buckets of the unigram at each position of `keys` and of the bigram starting there, in
/// the order of [`crate::ngram`] (unigram 0, bigram 0-1, unigram 1, ...), into `out`.
pub fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut Vec<u32>) {
    unigram_bigram_buckets_with(Simd::detected(), keys, buckets, out);
}

/// [`unigram_bigram_buckets`] on the SIMD path of `simd` (which the processor must have).
fn unigram_bigram_buckets_with(simd: Simd, keys: &[u64], buckets: u32, out: &mut Vec<u32>) {
    out.clear();
    let Some(last) = keys.len().checked_sub(1) else { return };
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use crate::hash::{FMIX_1, FMIX_2, K0, K1};

    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn mul_const(a: __m512i, c: u64) -> __m512i {
        _mm512_mullo_epi64(a, _mm512_set1_epi64(c as i64))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn xor_shift_33(h: __m512i) -> __m512i {
        _mm512_xor_si512(h, _mm512_srli_epi64(h, 33))
    }

    /// [`crate::hash`]'s `fmix64` in each lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn fmix64(h: __m512i) -> __m512i {
        xor_shift_33(mul_const(xor_shift_33(mul_const(xor_shift_33(h), FMIX_1)), FMIX_2))
    }

    /// `floor(key * buckets / 2^64)` in each lane (see the AVX2 version).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn bucket(key: __m512i, buckets: __m512i) -> __m512i {
        let high = _mm512_mul_epu32(_mm512_srli_epi64(key, 32), buckets);
        let carry = _mm512_srli_epi64(_mm512_mul_epu32(key, buckets), 32);
        _mm512_srli_epi64(_mm512_add_epi64(high, carry), 32)
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
            // The one round of fast_hash_words, then fmix64.
            let h = _mm512_rol_epi64::<31>(mul_const(_mm512_xor_si512(mul_const(lens, K0), w), K1));
            // SAFETY: `keys` holds `spans.len()` slots, eight of them from 8 * group.
            unsafe { _mm512_storeu_si512(keys[8 * group..8 * group + 8].as_mut_ptr().cast(), fmix64(h)) };
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

    /// See [`super::unigram_bigram_buckets`]: the AVX2 algorithm, eight positions at a time.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut [u32]) -> usize {
        let buckets = _mm512_set1_epi64(i64::from(buckets));
        let mut done = 0;
        while done + 9 <= keys.len() {
            // SAFETY: each load reads the eight u64 of a slice of eight.
            let (key, next) = unsafe {
                (
                    _mm512_loadu_si512(keys[done..done + 8].as_ptr().cast()),
                    _mm512_loadu_si512(keys[done + 1..done + 9].as_ptr().cast()),
                )
            };
            let bigram = fmix64(_mm512_xor_si512(mul_const(key, K0), next));
            let pairs = _mm512_or_si512(bucket(key, buckets), _mm512_slli_epi64(bucket(bigram, buckets), 32));
            // SAFETY: the store writes the sixteen u32 of a slice of sixteen.
            unsafe { _mm512_storeu_si512(out[2 * done..2 * done + 16].as_mut_ptr().cast(), pairs) };
            done += 8;
        }
        done
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use crate::hash::{FMIX_1, FMIX_2, K0, K1};

    /// The low 64 bits of each lane times `c`: lo*lo + ((hi*lo + lo*hi) << 32).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_const(a: __m256i, c: u64) -> __m256i {
        let c_lo = _mm256_set1_epi64x(c as i64);
        let c_hi = _mm256_set1_epi64x((c >> 32) as i64);
        let cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo), _mm256_mul_epu32(a, c_hi));
        _mm256_add_epi64(_mm256_mul_epu32(a, c_lo), _mm256_slli_epi64(cross, 32))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn xor_shift_33(h: __m256i) -> __m256i {
        _mm256_xor_si256(h, _mm256_srli_epi64(h, 33))
    }

    /// [`crate::hash`]'s `fmix64` in each lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fmix64(h: __m256i) -> __m256i {
        xor_shift_33(mul_const(xor_shift_33(mul_const(xor_shift_33(h), FMIX_1)), FMIX_2))
    }

    /// `floor(key * buckets / 2^64)` in each lane, from two 32x32-bit products: the sum of the
    /// high half's product and the carry of the low half's fits in 64 bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bucket(key: __m256i, buckets: __m256i) -> __m256i {
        let high = _mm256_mul_epu32(_mm256_srli_epi64(key, 32), buckets);
        let carry = _mm256_srli_epi64(_mm256_mul_epu32(key, buckets), 32);
        _mm256_srli_epi64(_mm256_add_epi64(high, carry), 32)
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
            // The one round of fast_hash_words, rotate included, then fmix64.
            let h = mul_const(_mm256_xor_si256(mul_const(lens, K0), w), K1);
            let h = _mm256_or_si256(_mm256_slli_epi64(h, 31), _mm256_srli_epi64(h, 33));
            // SAFETY: `keys` is a chunk of four u64 (`storeu` has no alignment requirement).
            unsafe { _mm256_storeu_si256(keys.as_mut_ptr().cast(), fmix64(h)) };
            let refused_lanes = _mm256_movemask_pd(_mm256_castsi256_pd(refuse)) as usize;
            for lane in 0..4 {
                others[refused] = 4 * group + lane;
                refused += (refused_lanes >> lane) & 1;
            }
        }
        others.truncate(refused);
        others.extend(4 * groups..spans.len());
    }

    /// See [`super::unigram_bigram_buckets`]; `out` holds `2 * keys.len() - 1` slots. Returns
    /// the positions done (a multiple of four; the caller does the rest).
    #[target_feature(enable = "avx2")]
    pub(super) fn unigram_bigram_buckets(keys: &[u64], buckets: u32, out: &mut [u32]) -> usize {
        let buckets = _mm256_set1_epi64x(i64::from(buckets));
        let mut done = 0;
        // Four positions need the key after them too.
        while done + 5 <= keys.len() {
            // SAFETY: each load reads the four u64 of a slice of four.
            let (key, next) = unsafe {
                (
                    _mm256_loadu_si256(keys[done..done + 4].as_ptr().cast()),
                    _mm256_loadu_si256(keys[done + 1..done + 5].as_ptr().cast()),
                )
            };
            let bigram = fmix64(_mm256_xor_si256(mul_const(key, K0), next));
            // Lane i: the unigram's bucket in its low 32 bits, the bigram's in its high ones,
            // which in memory is out[2i], out[2i + 1].
            let pairs = _mm256_or_si256(bucket(key, buckets), _mm256_slli_epi64(bucket(bigram, buckets), 32));
            // SAFETY: the store writes the eight u32 of a slice of eight.
            unsafe { _mm256_storeu_si256(out[2 * done..2 * done + 8].as_mut_ptr().cast(), pairs) };
            done += 4;
        }
        done
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
                let (mut keys, mut others) = (Vec::new(), Vec::new());
                short_token_keys_with(simd, &text, &spans, lowercase, &mut keys, &mut others);
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
                    let mut out = vec![99];
                    unigram_bigram_buckets_with(simd, &keys, buckets, &mut out);
                    assert_eq!(out, expected, "{len} keys, {buckets} buckets, {simd:?}");
                }
            }
        }
    }
}
