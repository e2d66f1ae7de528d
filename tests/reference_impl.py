"""Small pure-Python reference implementations used by the tests.

Written from the specifications (../shared/reference/dsir.md and the docstrings of
tokensieve.features), independently of the Rust code, so the tests compare two implementations.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import regex

MASK64 = (1 << 64) - 1
K0 = 0x9E3779B97F4A7C15
K1 = 0xC2B2AE3D27D4EB4F

# nltk >= 3.10.3: WordPunctTokenizer compiled with the `regex` module.
WORDPUNCT = regex.compile(r"\w+|[^\w\s]+", regex.UNICODE | regex.MULTILINE | regex.DOTALL)
FASTTEXT_SEPARATORS = " \n\r\t\v\f\0"


def wordpunct_tokens(text: str, lowercase: bool = True) -> list[str]:
    return WORDPUNCT.findall(text.lower() if lowercase else text)


def whitespace_tokens(text: str, lowercase: bool = False) -> list[str]:
    if lowercase:
        text = text.lower()
    tokens, current = [], []
    for ch in text:
        if ch in FASTTEXT_SEPARATORS:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def sha256_bucket(s: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest(), "big") % buckets


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def fast_hash_bytes(b: bytes) -> int:
    h = (len(b) * K0) & MASK64
    for i in range(0, len(b), 8):
        word = int.from_bytes(b[i : i + 8].ljust(8, b"\0"), "little")
        h = _rotl(((h ^ word) * K1) & MASK64, 31)
    return fmix64(h)


def fast_hash_id(token_id: int) -> int:
    return fmix64((token_id + K0) & MASK64)


def fast_combine(prefix: int, nxt: int) -> int:
    return fmix64(((prefix * K0) & MASK64) ^ nxt)


def fast_bucket(key: int, buckets: int) -> int:
    return (key * buckets) >> 64


def ngram_counts(tokens: list, ngrams: int, buckets: int, family: str) -> Counter:
    """Bucket counts of orders 1..ngrams. Tokens are str (text) or int (token ids)."""
    counts: Counter = Counter()
    for start in range(len(tokens)):
        window = tokens[start : start + ngrams]
        if family == "dsir-sha256":
            for order in range(1, len(window) + 1):
                counts[sha256_bucket(" ".join(str(t) for t in window[:order]), buckets)] += 1
        elif family == "fast-v1":
            keys = [fast_hash_id(t) if isinstance(t, int) else fast_hash_bytes(t.encode()) for t in window]
            key = keys[0]
            counts[fast_bucket(key, buckets)] += 1
            for nxt in keys[1:]:
                key = fast_combine(key, nxt)
                counts[fast_bucket(key, buckets)] += 1
        else:
            raise ValueError(family)
    return counts
