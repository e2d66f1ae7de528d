//! Hash families: how an n-gram becomes a bucket id. Each family is named, and its output is
//! frozen: changing it would silently change every saved estimator.
//!
//! * `dsir-sha256` reproduces the `data-selection` package: the n-gram's tokens joined by one
//!   ASCII space, SHA-256 of the UTF-8 bytes, the digest read as a big-endian 256-bit integer,
//!   modulo the bucket count. A small per-thread cache skips SHA-256 for frequent n-grams
//!   without changing any result ([`Sha256Buckets`]).
//! * `fast-v1` is the default of speed: a 64-bit hash of each token's bytes ([`fast_hash_bytes`]),
//!   n-grams folded left to right with [`fast_combine`], and the key mapped onto the buckets with
//!   a multiply-shift ([`fast_bucket`]), so any bucket count works. Token ids hash with
//!   [`fast_hash_id`] instead of their bytes.

use std::cell::RefCell;
use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::memory::prefetch;

/// A named, frozen hash family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFamily {
    DsirSha256,
    FastV1,
}

impl HashFamily {
    /// Parses the public name of a hash family.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "dsir-sha256" => Ok(HashFamily::DsirSha256),
            "fast-v1" => Ok(HashFamily::FastV1),
            other => {
                Err(Error::invalid(format!("unknown hash family {other:?}; expected \"dsir-sha256\" or \"fast-v1\"")))
            }
        }
    }

    /// The public name, as stored in a feature space.
    pub fn name(self) -> &'static str {
        match self {
            HashFamily::DsirSha256 => "dsir-sha256",
            HashFamily::FastV1 => "fast-v1",
        }
    }
}

/// `int.from_bytes(sha256(bytes).digest(), "big") % buckets`, without a big integer.
pub fn dsir_sha256_bucket(bytes: &[u8], buckets: u32) -> u32 {
    let digest = Sha256::digest(bytes);
    let m = u64::from(buckets);
    // Horner's rule, four bytes at a time: r < m < 2^32, so r * 2^32 + word fits in a u64.
    digest.chunks_exact(4).fold(0u64, |r, word| {
        let word = u64::from(u32::from_be_bytes(word.try_into().expect("4-byte chunk")));
        ((r << 32) | word) % m
    }) as u32
}

/// Slots of a thread's n-gram cache (one 64-byte line each: 4 MiB).
const CACHE_SLOTS: usize = 1 << 16;
/// Longest n-gram, in bytes, that the cache holds; longer ones are always hashed.
const CACHE_MAX_LEN: usize = 51;

/// One cache line: an n-gram's bytes, their `fast-v1` key, and their bucket.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheSlot {
    key: u64,
    bucket: u32,
    len: u8,
    bytes: [u8; CACHE_MAX_LEN],
}

/// An unused slot: its length is longer than any cached n-gram, so no lookup ever matches it
/// (a length of 0 would match the empty string, whose `fast-v1` key is 0).
const EMPTY_SLOT: CacheSlot = CacheSlot { key: 0, bucket: 0, len: u8::MAX, bytes: [0; CACHE_MAX_LEN] };

/// `dsir-sha256` buckets for one bucket count, through a small direct-mapped cache of recent
/// n-grams. The cache fits in the processor's caches (a large hash table does not, and a
/// lookup missing the caches costs more than SHA-256 itself); frequent n-grams stay in it. A hit
/// compares the n-gram's bytes, so every result is the exact SHA-256 bucket.
pub struct Sha256Buckets {
    buckets: u32,
    /// 2^(64k) mod `buckets` for the four 64-bit limbs of the digest (k = 3, 2, 1, 0).
    limb_weights: [u64; 4],
    slots: Box<[CacheSlot]>,
}

impl Sha256Buckets {
    pub fn new(buckets: u32) -> Self {
        let m = u128::from(buckets);
        let two_64 = (1u128 << 64) % m;
        let mut limb_weights = [1u64 % u64::from(buckets); 4];
        for k in (0..3).rev() {
            limb_weights[k] = (u128::from(limb_weights[k + 1]) * two_64 % m) as u64;
        }
        Sha256Buckets { buckets, limb_weights, slots: vec![EMPTY_SLOT; CACHE_SLOTS].into_boxed_slice() }
    }

