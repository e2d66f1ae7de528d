"""DSIR: data selection by importance resampling (Xie, Santurkar, Ma, Liang; NeurIPS 2023).

Two bag-of-hashed-n-gram distributions are fitted, one on the raw pool and one on the target;
each raw document gets the log importance weight

    log w(x) = sum_b c_x[b] * (log(p_target[b] + 1e-8) - log(p_raw[b] + 1e-8))

(the ``data-selection`` package's formula), and k documents are drawn by Gumbel top-k (sampling
without replacement proportional to w), by deterministic top-k, or with replacement.

Differences from ``data-selection`` 1.0.3, on purpose:

* Randomness comes from an explicit ``seed``. The Gumbel noise of a document is a function of
  ``(seed, target, source name, position of the document in its source)``, so the selection does
  not depend on thread count or on the order the files are listed in. ``legacy_numpy_seed``
  reproduces ``np.random.seed(s)`` followed by the reference's ``resample`` instead.
* Bad records are skipped and counted (or raise), never crash the run; blank lines are skipped.
* The token count of a document is its number of tokens (the reference's
  ``(features + n(n-1)/2) // n`` equals it whenever the document has at least n-1 tokens).
* A ``num_tokens_to_fit`` budget (counted in n-grams, as upstream) is filled by documents in a
  seeded random order, not by a prefix of each shard; it applies to the raw pool only.
* State is saved as JSON + ``.npy``, never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tokensieve import _core
from tokensieve.exceptions import FeatureSpaceMismatchError, InvalidArgumentError
from tokensieve.features import HashedNgrams, HashName, TokenizerName
from tokensieve.io import OnError, ReadReport, SourceReport, corpus_files, is_file_source
from tokensieve.output import (
    files_sha256_in_background,
    manifest_header,
    prepare_output_dir,
    remove_stale_shards,
    shard_entries,
    skipped_lines,
    skipped_record_entries,
    write_json,
    write_npy,
)
from tokensieve.progress import progress_bar

__all__ = ["DSIR", "Selection", "gumbel_noise", "kl_divergence", "source_identities"]

Method = Literal["gumbel", "topk", "replacement"]
OutputFormat = Literal["jsonl", "jsonl.zst", "parquet"]

#: Added to probabilities before the log, as the reference does.
LOG_EPSILON = 1e-8
#: Added to probabilities in the KL divergence, as the DSIR authors' KL code does.
KL_EPSILON = 1e-10
STATE_VERSION = 1
#: The random stream of the ``num_tokens_to_fit`` sample (resampling uses one per target index).
FIT_SAMPLE_STREAM = 2**32
#: The random stream of the uniform sample that :meth:`DSIR.kl_reduction` compares with.
KL_SAMPLE_STREAM = 2**32 + 1


def kl_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """KL(p || q) = sum p * log((p + 1e-10) / (q + 1e-10)) of two distributions (or count vectors,
    normalised here) over the same buckets."""
    p_arr = _normalise(np.asarray(p, dtype=np.float64))
    q_arr = _normalise(np.asarray(q, dtype=np.float64))
    return float(np.sum(p_arr * (np.log(p_arr + KL_EPSILON) - np.log(q_arr + KL_EPSILON))))


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts, dtype=np.float64), where=total > 0)


@dataclass(frozen=True)
class Selection:
    """The outcome of :meth:`DSIR.resample`.

    ``copies[i]`` is how many times raw document i (in raw document order) was selected: 0 or 1
    (uint8, one byte per document), or any count with ``method="replacement"`` (uint32).
    ``tokens`` is the token count per document (the estimator's array, not a copy): documents
    with at least ``min_example_length`` tokens are :attr:`eligible`.
    """

    copies: npt.NDArray[np.uint8] | npt.NDArray[np.uint32]
    tokens: npt.NDArray[np.uint32]
    min_example_length: int
    method: str
    seed: int | None
    k: int
    shards: tuple[Path, ...] = ()
    manifest: Path | None = None
    kl: Mapping[str, float] = field(default_factory=dict)

    @property
    def eligible(self) -> npt.NDArray[np.bool_]:
        """Which documents have at least ``min_example_length`` tokens (computed on each call)."""
        return self.tokens >= self.min_example_length

    @property
    def indices(self) -> npt.NDArray[np.int64]:
        """Raw document indices of the selected documents, ascending (each once)."""
        return np.flatnonzero(self.copies)

    def counts(self, start: int = 0, end: int | None = None) -> dict[str, int]:
        """How many documents of rows ``start:end`` (all by default) are ``selected``,
        ``not_selected`` (eligible but not chosen) and ``too_short``, counted a chunk at a
        time (no temporary array as long as the corpus)."""
        end = len(self.copies) if end is None else end
        counts = {"selected": 0, "not_selected": 0, "too_short": 0}
        for lo in range(start, end, SELECTION_CHUNK):
            hi = min(lo + SELECTION_CHUNK, end)
            chosen, eligible = self.copies[lo:hi] > 0, self.tokens[lo:hi] >= self.min_example_length
            counts["selected"] += int(np.count_nonzero(chosen))
            counts["not_selected"] += int(np.count_nonzero(eligible & ~chosen))
            counts["too_short"] += hi - lo - int(np.count_nonzero(eligible))
        return counts


class DSIR:
    """Importance resampling of a raw pool towards one or several targets.

    Args:
        raw: the pool, any source of :mod:`tokensieve.io` (texts, Arrow, paths, ``Files``).
        target: one source, or ``{name: source}`` for several targets selected jointly with
            ``target_proportions`` (by default proportional to each target's n-gram count).
        ngrams, buckets, tokenizer, hash, lowercase: the feature space (see
            :class:`~tokensieve.features.HashedNgrams`); the defaults are the reference's.
        min_example_length: documents with fewer tokens are never selected (they still shape
            the raw distribution and get a weight, as in the reference).
        chunk_words: cut every document (raw and target) into pieces of this many words, as the
            DSIR paper did (128): split on single spaces, so the pieces joined by one space give
            the text back. Pieces are then the units that are counted, weighed, selected and
            written (with their source file, line and position, see :meth:`write`).
        target_laplace_smoothing: pseudo-count added to every target bucket (upstream HEAD).
        num_tokens_to_fit: ``"all"``, or a budget of raw n-grams filled by documents drawn in
            a random order seeded by ``fit_seed``.
        text_field, on_error: how records are read (see :mod:`tokensieve.io`).
        num_threads: worker threads (results do not depend on it).
        progress: draw a progress bar on stderr for each pass over files.
    """

    def __init__(
        self,
        raw: Any,
        target: Any,
        *,
        ngrams: int = 2,
        buckets: int = 10000,
        tokenizer: TokenizerName = "wordpunct",
        hash: HashName = "dsir-sha256",
        lowercase: bool | None = None,
        min_example_length: int = 100,
        chunk_words: int | None = None,
        target_laplace_smoothing: float = 0.0,
        target_proportions: Sequence[float] | None = None,
        num_tokens_to_fit: int | Literal["all"] = "all",
        fit_seed: int = 0,
        text_field: str = "text",
        on_error: OnError = "skip",
        num_threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.featurizer = HashedNgrams(ngrams, buckets, tokenizer, hash, lowercase, num_threads)
        # Sources are read several times (fit, weights, output): a one-shot iterator is kept.
        self.raw = _rereadable(raw)
        targets = dict(target) if isinstance(target, Mapping) else {"target": target}
        self.targets: dict[str, Any] = {name: _rereadable(source) for name, source in targets.items()}
        if not self.targets:
            raise InvalidArgumentError("at least one target is needed")
        if target_proportions is not None and len(target_proportions) != len(self.targets):
            raise InvalidArgumentError(
                f"{len(target_proportions)} target proportions for {len(self.targets)} targets"
            )
        if target_laplace_smoothing < 0:
            raise InvalidArgumentError("target_laplace_smoothing must be >= 0")
        if chunk_words is not None and (not isinstance(chunk_words, int) or chunk_words < 1):
            raise InvalidArgumentError(f"chunk_words must be None or a positive int, got {chunk_words!r}")
        if num_tokens_to_fit != "all" and (not isinstance(num_tokens_to_fit, int) or num_tokens_to_fit < 1):
            raise InvalidArgumentError(
                f'num_tokens_to_fit must be "all" or a positive int, got {num_tokens_to_fit!r}'
            )
        self.min_example_length = min_example_length
        self.chunk_words = chunk_words
        self.target_laplace_smoothing = float(target_laplace_smoothing)
        self._requested_proportions = None if target_proportions is None else list(target_proportions)
        self.num_tokens_to_fit = num_tokens_to_fit
        self.fit_seed = fit_seed
        self.text_field = text_field
        self.on_error: OnError = on_error
        self.num_threads = num_threads
        self.progress = progress
        self.raw_counts: npt.NDArray[np.int64] | None = None
        self.target_counts: npt.NDArray[np.int64] | None = None
        self._scores: tuple[np.ndarray, np.ndarray, ReadReport] | None = None
        #: Documents (or chunks) of the raw pool at its last read, to size the weights up front.
        self._raw_units: int | None = None
        #: The raw pool's bucket ids spilled by fit() and the report of that read, until used.
        self._spill: tuple[str, ReadReport] | None = None

    # -- fitting -----------------------------------------------------------------------------

    @property
    def feature_space(self) -> dict[str, Any]:
        return self.featurizer.feature_space

    def fit(self) -> DSIR:
        """Counts the raw and target n-grams. Returns ``self``."""
        include = None
        if self.num_tokens_to_fit != "all":
            include = self._fit_sample(int(self.num_tokens_to_fit))
        self._scores = None
        self._spill = None
        spill = None
        if include is None and is_file_source(self.raw):
            # The raw pool's bucket ids go to disk as they are counted, so that the weights
            # need not read and featurise the pool again (removed once the weights exist).
            spill_dir = tempfile.mkdtemp(prefix="tokensieve-dsir-")
            weakref.finalize(self, shutil.rmtree, spill_dir, ignore_errors=True)
            spill = os.path.join(spill_dir, "raw-features.bin")
        self.raw_counts, raw_report = self._sum_counts(self.raw, include, "fit raw", spill=spill)
        if spill is not None:
            self._spill = (spill, raw_report)
        self.target_counts = np.stack(
            [self._sum_counts(source, None, f"fit {name}")[0] for name, source in self.targets.items()]
        )
        return self

    def _fit_sample(self, budget: int) -> npt.NDArray[np.bool_]:
        """Documents in a seeded random order until their n-grams reach ``budget`` (the one
        crossing it included)."""
        _, tokens, report = self._score_raw(np.zeros((0, self.featurizer.buckets)), "fit budget")
        n = self.feature_space["ngrams"]
        lengths = tokens.astype(np.int64)
        features = np.zeros_like(lengths)
        for i in range(n):  # a document of t tokens has max(t - i, 0) (i+1)-grams
            features += np.maximum(lengths - i, 0)
        order = np.argsort(_document_uniforms(report, self.fit_seed, FIT_SAMPLE_STREAM)(None), kind="stable")
        reached = np.cumsum(features[order]) >= budget
        stop = int(np.argmax(reached)) + 1 if reached.any() else len(order)
        include = np.zeros(len(tokens), dtype=bool)
        include[order[:stop]] = True
        return include

    def _sum_counts(
        self, source: Any, include: npt.NDArray[np.bool_] | None, label: str, spill: str | None = None
    ) -> tuple[npt.NDArray[np.int64], ReadReport]:
        """Bucket counts of ``source`` (of its ``include`` rows only, where given) and the read's
        report. A read of the raw pool records its document count, which later reads expect."""
        core = self.featurizer._core
        if is_file_source(source):
            paths = corpus_files(source)
            with progress_bar(label, paths, self.progress) as bar:
                counts, raw = core.sum_counts_files(
                    paths,
                    include=include,
                    text_field=self.text_field,
                    on_error=self.on_error,
                    num_threads=self.num_threads,
                    progress=bar,
                    chunk_words=self.chunk_words,
                    spill=spill,
                )
        else:
            counts, raw = core.sum_counts_texts(
                source,
                include=include,
                on_error=self.on_error,
                num_threads=self.num_threads,
                chunk_words=self.chunk_words,
            )
        report = ReadReport._from_core(raw)
        report.log_skips()
        if source is self.raw:
            self._raw_units = sum(_units(s) for s in report.sources)
        return counts, report

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.raw_counts is None or self.target_counts is None:
            raise InvalidArgumentError("call fit() first")
        return self.raw_counts, self.target_counts

    @property
    def raw_probs(self) -> npt.NDArray[np.float64]:
        """Raw bucket probabilities (unsmoothed), float64 ``[buckets]``."""
        raw, _ = self._fitted()
        return raw / raw.sum()

    @property
    def target_probs(self) -> npt.NDArray[np.float64]:
        """Target bucket probabilities, ``[buckets]`` (``[targets, buckets]`` with several),
        with ``target_laplace_smoothing`` added to the counts."""
        _, target = self._fitted()
        smoothed = target + self.target_laplace_smoothing
        probs = smoothed / smoothed.sum(axis=1, keepdims=True)
        return probs[0] if len(probs) == 1 else probs

    @property
    def log_diff(self) -> npt.NDArray[np.float64]:
        """``log(target_probs + 1e-8) - log(raw_probs + 1e-8)``, shaped like ``target_probs``."""
        return np.log(self.target_probs + LOG_EPSILON) - np.log(self.raw_probs + LOG_EPSILON)

    @property
    def target_proportions(self) -> npt.NDArray[np.float64]:
        """The share of the selection per target: as given, else by target n-gram counts."""
        _, target = self._fitted()
        given = self._requested_proportions
        weights = np.asarray(given if given is not None else target.sum(axis=1), dtype=np.float64)
        return weights / weights.sum()

    # -- weights -----------------------------------------------------------------------------

    def _score_raw(self, log_diff: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray, ReadReport]:
        model = _core.ImportanceModel(self.featurizer._core, np.ascontiguousarray(log_diff, dtype=np.float64))
        if is_file_source(self.raw):
            paths = corpus_files(self.raw)
            with progress_bar(label, paths, self.progress) as bar:
                weights, tokens, raw = model.score_files(
                    paths,
                    text_field=self.text_field,
                    on_error=self.on_error,
                    num_threads=self.num_threads,
                    progress=bar,
                    chunk_words=self.chunk_words,
                    expected_documents=self._raw_units,
                )
        else:
            weights, tokens, raw = model.score_texts(
                self.raw, on_error=self.on_error, num_threads=self.num_threads, chunk_words=self.chunk_words
            )
        report = ReadReport._from_core(raw)
        report.log_skips()
        return weights, tokens, report

    def _scored(self) -> tuple[np.ndarray, np.ndarray, ReadReport]:
        if self._scores is None and self._spill is not None:
            path, report = self._spill
            model = _core.ImportanceModel(self.featurizer._core, np.atleast_2d(self.log_diff))
            weights, tokens = model.score_spilled(
                path, expected_documents=self._raw_units, num_threads=self.num_threads
            )
            os.remove(path)
            self._spill = None
            self._scores = weights, tokens, report
        if self._scores is None:
            self._scores = self._score_raw(np.atleast_2d(self.log_diff), "weights")
        return self._scores

    def weights(self, *, normalize: bool = False) -> npt.NDArray[np.float64]:
        """Log importance weights, one per raw document in source order (file order, then line
        order; skipped records have none): ``[documents]``, or ``[documents, targets]`` with
        several targets. ``normalize=True`` divides by the document's token count."""
        weights, tokens, _ = self._scored()
        if normalize:
            weights = weights / np.maximum(tokens, 1)[:, None]
        return weights[:, 0] if weights.shape[1] == 1 else weights

    @property
    def tokens(self) -> npt.NDArray[np.uint32]:
        """Token count per raw document."""
        return self._scored()[1]

    @property
    def report(self) -> ReadReport:
        """What reading the raw pool for the weights saw."""
        return self._scored()[2]

    # -- resampling --------------------------------------------------------------------------

    def resample(
        self,
        k: int | None = None,
        *,
        fraction: float | None = None,
        out: str | os.PathLike[str] | None = None,
        seed: int = 0,
        method: Method = "gumbel",
        normalize: bool = False,
        clamp: bool = False,
        legacy_numpy_seed: int | None = None,
        legacy_num_proc: int | None = None,
        output_format: OutputFormat = "jsonl.zst",
        kl: bool = False,
    ) -> Selection:
        """Selects ``k`` raw documents (or ``fraction`` of the eligible ones).

        ``method``: ``"gumbel"`` (Gumbel top-k: sampling without replacement proportional to w),
        ``"topk"`` (the k largest weights) or ``"replacement"`` (k draws proportional to w).
        ``legacy_numpy_seed=s`` reproduces ``np.random.seed(s)`` then ``data-selection``'s
        ``resample`` (its noise order follows its virtual shards: pass its ``num_proc`` as
        ``legacy_num_proc``; the default is one shard per file).

        k must be in 1..eligible documents; ``clamp=True`` lowers a larger k instead. With
        ``out``, the selected documents are written there (see :meth:`write`); ``kl=True``
        also measures the KL reduction (two more passes over the selected and a random sample).
        """
        weights = self.weights(normalize=normalize)
        weights = weights[:, None] if weights.ndim == 1 else weights
        eligible = self.tokens >= self.min_example_length
        quotas = self.target_quotas(int(eligible.sum()), k, fraction=fraction, clamp=clamp)
        k = sum(quotas)
        copies: npt.NDArray[np.uint8] | npt.NDArray[np.uint32]
        if legacy_numpy_seed is not None:
            copies = self._select_legacy(weights, eligible, quotas, legacy_numpy_seed, legacy_num_proc)
            used_seed: int | None = legacy_numpy_seed
        else:
            copies = self._select(weights, eligible, quotas, seed, method)
            used_seed = seed
        del eligible  # Selection.eligible recomputes it: no byte per document kept for it
        method_name = "legacy-gumbel" if legacy_numpy_seed is not None else method
        selection = Selection(copies, self.tokens, self.min_example_length, method_name, used_seed, k)
        if kl:
            selection = replace(selection, kl=self.kl_reduction(selection, seed=seed))
        if out is not None:
            selection = self.write(selection, out, output_format=output_format)
        return selection

    def target_quotas(
        self, eligible: int, k: int | None = None, *, fraction: float | None = None, clamp: bool = False
    ) -> list[int]:
        """How many documents each target selects when ``k`` (or ``fraction`` of the ``eligible``
        documents) are asked for, as :meth:`resample` splits them: ``floor(k * p_i)`` by
        ``target_proportions``, the remainder to the last target. Raises
        :class:`~tokensieve.exceptions.InvalidArgumentError` for a k outside 1..eligible unless
        ``clamp=True`` lowers it."""
        k = self._resolve_k(k, fraction, eligible, clamp)
        proportions = self.target_proportions
        quotas = [int(k * p) for p in proportions[:-1]]
        return [*quotas, k - sum(quotas)]

    @staticmethod
    def _resolve_k(k: int | None, fraction: float | None, eligible: int, clamp: bool) -> int:
        if (k is None) == (fraction is None):
            raise InvalidArgumentError("give exactly one of k and fraction")
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise InvalidArgumentError(f"fraction must be in (0, 1], got {fraction}")
            return DSIR._resolve_k(max(1, round(fraction * eligible)), None, eligible, clamp)
        assert k is not None
        if k < 1:
            raise InvalidArgumentError(f"k must be at least 1, got {k}")
        if k > eligible:
            if not clamp or eligible == 0:
                raise InvalidArgumentError(
                    f"k={k} is larger than the {eligible} eligible documents "
                    "(at least min_example_length tokens); pass clamp=True to take them all"
                )
            return eligible
        return k

    def _select(
        self, weights: np.ndarray, eligible: np.ndarray, quotas: list[int], seed: int, method: Method
    ) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint32]:
        if method not in ("gumbel", "topk", "replacement"):
            raise InvalidArgumentError(f'method must be "gumbel", "topk" or "replacement", got {method!r}')
        copies = np.zeros(len(eligible), dtype=np.uint32 if method == "replacement" else np.uint8)
        left = int(np.count_nonzero(eligible))
        for t, quota in enumerate(quotas):
            if quota == 0:
                continue
            if quota > left:
                raise InvalidArgumentError(f"target {t} needs {quota} documents, only {left} are left")
            if method == "replacement":
                self._draw_with_replacement(weights[:, t], eligible, quota, [seed, t], copies)
                continue

            uniforms = _document_uniforms(self.report, seed, t) if method == "gumbel" else None

            def key(rows: np.ndarray, t: int = t, uniforms: Callable | None = uniforms) -> np.ndarray:
                if uniforms is None:
                    return weights[rows, t]
                return weights[rows, t] + _gumbel(uniforms(rows))

            def available(lo: int, hi: int) -> np.ndarray:
                # Documents chosen for an earlier target are not available to this one.
                return lo + np.flatnonzero(eligible[lo:hi] & (copies[lo:hi] == 0))

            def mark(rows: np.ndarray) -> None:
                copies[rows] = 1

            _mark_top_k(len(eligible), quota, available, key, mark)
            left -= quota
        return copies

    def _draw_with_replacement(
        self, w: np.ndarray, available: np.ndarray, quota: int, seed: list[int], copies: np.ndarray
    ) -> None:
        """``quota`` draws proportional to ``exp(w)`` among ``available``, added to ``copies``:
        ``quota`` sorted uniform points on the total weight, each falling into the document
        whose share of the running sum holds it. Three passes over the weights, in chunks: their
        maximum, the total (the running sums, exactly as the last pass forms them), and the
        placing of the points. The documents are walked in a canonical order (sources by
        identity, each in file order, :func:`_canonical_chunks`), so the draws do not depend on
        file order or location; memory is the points and a chunk, not per document."""
        peak = max(
            (float(w[lo:hi][available[lo:hi]].max()) for lo, hi in _canonical_chunks(self.report)
             if available[lo:hi].any()),
            default=0.0,
        )  # fmt: skip

        def running_sums() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
            offset = 0.0
            for lo, hi in _canonical_chunks(self.report):
                shares = np.where(available[lo:hi], np.exp(w[lo:hi] - peak), 0.0)
                sums = offset + np.cumsum(shares)
                offset = float(sums[-1])
                yield lo, shares, sums

        total = 0.0
        for _, _, sums in running_sums():
            total = float(sums[-1])
        rng = np.random.Generator(np.random.PCG64(seed))
        points = np.sort(rng.random(quota)) * total
        done = 0
        last = -1  # the last document with a share: takes points rounding put at the very end
        for lo, shares, sums in running_sums():
            end = int(np.searchsorted(points, sums[-1], side="left"))
            if end > done:
                hits = np.searchsorted(sums, points[done:end], side="right")
                copies[lo : lo + len(sums)] += np.bincount(hits, minlength=len(sums)).astype(copies.dtype)
                done = end
            holding = np.flatnonzero(shares)
            if len(holding):
                last = lo + int(holding[-1])
        if done < quota:
            copies[last] += quota - done

    def _select_legacy(
        self,
        weights: np.ndarray,
        eligible: np.ndarray,
        quotas: list[int],
        numpy_seed: int,
        num_proc: int | None,
    ) -> npt.NDArray[np.uint8]:
        """``np.random.seed(s)`` + the reference's Gumbel noise and ``argpartition``, in the
        reference's concatenated virtual-shard order."""
        order = self._legacy_order(num_proc)
        rng = np.random.RandomState(numpy_seed)
        chosen_mask = np.zeros(len(eligible), dtype=bool)
        available = eligible[order].copy()
        for t, quota in enumerate(quotas):
            if quota == 0:
                continue
            candidates = np.flatnonzero(available)
            values = weights[order[candidates], t] + rng.gumbel(size=len(candidates))
            if quota >= len(candidates):
                picked = candidates
            else:
                picked = candidates[np.argpartition(-values, quota)[:quota]]
            chosen_mask[order[picked]] = True
            available[picked] = False
        return chosen_mask.view(np.uint8)

    def _legacy_order(self, num_proc: int | None) -> np.ndarray:
        """Document indices in ``data-selection``'s shard order: each file is split into
        ``s`` virtual shards (document i of the file goes to shard i mod s), shards file by file."""
        _, source_of, position = _source_positions(self.report)
        files = len(self.report.sources)
        num_proc = files if num_proc is None else num_proc
        per_file = max(1, num_proc // files)
        extra = num_proc % files if num_proc >= files else 0
        shards = np.array([per_file + (1 if f < extra else 0) for f in range(files)])
        shard = position.astype(np.int64) % shards[source_of]
        return np.lexsort((position, shard, source_of))

    # -- evaluation --------------------------------------------------------------------------

    def kl_reduction(self, selection: Selection, *, seed: int = 0) -> dict[str, float]:
        """KL(target || random sample of the pool) - KL(target || selection), in the hashed
        feature space (the DSIR paper's metric). The random sample has as many documents as
        the selection, drawn uniformly from all raw documents with ``seed`` (keyed by the
        documents' identities, as the Gumbel noise is). With several targets the target is their
        mixture by ``target_proportions``."""
        _, target = self._fitted()
        target_dist = self.target_proportions @ _normalise(target.astype(np.float64))
        n = len(selection.copies)
        size = int(np.count_nonzero(selection.copies))
        random_sample = self._uniform_sample(n, size, seed)
        kl_random = kl_divergence(target_dist, self._sum_counts(self.raw, random_sample, "kl random")[0])
        del random_sample  # freed before the selection's mask is made: one mask at a time
        selected = selection.copies > 0
        kl_selected = kl_divergence(target_dist, self._sum_counts(self.raw, selected, "kl selection")[0])
        return {"kl_random": kl_random, "kl_selected": kl_selected, "kl_reduction": kl_random - kl_selected}

    def _uniform_sample(self, n: int, size: int, seed: int) -> npt.NDArray[np.bool_]:
        """A mask of ``size`` of the ``n`` raw documents drawn uniformly without replacement,
        keyed by the documents' identities (as the Gumbel noise is)."""
        sample = np.zeros(n, dtype=bool)

        def every_row(lo: int, hi: int) -> np.ndarray:
            return np.arange(lo, hi, dtype=np.int64)

        def mark(rows: np.ndarray) -> None:
            sample[rows] = True

        if size > 0:
            _mark_top_k(n, size, every_row, _document_uniforms(self.report, seed, KL_SAMPLE_STREAM), mark)
        return sample

    # -- output ------------------------------------------------------------------------------

    def write(
        self, selection: Selection, out: str | os.PathLike[str], *, output_format: OutputFormat = "jsonl.zst"
    ) -> Selection:
        """Writes the selected documents to ``out/part-NNNNN.<format>`` (one shard per input
        file with a selected document, documents in input order) and ``out/manifest.json``,
        which accounts for every raw record.

        ``output_format``: ``"jsonl"`` or ``"jsonl.zst"`` copy JSONL lines byte for byte (Parquet
        rows and in-memory items become ``{"<text_field>": text}``); ``"parquet"`` copies Parquet
        rows with all their columns (JSONL lines and in-memory items become rows of one
        ``text_field`` column). A document selected twice (``method="replacement"``) is written
        twice. Each file is
        written under a temporary name and renamed when complete, the manifest last, so a
        killed run leaves no partial shard and rerunning it gives the same output."""
        out_dir = prepare_output_dir(
            out, lambda name: name.startswith("part-") or name in ("manifest.json", "manifest.json.tmp")
        )
        start = time.perf_counter()
        report = self.report
        copies = selection.copies
        if not (copies.dtype in (np.uint8, np.uint32) and copies.flags.c_contiguous):
            copies = np.ascontiguousarray(copies, dtype=np.uint32)  # e.g. a Selection built by hand
        pending_digests = None
        if is_file_source(self.raw):
            paths = corpus_files(self.raw)
            pending_digests = files_sha256_in_background(paths, self.num_threads)
            written = _core.write_selected_files(
                paths,
                [_units(s) for s in report.sources],
                skipped_lines(report),
                copies,
                out_dir,
                format=output_format,
                text_field=self.text_field,
                on_error=self.on_error,
                num_threads=self.num_threads,
                chunk_words=self.chunk_words,
            )
            shards = [(index, Path(path), n) for index, path, n in written]
        else:
            path = out_dir / f"part-00000.{output_format}"
            n = _core.write_selected_texts(
                self.raw,
                copies,
                path,
                format=output_format,
                text_field=self.text_field,
                on_error=self.on_error,
                chunk_words=self.chunk_words,
            )
            shards = [(0, path, n)]
        remove_stale_shards(out_dir, (p for _, p, _ in shards))
        digests = pending_digests() if pending_digests is not None else [None] * len(report.sources)
        manifest = self._manifest(selection, shards, digests, time.perf_counter() - start)
        manifest_path = out_dir / "manifest.json"
        write_json(manifest_path, manifest)
        return replace(selection, shards=tuple(p for _, p, _ in shards), manifest=manifest_path)

    def _manifest(
        self,
        selection: Selection,
        shards: list[tuple[int, Path, int]],
        digests: Sequence[str | None],
        write_seconds: float,
    ) -> dict:
        report = self.report
        sources = []
        end = 0
        for s, digest in zip(report.sources, digests, strict=True):
            # A source's documents are one run of rows: slices, not per-row source indices.
            start, end = end, end + _units(s)
            sources.append(
                {
                    "name": s.name,
                    "bytes": s.bytes,
                    "sha256": digest,
                    "records": s.records,
                    "documents": s.documents,
                    "chunks": s.chunks,
                    **selection.counts(start, end),
                    "skipped": s.records - s.documents,
                }
            )
        return {
            **manifest_header("dsir"),
            "feature_space": self.feature_space,
            # What selected / not_selected / too_short count: documents, or their chunks.
            "unit": "document" if self.chunk_words is None else "chunk",
            "config": {
                "min_example_length": self.min_example_length,
                "chunk_words": self.chunk_words,
                "target_laplace_smoothing": self.target_laplace_smoothing,
                "target_proportions": self.target_proportions.tolist(),
                "num_tokens_to_fit": self.num_tokens_to_fit,
                "fit_seed": self.fit_seed,
                "text_field": self.text_field,
                "on_error": self.on_error,
            },
            "selection": {
                "method": selection.method,
                "seed": selection.seed,
                "k": selection.k,
                "documents_written": int(selection.copies.sum()),
                **selection.kl,
            },
            "counts": {
                "records": report.records,
                "documents": report.documents,
                "selected": sum(source["selected"] for source in sources),
                "not_selected": sum(source["not_selected"] for source in sources),
                "too_short": sum(source["too_short"] for source in sources),
                "skipped": dict(report.skipped),
            },
            "skipped_records": skipped_record_entries(report),
            "sources": sources,
            "shards": shard_entries(shards),
            "write_seconds": write_seconds,
        }

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Saves the fitted estimator as ``path/dsir.json`` + ``.npy`` counts (no pickle)."""
        raw, target = self._fitted()
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        write_npy(directory / "raw_counts.npy", raw)
        write_npy(directory / "target_counts.npy", target)
        state = {
            "format": "tokensieve.dsir",
            "version": STATE_VERSION,
            "tokensieve": _core.__version__,
            "feature_space": self.feature_space,
            "targets": list(self.targets),
            "min_example_length": self.min_example_length,
            "chunk_words": self.chunk_words,
            "target_laplace_smoothing": self.target_laplace_smoothing,
            "target_proportions": self._requested_proportions,
            "num_tokens_to_fit": self.num_tokens_to_fit,
            "fit_seed": self.fit_seed,
        }
        write_json(directory / "dsir.json", state)

    @classmethod
    def load(cls, path: str | os.PathLike[str], raw: Any, **expected: Any) -> DSIR:
        """Loads an estimator saved by :meth:`save`, to weigh ``raw``. Feature-space arguments
        given in ``expected`` (``ngrams``, ``buckets``, ``tokenizer``, ``hash``, ``lowercase``)
        must equal the saved ones, else :class:`~tokensieve.exceptions.FeatureSpaceMismatchError`;
        other keyword arguments (``text_field``, ``on_error``, ``num_threads``,
        ``min_example_length``) override the saved settings. A directory that holds no saved
        estimator, or count arrays of another size, raise
        :class:`~tokensieve.exceptions.InvalidArgumentError`."""
        directory = Path(path)
        try:
            state = json.loads((directory / "dsir.json").read_text())
        except (OSError, ValueError) as e:
            raise InvalidArgumentError(f"{directory}: not a saved DSIR estimator ({e})") from e
        if state.get("format") != "tokensieve.dsir" or state.get("version") != STATE_VERSION:
            found = f"format {state.get('format')!r}, version {state.get('version')!r}"
            raise InvalidArgumentError(f"{directory}: unsupported state ({found})")
        space = state["feature_space"]
        mismatched = {k: (v, space[k]) for k, v in expected.items() if k in space and space[k] != v}
        if mismatched:
            detail = ", ".join(f"{k}: asked {a!r}, saved {s!r}" for k, (a, s) in mismatched.items())
            raise FeatureSpaceMismatchError(f"{directory} was fitted in another feature space ({detail})")
        settings = {k: v for k, v in expected.items() if k not in space}
        return cls.from_counts(
            np.load(directory / "raw_counts.npy", allow_pickle=False),
            np.load(directory / "target_counts.npy", allow_pickle=False),
            raw=raw,
            targets=state["targets"],
            **space,
            min_example_length=settings.pop("min_example_length", state["min_example_length"]),
            chunk_words=state.get("chunk_words"),
            target_laplace_smoothing=state["target_laplace_smoothing"],
            target_proportions=state["target_proportions"],
            num_tokens_to_fit=state["num_tokens_to_fit"],
            fit_seed=state["fit_seed"],
            **settings,
        )

    @classmethod
    def from_counts(
        cls,
        raw_counts: npt.ArrayLike,
        target_counts: npt.ArrayLike,
        *,
        raw: Any = None,
        targets: Sequence[str] = ("target",),
        **settings: Any,
    ) -> DSIR:
        """A fitted estimator from bucket counts summed elsewhere (by another engine, on
        several machines): ``raw_counts`` ``[buckets]`` and ``target_counts`` ``[targets,
        buckets]`` (or ``[buckets]`` for one target) of non-negative integers, in the feature
        space that ``settings`` (the constructor's keyword arguments) describe. Counts summed
        over the same documents give the same estimator as :meth:`fit`. ``raw`` is the pool
        to weigh, if any."""
        raw_arr = np.asarray(raw_counts)
        target_arr = np.atleast_2d(np.asarray(target_counts))
        dsir = cls(raw, {name: None for name in targets}, **settings)
        buckets = dsir.featurizer.buckets
        for name, array in (("raw_counts", raw_arr), ("target_counts", target_arr)):
            if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
                raise InvalidArgumentError(f"{name} must hold non-negative integers")
        if raw_arr.shape != (buckets,) or target_arr.shape != (len(dsir.targets), buckets):
            raise InvalidArgumentError(
                f"counts of shapes {raw_arr.shape} and {target_arr.shape} do not match "
                f"{len(dsir.targets)} target(s) of {buckets} buckets"
            )
        dsir.raw_counts = raw_arr.astype(np.int64)
        dsir.target_counts = target_arr.astype(np.int64)
        return dsir


def _mix(value: np.ndarray | np.uint64) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser, elementwise on uint64 (wrapping)."""
    z: npt.NDArray[np.uint64] = np.asarray(value, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _source_positions(
    report: ReadReport, rows: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per document of a read (or per document of ``rows``): the index of its source and its
    position within that source."""
    starts, total = _source_starts(report)
    if rows is None:
        rows = np.arange(total, dtype=np.int64)
    return [src.name for src in report.sources], *_locate(starts, rows)


def _source_starts(report: ReadReport) -> tuple[np.ndarray, int]:
    """The first row of each source of a read, and the read's row count."""
    counts = np.array([_units(src) for src in report.sources], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]), int(counts.sum())


def _locate(starts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The source index and the position within it of each of ``rows``."""
    # The last source starting at or before a row holds it (sources before it in a run of equal
    # starts are empty).
    source_of = np.searchsorted(starts, rows, side="right") - 1
    return source_of, (rows - starts[source_of]).astype(np.uint64)


def _canonical_chunks(report: ReadReport) -> Iterator[tuple[int, int]]:
    """Row ranges ``lo:hi`` of at most :data:`SELECTION_CHUNK` documents covering a read in its
    canonical order: sources by their identity's key (:func:`source_identities`), the documents
    of each in file order, chunks counted from the source's first document."""
    starts, total = _source_starts(report)
    ends = np.append(starts[1:], total)
    for source in np.argsort(_source_keys([src.name for src in report.sources]), kind="stable"):
        for lo in range(int(starts[source]), int(ends[source]), SELECTION_CHUNK):
            yield lo, min(lo + SELECTION_CHUNK, int(ends[source]))


def _document_uniforms(
    report: ReadReport, seed: int, stream: int
) -> Callable[[np.ndarray | None], np.ndarray]:
    """A function giving a uniform number in (0, 1) per document of a read (or per document of
    the rows it is given), a function of ``(seed, stream, source identity, position in the
    source)`` only: thread count, the order of sources and where the corpus lies do not
    matter. (The sources' keys and first rows are computed once, not on every call.)"""
    source_keys = _source_keys([src.name for src in report.sources])
    starts, total = _source_starts(report)

    def uniforms(rows: np.ndarray | None = None) -> np.ndarray:
        source_of, position = _locate(starts, np.arange(total, dtype=np.int64) if rows is None else rows)
        return _keyed_uniforms(source_keys[source_of], position, seed, stream)

    return uniforms


def _keyed_uniforms(source_keys: np.ndarray, position: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """A uniform number in (0, 1) per document given its source's 64-bit key and its position."""
    base = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x9E3779B97F4A7C15))
    base = _mix(base ^ _mix(np.uint64(stream) + np.uint64(0x5851F42D4C957F2D)))
    with np.errstate(over="ignore"):
        z = _mix(_mix(base ^ source_keys) + position * np.uint64(0x9E3779B97F4A7C15))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def gumbel_noise(
    sources: Sequence[str] | npt.ArrayLike, positions: npt.ArrayLike, *, seed: int, target: int = 0
) -> npt.NDArray[np.float64]:
    """The Gumbel noise that ``resample(method="gumbel", seed=seed)`` adds to the log weight of
    each document for target number ``target``, given the documents' identities.

    A document is identified by its source (as :func:`source_identities` names it: a file's
    path relative to the directory holding all the input files, or ``<list>`` / ``<arrow>`` for
    texts in memory) and its position: its 0-based index among the documents of that source
    (skipped records are not documents). Engines that weigh documents elsewhere, such as
    :mod:`tokensieve.integrations.ray`, reproduce the selection of :meth:`DSIR.resample` with it.
    """
    position = np.asarray(positions)
    if position.ndim != 1 or not (position.size == 0 or np.issubdtype(position.dtype, np.integer)):
        raise InvalidArgumentError("positions must be a 1-D integer array")
    if position.size and position.min() < 0:
        raise InvalidArgumentError("positions must be >= 0")
    names, source_of = np.unique(np.asarray(sources, dtype=object), return_inverse=True)
    if len(source_of) != len(position):
        raise InvalidArgumentError(f"{len(source_of)} sources for {len(position)} positions")
    keys = _identity_keys(names.tolist())[source_of]
    return _gumbel(_keyed_uniforms(keys, position.astype(np.uint64), seed, target))


#: Documents whose selection keys are computed at a time (bounds the memory of a selection).
SELECTION_CHUNK = 1 << 16
#: A selection narrows the keys down by histograms of this many bits (65,536 bins).
HISTOGRAM_BITS = 16


def _mark_top_k(
    n: int,
    k: int,
    candidates: Callable[[int, int], np.ndarray],
    key: Callable[[np.ndarray], np.ndarray],
    mark: Callable[[np.ndarray], None],
) -> None:
    """Calls ``mark(rows)`` for the ``k`` rows with the largest ``key(rows)`` among the
    ``candidates(lo, hi)`` of each chunk ``lo:hi`` of rows ``0:n`` (ties to the earlier row),
    ``key`` a pure function of the rows. Memory is O(chunk): not O(n), nor O(k) (a
    selection of a large fraction of a corpus must not cost memory per document). Instead
    the keys are computed again on each pass over the chunks: passes that histogram the keys
    of the band that holds the k-th largest key (at first all keys, by their leading bits),
    until its bin is small enough to keep (or holds one key value), then a pass that marks
    every key above that bin and settles the bin itself."""

    def passes() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, n, SELECTION_CHUNK):
            rows = candidates(lo, min(lo + SELECTION_CHUNK, n))
            yield rows, _ordered_bits(key(rows))

    # The band [low, high] of key bits holds the k-th largest key; keys above it are chosen.
    # (Python ints: the arithmetic on the bounds must not wrap around.)
    low, high = 0, 2**64 - 1
    while True:
        shift = max(0, (high - low).bit_length() - HISTOGRAM_BITS)
        histogram = np.zeros(1 << HISTOGRAM_BITS, dtype=np.int64)
        above = 0
        for _, bits in passes():
            above += int(np.count_nonzero(bits > np.uint64(high)))
            band = bits[(bits >= np.uint64(low)) & (bits <= np.uint64(high))]
            bins = ((band - np.uint64(low)) >> np.uint64(shift)).astype(np.intp)  # < 2**HISTOGRAM_BITS
            histogram += np.bincount(bins, minlength=len(histogram))
        # The bin of the k-th largest key, and how many of its keys are chosen (the best ones).
        from_top = np.cumsum(histogram[::-1])[::-1]
        wanted = k - above
        kth_bin = int(np.flatnonzero(from_top >= wanted)[-1])
        take = wanted - (int(from_top[kth_bin + 1]) if kth_bin + 1 < len(histogram) else 0)
        bin_low = low + (kth_bin << shift)
        bin_high = min(high, bin_low + (1 << shift) - 1)
        if shift == 0 or histogram[kth_bin] <= SELECTION_CHUNK:
            break
        low, high = bin_low, bin_high
    kept_bits, kept_rows = [], []
    for rows, bits in passes():
        mark(rows[bits > np.uint64(bin_high)])
        in_bin = (bits >= np.uint64(bin_low)) & (bits <= np.uint64(bin_high))
        if shift == 0:  # one key value: the earliest rows win
            tied = rows[in_bin][:take]
            take -= len(tied)
            mark(tied)
        else:
            kept_bits.append(bits[in_bin])
            kept_rows.append(rows[in_bin])
    if shift > 0:
        bits, rows = np.concatenate(kept_bits), np.concatenate(kept_rows)
        mark(rows[np.lexsort((rows, ~bits))[:take]])


def _ordered_bits(keys: np.ndarray) -> np.ndarray:
    """float64 keys as uint64 in the same order (equal keys, -0.0 and 0.0 included, equal)."""
    keys = np.asarray(keys, dtype=np.float64)
    if np.isnan(keys).any():
        raise InvalidArgumentError("a selection key is NaN (is a weight NaN?)")
    bits = (keys + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    negative = bits >> np.uint64(63) == 1
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _units(source: SourceReport) -> int:
    """What a source gave to weigh: its chunks when documents were cut, else its documents."""
    return source.chunks or source.documents


def _rereadable(source: Any) -> Any:
    """``source``, or a list of its items if it is a one-shot iterator (e.g. a generator)."""
    if isinstance(source, Iterator):
        return list(source)
    return source


def _gumbel(u: np.ndarray) -> np.ndarray:
    return -np.log(-np.log(u))


def source_identities(names: Sequence[str]) -> list[str]:
    """The identities that key the random numbers of the documents of these sources (one read's
    sources, all of them): each file's path relative to the directory that holds all the input
    files, so that a corpus moved elsewhere keeps its selection; the names themselves unless
    every one is an existing file (``<list>`` / ``<arrow>`` for texts in memory)."""
    names = [os.fspath(name) for name in names]
    if names and all(os.path.isfile(name) for name in names):
        root = os.path.commonpath([os.path.dirname(os.path.abspath(name)) for name in names])
        return [os.path.relpath(os.path.abspath(name), root) for name in names]
    return names


def _source_keys(names: list[str]) -> np.ndarray:
    """A 64-bit key per source of a read (see :func:`source_identities`)."""
    return _identity_keys(source_identities(names))


def _identity_keys(identities: list[str]) -> np.ndarray:
    digests = (hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8] for name in identities)
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.uint64)
