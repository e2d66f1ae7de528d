"""Hashed n-gram features of texts, token ids or corpus files.

A feature space is ``(tokenizer, hash, ngrams, buckets, lowercase)``: orders 1..ngrams of a
document's tokens all hash into one space of ``buckets`` buckets, as DSIR does. A document of U
tokens yields U + (U-1) + ... + (U-ngrams+1) features.

Hash families (frozen; changing one would change every saved estimator):

* ``"dsir-sha256"`` reproduces the ``data-selection`` package bit for bit: the n-gram's tokens
  joined by one space, SHA-256 of its UTF-8 bytes read as a big-endian integer, modulo
  ``buckets``. With token ids, a token is its decimal string.
* ``"fast-v1"``, the fast family: each token's UTF-8 bytes hash to 64 bits (length-seeded
  xor-multiply-rotate over little-endian 8-byte words, then MurmurHash3's ``fmix64``); an
  n-gram folds left to right with ``fmix64(prefix * 0x9E3779B97F4A7C15 ^ next)``; a key lands
  in bucket ``key * buckets >> 64``. A token id hashes as ``fmix64(id + 0x9E3779B97F4A7C15)``.
  ``tests/reference_impl.py`` holds a pure-Python definition.

Tokenizers: ``"wordpunct"`` (nltk's WordPunctTokenizer with the ``regex``-module classes of
nltk >= 3.10.3; lowercases by default, like DSIR) and ``"whitespace"`` (fastText's split on
space, ``\\n``, ``\\r``, ``\\t``, ``\\v``, ``\\f``, ``\\0``; no lowercasing by default).
Lowercasing is Python's ``str.lower()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
from scipy import sparse

from tokensieve import _core
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.io import Files, OnError, PathLike, ReadReport, corpus_files, is_file_source

__all__ = ["HashedNgrams", "tokenize"]

TokenizerName = Literal["wordpunct", "whitespace"]
HashName = Literal["dsir-sha256", "fast-v1"]


class HashedNgrams:
    """Counts hashed n-grams.

    Args:
        ngrams: highest n-gram order (1..8); all orders 1..ngrams are counted.
        buckets: size of the hashed feature space (1..2**32-1).
        tokenizer: ``"wordpunct"`` or ``"whitespace"``.
        hash: ``"dsir-sha256"`` (compatible with ``data-selection``) or ``"fast-v1"``.
        lowercase: lowercase before splitting; ``None`` means the tokenizer's default
            (``wordpunct``: yes, ``whitespace``: no).
        num_threads: worker threads; ``None`` reads ``TOKENSIEVE_NUM_THREADS``, else uses every
            CPU. Results do not depend on it.

    Instances pickle through their feature space, so they can be shipped to worker processes.
    """

    def __init__(
        self,
        ngrams: int = 2,
        buckets: int = 10000,
        tokenizer: TokenizerName = "wordpunct",
        hash: HashName = "dsir-sha256",
        lowercase: bool | None = None,
        num_threads: int | None = None,
    ) -> None:
        if lowercase is None:
            lowercase = tokenizer == "wordpunct"
        if not 1 <= buckets < 2**32:
            raise InvalidArgumentError(f"buckets must be in 1..2**32-1, got {buckets}")
        if ngrams < 1:
            raise InvalidArgumentError(f"ngrams must be in 1..8, got {ngrams}")
        self._core = _core.NgramFeaturizer(
            ngrams=ngrams, buckets=buckets, tokenizer=tokenizer, hash=hash, lowercase=lowercase
        )
        self.num_threads = num_threads

    @property
    def feature_space(self) -> dict[str, Any]:
        """The feature space as a JSON-ready dict: tokenizer, hash, ngrams, buckets, lowercase."""
        c = self._core
        return {
            "tokenizer": c.tokenizer,
            "hash": c.hash,
            "ngrams": c.ngrams,
            "buckets": c.buckets,
            "lowercase": c.lowercase,
        }

    @property
    def buckets(self) -> int:
        """Number of buckets (columns of :meth:`transform`)."""
        return self._core.buckets

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.feature_space.items())
        return f"HashedNgrams({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashedNgrams) and self.feature_space == other.feature_space

    def __hash__(self) -> int:
        return hash(tuple(self.feature_space.items()))

    def __getstate__(self) -> dict[str, Any]:
        return {"feature_space": self.feature_space, "num_threads": self.num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["feature_space"], num_threads=state["num_threads"])  # type: ignore[misc]

    def transform(self, texts: Iterable[str] | Any, *, on_error: OnError = "raise") -> sparse.csr_array:
        """Per-document counts: a ``scipy.sparse.csr_array`` of int64, one row per item of
        ``texts`` (a list of str, or an Arrow string array), ``buckets`` columns.

        The data and index arrays are the Rust buffers, handed over without a copy. An item
        that is not a text (``None``, not a ``str``, a lone surrogate, an Arrow null) raises
        :class:`~tokensieve.exceptions.BadRecordError`; with ``on_error="skip"`` it gets an
        empty row instead (rows stay aligned with the input).
        """
        if is_file_source(texts):
            raise InvalidArgumentError(
                "transform() takes texts in memory; use sum_counts() for files, or read them first"
            )
        parts, _report = self._core.transform_texts(texts, on_error=on_error, num_threads=self.num_threads)
        return self._csr(parts)

    def transform_ids(self, ids: npt.ArrayLike, offsets: npt.ArrayLike) -> sparse.csr_array:
        """Per-document counts of token-id documents: row i counts
        ``ids[offsets[i]:offsets[i+1]]``. ``ids`` of dtype uint32, int64 or uint64 are read
        without a copy (other integer dtypes are converted); ids must be >= 0."""
        ids_arr, offsets_arr = _id_arrays(ids, offsets)
        parts = self._core.transform_ids(ids_arr, offsets_arr, num_threads=self.num_threads)
        return self._csr(parts)

    @overload
    def sum_counts(
        self,
        source: Any,
        *,
        text_field: str = ...,
        on_error: OnError = ...,
        return_report: Literal[False] = ...,
    ) -> npt.NDArray[np.int64]: ...

    @overload
    def sum_counts(
        self,
        source: Any,
        *,
        text_field: str = ...,
        on_error: OnError = ...,
        return_report: Literal[True],
    ) -> tuple[npt.NDArray[np.int64], ReadReport]: ...

    def sum_counts(
        self,
        source: Iterable[str] | PathLike | Sequence[PathLike] | Files | Any,
        *,
        text_field: str = "text",
        on_error: OnError = "skip",
        return_report: bool = False,
    ) -> npt.NDArray[np.int64] | tuple[npt.NDArray[np.int64], ReadReport]:
        """Total count per bucket over every document of ``source`` (see :mod:`tokensieve.io`):
        a dense int64 array of length ``buckets``. Files are streamed in bounded memory.

        Bad records are skipped and counted (``on_error="skip"``, logged as a warning) or raise
        :class:`~tokensieve.exceptions.BadRecordError` (``on_error="raise"``). With
        ``return_report=True`` the :class:`~tokensieve.io.ReadReport` is returned as well.
        """
        if is_file_source(source):
            counts, raw = self._core.sum_counts_files(
                corpus_files(source), text_field=text_field, on_error=on_error, num_threads=self.num_threads
            )
        else:
            counts, raw = self._core.sum_counts_texts(source, on_error=on_error, num_threads=self.num_threads)
        report = ReadReport._from_core(raw)
        report.log_skips()
        return (counts, report) if return_report else counts

    def sum_counts_ids(self, ids: npt.ArrayLike, offsets: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Total count per bucket over token-id documents (see :meth:`transform_ids`)."""
        ids_arr, offsets_arr = _id_arrays(ids, offsets)
        return self._core.sum_counts_ids(ids_arr, offsets_arr, num_threads=self.num_threads)

    def _csr(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> sparse.csr_array:
        data, indices, indptr = parts
        shape = (len(indptr) - 1, self.buckets)
        return sparse.csr_array((data, indices, indptr), shape=shape, copy=False)


def tokenize(text: str, tokenizer: TokenizerName = "wordpunct", lowercase: bool | None = None) -> list[str]:
    """The tokens of ``text`` exactly as :class:`HashedNgrams` sees them. ``lowercase=None``
    means the tokenizer's default (``wordpunct``: yes, ``whitespace``: no)."""
    if lowercase is None:
        lowercase = tokenizer == "wordpunct"
    return _core.tokenize(text, tokenizer=tokenizer, lowercase=lowercase)


def _id_arrays(ids: npt.ArrayLike, offsets: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ids_arr = np.asarray(ids)
    if ids_arr.ndim != 1 or not (ids_arr.size == 0 or np.issubdtype(ids_arr.dtype, np.integer)):
        raise InvalidArgumentError("ids must be a 1-D integer array")
    if ids_arr.dtype not in (np.uint32, np.int64, np.uint64):
        ids_arr = ids_arr.astype(np.int64)
    offsets_arr = np.asarray(offsets)
    if offsets_arr.ndim != 1 or not np.issubdtype(offsets_arr.dtype, np.integer):
        raise InvalidArgumentError("offsets must be a 1-D integer array")
    return np.ascontiguousarray(ids_arr), np.ascontiguousarray(offsets_arr, dtype=np.int64)