    /// The bucket of `ngram` under `dsir-sha256`; equal to [`dsir_sha256_bucket`].
    pub fn bucket(&mut self, ngram: &[u8]) -> u32 {
        if ngram.len() > CACHE_MAX_LEN {
            return self.compute(ngram);
        }
        self.lookup(ngram, fast_hash_bytes(ngram))
    }

    /// Calls `emit` with the bucket of every n-gram starting at one of the first `starts` tokens
    /// `joined[bounds[i]]` (joined by one space in `joined`) in the order of [`crate::ngram`]: by
    /// first token, then by order up to `ngrams`. Lookups go in batches whose cache slots are
    /// prefetched first, so that the slots' memory latencies overlap instead of adding up.
    pub fn for_each_ngram_bucket(
        &mut self,
        joined: &[u8],
        bounds: &[Range<usize>],
        ngrams: usize,
        starts: usize,
        mut emit: impl FnMut(u32),
    ) {
        const BATCH: usize = 32;
        let mut batch = [(0u64, 0usize, 0usize); BATCH];
        let mut filled = 0;
        let mut flush = |this: &mut Self, batch: &[(u64, usize, usize)]| {
            for &(key, start, end) in batch {
                let ngram = &joined[start..end];
                emit(if ngram.len() > CACHE_MAX_LEN { this.compute(ngram) } else { this.lookup(ngram, key) });
            }
        };
        for first in 0..starts {
            let start = bounds[first].start;
            for last in &bounds[first..(first + ngrams).min(bounds.len())] {
                let key = fast_hash_bytes(&joined[start..last.end]);
                prefetch(&self.slots[key as usize & (CACHE_SLOTS - 1)]);
                batch[filled] = (key, start, last.end);
                filled += 1;
                if filled == BATCH {
                    flush(self, &batch);
                    filled = 0;
                }
            }
        }
        flush(self, &batch[..filled]);
    }

    /// The bucket of a cacheable `ngram` whose `fast-v1` key is `key`.
    #[inline]
    fn lookup(&mut self, ngram: &[u8], key: u64) -> u32 {
        let index = key as usize & (CACHE_SLOTS - 1);
        let slot = &self.slots[index];
        if slot.key == key && usize::from(slot.len) == ngram.len() && slot.bytes[..ngram.len()] == *ngram {
            return slot.bucket;
        }
        let bucket = self.compute(ngram);
        let slot = &mut self.slots[index];
        slot.key = key;
        slot.bucket = bucket;
        slot.len = ngram.len() as u8;
        slot.bytes[..ngram.len()].copy_from_slice(ngram);
        bucket
    }

    /// SHA-256, then the 256-bit big-endian digest modulo the bucket count as a weighted sum of
    /// its limbs (each term < 2^96, so the sum fits in a u128): one division instead of eight.
    fn compute(&self, ngram: &[u8]) -> u32 {
        let limbs = sha256_limbs(ngram);
        let sum: u128 = limbs.iter().zip(self.limb_weights).map(|(&l, w)| u128::from(l) * u128::from(w)).sum();
        (sum % u128::from(self.buckets)) as u32
    }
}

const SHA256_INITIAL_STATE: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256 of `message` as four big-endian 64-bit limbs, most significant first. A message of
/// at most 55 bytes fits one padded block, compressed directly without the streaming API.
fn sha256_limbs(message: &[u8]) -> [u64; 4] {
    let words: [u32; 8] = if message.len() <= 55 {
        let mut block = [0u8; 64];
        block[..message.len()].copy_from_slice(message);
        block[message.len()] = 0x80;
        block[56..].copy_from_slice(&(message.len() as u64 * 8).to_be_bytes());
        let mut state = SHA256_INITIAL_STATE;
        sha2::block_api::compress256(&mut state, &[block]);
        state
    } else {
        let digest = Sha256::digest(message);
        std::array::from_fn(|i| u32::from_be_bytes(digest[4 * i..4 * i + 4].try_into().expect("4 bytes")))
    };
    std::array::from_fn(|k| (u64::from(words[2 * k]) << 32) | u64::from(words[2 * k + 1]))
}

thread_local! {
    static SHA256_BUCKETS: RefCell<Option<Sha256Buckets>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's [`Sha256Buckets`] for `buckets` buckets (built anew if the
/// thread last used another bucket count).
pub fn with_sha256_buckets<R>(buckets: u32, f: impl FnOnce(&mut Sha256Buckets) -> R) -> R {
    SHA256_BUCKETS.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|b| b.buckets != buckets) {
            *cell = Some(Sha256Buckets::new(buckets));
        }
        f(cell.as_mut().expect("set above"))
    })
}

