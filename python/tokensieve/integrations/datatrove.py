"""datatrove pipeline steps: filters on a fastText classifier's score and on DSIR weights, and a
step that adds any batch function's columns to the documents' metadata.

Needs ``datatrove`` (``pip install 'tokensieve[datatrove]'``)::

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from tokensieve.integrations.datatrove import FastTextFilter

    LocalPipelineExecutor(
        pipeline=[JsonlReader("in/"), FastTextFilter("hq.bin", "hq", 0.5), JsonlWriter("out/")],
        tasks=4, workers=2, logging_dir="logs/",
    ).run()

Models and estimators are read lazily, on first use inside the worker, and never pickled; each
batch of documents is one compiled call (``num_threads`` threads, 1 by default since datatrove
runs a process per task).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.writers.disk_base import DiskWriter
    from datatrove.utils.batching import batched
    from datatrove.utils.typeshelper import StatHints
except ImportError as error:  # pragma: no cover - exercised only without datatrove
    raise ImportError(
        "tokensieve.integrations.datatrove needs datatrove: pip install 'tokensieve[datatrove]'"
    ) from error

from tokensieve.dsir import DSIR
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.integrations.batch import BatchFunction, DSIRWeights, FastTextScores

__all__ = ["Annotate", "DSIRFilter", "FastTextFilter"]

FilterResult = bool | tuple[bool, str]


def _annotate(fn: BatchFunction, docs: list[Document]) -> dict[str, list[Any]]:
    """Computes ``fn``'s columns for a batch of documents (one compiled call) and stores each
    document's values in its metadata; returns the columns."""
    computed = fn.compute([doc.text for doc in docs])
    columns = {name: values.to_pylist() for name, values in computed.columns.items()}
    for i, doc in enumerate(docs):
        for name, values in columns.items():
            doc.metadata[name] = values[i]
    return columns


class _LazyFilter(BaseFilter):
    """A filter whose batch function is built on first use, in the worker."""

    def __init__(self, batch_size: int, exclusion_writer: DiskWriter | None) -> None:
        super().__init__(exclusion_writer, batch_size=batch_size)
        self._fn: BatchFunction | None = None

    @abstractmethod
    def _build(self) -> BatchFunction:
        """The batch function (reads the model or estimator)."""

    @property
    def fn(self) -> BatchFunction:
        if self._fn is None:
            self._fn = self._build()
        return self._fn

    def filter(self, doc: Document) -> FilterResult:
        return self.filter_batch([doc])[0]


class FastTextFilter(_LazyFilter):
    """Keeps documents whose probability of ``label`` under a fastText classifier is at least
    ``threshold``; drops the others as ``low_score``. The score (a float, NaN for a text
    without features) goes to ``doc.metadata[metadata_key]``. ``preset`` is the newline
    handling (:data:`tokensieve.fasttext.PRESETS`; ``"datatrove"`` is what datatrove's own
    fastText filter does)."""

    name = "🔢 tokensieve fastText"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        label: str,
        threshold: float,
        *,
        preset: str = "datatrove",
        metadata_key: str = "tokensieve_score",
        batch_size: int = 512,
        num_threads: int | None = 1,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        super().__init__(batch_size, exclusion_writer)
        self.model_path = os.fspath(model_path)
        self.label = label
        self.threshold = threshold
        self.preset = preset
        self.metadata_key = metadata_key
        self.num_threads = num_threads

    @classmethod
    def from_scores(
        cls,
        scores: FastTextScores,
        threshold: float,
        *,
        batch_size: int = 512,
        exclusion_writer: DiskWriter | None = None,
    ) -> FastTextFilter:
        """The filter on ``scores``' probabilities (its model, label, preset, threads, and its
        column as the metadata key), e.g. a function whose model the workers share on the
        machine::

            with share_arrays_on_machine(FastTextScores("hq.bin", "hq", preset="datatrove")) as fn:
                LocalPipelineExecutor(pipeline=[reader, FastTextFilter.from_scores(fn, 0.5), writer],
                                      tasks=8, workers=8).run()
        """
        if scores.model.path is None:
            raise InvalidArgumentError("a trained model has no file yet: call save_model(path) first")
        step = cls(
            scores.model.path,
            scores.label,
            threshold,
            preset=scores.preset,
            metadata_key=scores.column,
            batch_size=batch_size,
            num_threads=scores.num_threads,
            exclusion_writer=exclusion_writer,
        )
        step._fn = scores
        return step

    def _build(self) -> BatchFunction:
        return FastTextScores(
            self.model_path,
            self.label,
            preset=self.preset,
            column=self.metadata_key,
            num_threads=self.num_threads,
        )

    def filter_batch(self, batch: list[Document]) -> list[FilterResult]:
        scores = _annotate(self.fn, batch)[self.metadata_key]
        return [True if s is not None and s >= self.threshold else (False, "low_score") for s in scores]


