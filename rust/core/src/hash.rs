//! Hash families: how an n-gram becomes a bucket id. Each family is named, and its output is
//! frozen: changing it would silently change every saved estimator.
//!
//! * `dsir-sha256` reproduces the `data-selection` package: the n-gram's tokens joined by one
//!   ASCII space, SHA-256 of the UTF-8 bytes, the digest read as a big-endian 256-bit integer,
//!   modulo the bucket count. A per-thread memo table skips SHA-256 for n-grams seen before
//!   (most of them in real text) without changing any result.
//! * `fast-v1` is the default of speed: a 64-bit hash of each token's bytes ([`fast_hash_bytes`]),
//!   n-grams folded left to right with [`fast_combine`], and the key mapped onto the buckets with
//!   a multiply-shift ([`fast_bucket`]), so any bucket count works. Token ids hash with
//!   [`fast_hash_id`] instead of their bytes.

use std::cell::RefCell;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

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

/// Entries a thread's memo table may hold; beyond it, new n-grams are hashed but not kept.
const MEMO_MAX_ENTRIES: usize = 1 << 22;
/// Bytes of n-gram text a thread's memo table may hold.
const MEMO_MAX_BYTES: usize = 1 << 26;

struct MemoEntry {
    key: u64,
    start: u32,
    len: u32,
    bucket: u32,
}

/// A thread's table from n-gram bytes to `dsir-sha256` bucket. The bytes live in one arena and
/// are compared on every hit, so a result is always the exact SHA-256 bucket. It holds at most
/// [`MEMO_MAX_ENTRIES`] n-grams and [`MEMO_MAX_BYTES`] bytes (about 170 MB); when full, it
/// keeps what it has (the frequent n-grams come early) and hashes the rest every time.
pub struct Sha256Memo {
    buckets: u32,
    table: hashbrown::HashTable<MemoEntry>,
    arena: Vec<u8>,
}

impl Sha256Memo {
    /// The bucket of `ngram` under `dsir-sha256`.
    pub fn bucket(&mut self, ngram: &[u8]) -> u32 {
        let key = fast_hash_bytes(ngram);
        let arena = &self.arena;
        let found =
            self.table.find(key, |e| e.key == key && arena[e.start as usize..(e.start + e.len) as usize] == *ngram);
        if let Some(entry) = found {
            return entry.bucket;
        }
        let bucket = dsir_sha256_bucket(ngram, self.buckets);
        if self.table.len() < MEMO_MAX_ENTRIES && self.arena.len() + ngram.len() <= MEMO_MAX_BYTES {
            let entry = MemoEntry { key, start: self.arena.len() as u32, len: ngram.len() as u32, bucket };
            self.arena.extend_from_slice(ngram);
            self.table.insert_unique(key, entry, |e| e.key);
        }
        bucket
    }
}

thread_local! {
    static SHA256_MEMO: RefCell<Sha256Memo> = RefCell::new(Sha256Memo {
        buckets: 0,
        table: hashbrown::HashTable::new(),
        arena: Vec::new(),
    });
}

/// Runs `f` with this thread's memo table for `buckets` buckets (emptied if it held another
/// bucket count).
pub fn with_sha256_memo<R>(buckets: u32, f: impl FnOnce(&mut Sha256Memo) -> R) -> R {
    SHA256_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.buckets != buckets {
            memo.table.clear();
            memo.arena.clear();
            memo.buckets = buckets;
        }
        f(&mut memo)
    })
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `fast-v1` hash of a token's bytes: the length seeds the state, each little-endian 8-byte word
/// (the last one zero-padded) is folded in with xor, multiply and rotate, then [`fmix64`].
#[inline]
pub fn fast_hash_bytes(bytes: &[u8]) -> u64 {
    fast_hash_words(bytes, |w| w)
}

/// [`fast_hash_bytes`] of the ASCII-lowercased `bytes`, lowercasing eight bytes at a time.
#[inline]
pub fn fast_hash_ascii_lowercase(bytes: &[u8]) -> u64 {
    fast_hash_words(bytes, ascii_lowercase_word)
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
        with_sha256_memo(10_000, |memo| {
            for _ in 0..2 {
                assert_eq!(memo.bucket(b"alice"), 6720);
                assert_eq!(memo.bucket(b"alice went"), 114);
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
    fn memo_follows_bucket_count_changes() {
        let a = with_sha256_memo(10_000, |memo| memo.bucket(b"memo"));
        let b = with_sha256_memo(97, |memo| memo.bucket(b"memo"));
        assert_eq!(a, dsir_sha256_bucket(b"memo", 10_000));
        assert_eq!(b, dsir_sha256_bucket(b"memo", 97));
    }

    #[test]
    fn lowercasing_hash_equals_hash_of_lowercased_bytes() {
        let all_bytes: Vec<u8> = (0u8..=255).collect();
        for len in 0..=24 {
            for start in 0..all_bytes.len() - len {
                let s = &all_bytes[start..start + len];
                assert_eq!(fast_hash_ascii_lowercase(s), fast_hash_bytes(&s.to_ascii_lowercase()), "{s:?}");
            }
        }
        assert_eq!(fast_hash_ascii_lowercase(b"@AZ[`az{"), fast_hash_bytes(b"@az[`az{"));
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