pub(crate) const K0: u64 = 0x9e37_79b9_7f4a_7c15;
pub(crate) const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// [`fmix64`]'s multipliers.
pub(crate) const FMIX_1: u64 = 0xff51_afd7_ed55_8ccd;
pub(crate) const FMIX_2: u64 = 0xc4ce_b9fe_1a85_ec53;

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(FMIX_1);
    h ^= h >> 33;
    h = h.wrapping_mul(FMIX_2);
    h ^ (h >> 33)
}

/// `fast-v1` hash of a token's bytes: the length seeds the state, each little-endian 8-byte word
/// (the last one zero-padded) is folded in with xor, multiply and rotate, then `fmix64`.
#[inline]
pub fn fast_hash_bytes(bytes: &[u8]) -> u64 {
    fast_hash_words(bytes, |w| w)
}

/// [`fast_hash_bytes`] of the ASCII-lowercased token `text[span]`, lowercasing eight bytes at a
/// time; `None` when the token has a byte >= 0x80 (which needs Unicode lowercasing). A token of
/// at most eight bytes is read with one load from `text` where `text` extends far enough.
#[inline(always)]
pub fn fast_hash_ascii_lowercase_in(text: &[u8], span: Range<usize>) -> Option<u64> {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let len = span.len();
    if (1..=8).contains(&len)
        && let Some(word) = text.get(span.start..).and_then(|rest| rest.first_chunk::<8>())
    {
        let w = u64::from_le_bytes(*word) & (u64::MAX >> (64 - 8 * len));
        if w & HIGH_BITS != 0 {
            return None;
        }
        let h = ((len as u64).wrapping_mul(K0) ^ ascii_lowercase_word(w)).wrapping_mul(K1).rotate_left(31);
        return Some(fmix64(h));
    }
    let token = &text[span];
    token.is_ascii().then(|| fast_hash_words(token, ascii_lowercase_word))
}

/// Lowercases the ASCII letters among the eight bytes of `w` (bytes >= 0x80 stay as they are).
#[inline]
fn ascii_lowercase_word(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low = w & LOW7;
    // High bit of each byte set where the byte's low 7 bits are >= 'A', resp. > 'Z'.
    let ge_a = low + ONES * (0x80 - u64::from(b'A'));
    let gt_z = low + ONES * (0x80 - u64::from(b'Z') - 1);
    let is_upper = ge_a & !gt_z & !w & (ONES * 0x80);
    w | (is_upper >> 2)
}

#[inline]
fn fast_hash_words(bytes: &[u8], map_word: impl Fn(u64) -> u64) -> u64 {
    let mut h = (bytes.len() as u64).wrapping_mul(K0);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        h = (h ^ map_word(w)).wrapping_mul(K1).rotate_left(31);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        h = (h ^ map_word(load_le_padded(tail))).wrapping_mul(K1).rotate_left(31);
    }
    fmix64(h)
}

/// The little-endian value of 1 to 7 bytes, zero-padded to eight, without a memcpy call.
#[inline]
fn load_le_padded(tail: &[u8]) -> u64 {
    let n = tail.len();
    if n >= 4 {
        let lo = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
        let hi = u64::from(u32::from_le_bytes(tail[n - 4..].try_into().expect("4 bytes")));
        // The two loads overlap on identical bytes, so OR-ing them is exact.
        lo | (hi << (8 * (n - 4)))
    } else {
        tail.iter().enumerate().fold(0, |v, (i, &b)| v | (u64::from(b) << (8 * i)))
    }
}

/// `fast-v1` hash of a token id.
#[inline]
pub fn fast_hash_id(id: u64) -> u64 {
    fmix64(id.wrapping_add(K0))
}

/// `fast-v1` key of the n-gram `prefix` followed by a token whose hash is `next`.
#[inline]
pub fn fast_combine(prefix: u64, next: u64) -> u64 {
    fmix64(prefix.wrapping_mul(K0) ^ next)
}