class DSIRFilter(_LazyFilter):
    """Keeps documents whose DSIR log importance weight (per token with ``normalize=True``) is
    at least ``threshold`` and that have at least the estimator's ``min_example_length``
    tokens; drops the others as ``low_dsir_weight`` or ``too_short``. A streaming pipeline
    cannot take a global top-k: take the threshold from a selection made elsewhere (the
    cutoff of :func:`tokensieve.integrations.ray.select_dsir`, a quantile of
    :meth:`DSIR.weights <tokensieve.dsir.DSIR.weights>`).

    ``estimator``: a fitted :class:`~tokensieve.dsir.DSIR`, or the directory it was saved to
    (read in the worker). ``target`` names the target whose weight is used when the estimator
    has several. The weight and the token count go to ``doc.metadata["dsir_log_weight"]``
    and ``doc.metadata["dsir_tokens"]`` (a list of weights, one per target, with several).
    """

    name = "🔢 tokensieve DSIR"

    def __init__(
        self,
        estimator: DSIR | str | os.PathLike[str],
        threshold: float,
        *,
        target: str | None = None,
        normalize: bool = False,
        batch_size: int = 512,
        num_threads: int | None = 1,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        super().__init__(batch_size, exclusion_writer)
        #: The saved estimator's directory, read in the worker (``None``: given fitted).
        self.estimator_dir = None if isinstance(estimator, DSIR) else os.fspath(estimator)
        self.threshold = threshold
        self.target = target
        self.normalize = normalize
        self.num_threads = num_threads
        self.min_example_length: int | None = None
        if isinstance(estimator, DSIR):
            # Only its arrays are kept (and pickled), not the pool it was fitted on.
            self._fn = self._weights(estimator)

    def _build(self) -> BatchFunction:
        assert self.estimator_dir is not None
        return self._weights(DSIR.load(self.estimator_dir, None))

    def _weights(self, dsir: DSIR) -> DSIRWeights:
        targets = list(dsir.targets)
        if self.target is None and len(targets) > 1:
            raise InvalidArgumentError(f"the estimator has targets {targets}: name one with target=")
        if self.target is not None and self.target not in targets:
            raise InvalidArgumentError(f"no target {self.target!r} in the estimator (its targets: {targets})")
        self.min_example_length = dsir.min_example_length
        return DSIRWeights(dsir, num_threads=self.num_threads)

    def filter_batch(self, batch: list[Document]) -> list[FilterResult]:
        fn = self.fn
        assert isinstance(fn, DSIRWeights) and self.min_example_length is not None
        columns = _annotate(fn, batch)
        index = fn.targets.index(self.target) if self.target is not None else 0
        results: list[FilterResult] = []
        for weight, tokens in zip(columns[fn.column], columns[fn.tokens_column], strict=True):
            if weight is None:
                results.append((False, "not_a_document"))
                continue
            if tokens < self.min_example_length:
                results.append((False, "too_short"))
                continue
            w = weight[index] if isinstance(weight, list) else weight
            if self.normalize:
                w = w / max(tokens, 1)
            results.append(True if w >= self.threshold else (False, "low_dsir_weight"))
        return results


class Annotate(PipelineStep):
    """Adds the columns of a batch function to every document's metadata (one compiled call per
    ``batch_size`` documents), dropping none: e.g. ``Annotate(FastTextScores("hq.bin", "hq"))``,
    ``Annotate(DSIRWeights(dsir))`` or, for a causal LM's per-document statistics,
    ``Annotate(TokenScores("lm-dir/", device="cpu", num_threads=1))``. The function pickles as
    its saved state and builds its compiled objects (loads the model) in the worker, on the
    first batch of each task."""

    name = "🔢 tokensieve annotate"
    type = "📊 - ANNOTATE"

    def __init__(self, fn: BatchFunction, *, batch_size: int = 512) -> None:
        super().__init__()
        self.fn = fn
        self.batch_size = batch_size

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for docs in batched(data, self.batch_size):
            with self.track_time("batch"):
                _annotate(self.fn, docs)
            for doc in docs:
                self.stat_update(StatHints.total)
                self.update_doc_stats(doc)
                yield doc
