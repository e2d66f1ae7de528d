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
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Entries a thread's memo table may hold before it is emptied (about 100 MB at most).
const MEMO_CAPACITY: usize = 1 << 21;

struct Sha256Memo {
    buckets: u32,
    table: HashMap<Box<[u8]>, u32, BuildHasherDefault<FastHasher>>,
}

thread_local! {
    static SHA256_MEMO: RefCell<Sha256Memo> = RefCell::new(Sha256Memo {
        buckets: 0,
        table: HashMap::default(),
    });
}

/// [`dsir_sha256_bucket`] through this thread's memo table.
pub fn dsir_sha256_bucket_memo(bytes: &[u8], buckets: u32) -> u32 {
    SHA256_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.buckets != buckets || memo.table.len() >= MEMO_CAPACITY {
            memo.table.clear();
            memo.buckets = buckets;
        }
        if let Some(&bucket) = memo.table.get(bytes) {
            return bucket;
        }
        let bucket = dsir_sha256_bucket(bytes, buckets);
        memo.table.insert(bytes.into(), bucket);
        bucket
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
    let mut h = (bytes.len() as u64).wrapping_mul(K0);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        h = (h ^ w).wrapping_mul(K1).rotate_left(31);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut padded = [0u8; 8];
        padded[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(padded)).wrapping_mul(K1).rotate_left(31);
    }
    fmix64(h)
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

/// A std `Hasher` over [`fast_hash_bytes`], for hash maps keyed by byte strings.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fast_combine(self.0, fast_hash_bytes(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_data_selection_vectors() {
        assert_eq!(dsir_sha256_bucket(b"alice", 10_000), 6720);
        assert_eq!(dsir_sha256_bucket(b"alice went", 10_000), 114);
        assert_eq!(dsir_sha256_bucket_memo(b"alice", 10_000), 6720);
        assert_eq!(dsir_sha256_bucket_memo(b"alice", 10_000), 6720);
        assert_eq!(dsir_sha256_bucket_memo(b"alice went", 10_000), 114);
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
        let a = dsir_sha256_bucket_memo(b"memo", 10_000);
        let b = dsir_sha256_bucket_memo(b"memo", 97);
        assert_eq!(a, dsir_sha256_bucket(b"memo", 10_000));
        assert_eq!(b, dsir_sha256_bucket(b"memo", 97));
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