/// `fast-v1` bucket of a key: `floor(key * buckets / 2^64)`.
#[inline]
pub fn fast_bucket(key: u64, buckets: u32) -> u32 {
    ((u128::from(key) * u128::from(buckets)) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_data_selection_vectors() {
        assert_eq!(dsir_sha256_bucket(b"alice", 10_000), 6720);
        assert_eq!(dsir_sha256_bucket(b"alice went", 10_000), 114);
        with_sha256_buckets(10_000, |cache| {
            for _ in 0..2 {
                assert_eq!(cache.bucket(b"alice"), 6720);
                assert_eq!(cache.bucket(b"alice went"), 114);
            }
        });
    }

    #[test]
    fn sha256_bucket_is_the_full_digest_modulo_m() {
        // Reference: long division of the 32-byte digest, one byte at a time.
        for (text, m) in [(&b"store"[..], 10_000u32), (b"the store", 7), (b"", 4_294_967_291), (b"x", 1)] {
            let digest = Sha256::digest(text);
            let expected = digest.iter().fold(0u64, |r, &b| (r * 256 + u64::from(b)) % u64::from(m));
            assert_eq!(u64::from(dsir_sha256_bucket(text, m)), expected);
        }
    }

    #[test]
    fn cached_buckets_equal_the_reference_for_any_count_and_length() {
        for m in [1u32, 7, 10_000, 10_001, 1 << 31, u32::MAX] {
            let mut cache = Sha256Buckets::new(m);
            for len in [0usize, 1, 5, 50, 51, 52, 200] {
                for seed in 0..50u8 {
                    let ngram: Vec<u8> = (0..len).map(|i| b'a' + (i as u8).wrapping_mul(seed) % 26).collect();
                    let expected = dsir_sha256_bucket(&ngram, m);
                    assert_eq!(cache.bucket(&ngram), expected);
                    assert_eq!(cache.bucket(&ngram), expected, "second lookup, a cache hit");
                }
            }
        }
        let a = with_sha256_buckets(10_000, |c| c.bucket(b"memo"));
        let b = with_sha256_buckets(97, |c| c.bucket(b"memo"));
        assert_eq!((a, b), (dsir_sha256_bucket(b"memo", 10_000), dsir_sha256_bucket(b"memo", 97)));
    }

    #[test]
    fn lowercasing_hash_equals_hash_of_lowercased_bytes() {
        // Every window of every byte value, including windows that end at the end of the text.
        let all_bytes: Vec<u8> = (0u8..=255).collect();
        for len in 0..=24 {
            for start in 0..=all_bytes.len() - len {
                let span = start..start + len;
                let s = &all_bytes[span.clone()];
                let expected = s.is_ascii().then(|| fast_hash_bytes(&s.to_ascii_lowercase()));
                assert_eq!(fast_hash_ascii_lowercase_in(&all_bytes, span), expected, "{s:?}");
            }
        }
        assert_eq!(fast_hash_ascii_lowercase_in(b"x@AZ[`az{x", 1..9), Some(fast_hash_bytes(b"@az[`az{")));
    }

    #[test]
    fn fast_v1_is_frozen() {
        // These values define `fast-v1` (computed by the pure-Python reference in
        // tests/reference_impl.py); a change here changes every saved feature space.
        assert_eq!(fast_hash_bytes(b""), 0);
        assert_eq!(fast_hash_bytes(b"alice"), 0x6be9_aa12_343f_08f4);
        assert_eq!(fast_hash_bytes(b"a longer token!"), 0x706d_cf23_5bde_bbca);
        assert_eq!(fast_bucket(fast_hash_bytes(b"alice"), 10_000), 4215);
        assert_eq!(fast_bucket(fast_combine(fast_hash_bytes(b"alice"), fast_hash_bytes(b"went")), 10_000), 592);
        assert_eq!(fast_hash_id(0), 0x9ca0_66f1_a4ab_2eea);
    }

    #[test]
    fn fast_bucket_stays_in_range() {
        for m in [1u32, 2, 3, 10_000, u32::MAX] {
            for key in [0u64, 1, u64::MAX / 3, u64::MAX] {
                assert!(fast_bucket(key, m) < m);
            }
        }
    }

    #[test]
    fn fast_v1_separates_order_and_padding() {
        let (a, b) = (fast_hash_bytes(b"a"), fast_hash_bytes(b"b"));
        assert_ne!(fast_combine(a, b), fast_combine(b, a));
        assert_ne!(fast_hash_bytes(b"ab"), fast_hash_bytes(b"ab\0"));
    }

    #[test]
    fn family_names_round_trip() {
        for f in [HashFamily::DsirSha256, HashFamily::FastV1] {
            assert_eq!(HashFamily::from_name(f.name()).unwrap(), f);
        }
        assert!(HashFamily::from_name("md5").is_err());
    }
}
