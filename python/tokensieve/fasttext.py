"""fastText supervised classifiers without the ``fasttext`` package.

:func:`load_model` reads a ``.bin`` or quantised ``.ftz`` model written by fastText (format
versions 11 and 12; losses softmax, hs, ova and ns; word and character n-grams; pruned
dictionaries). Its :meth:`~FastTextModel.predict` is a drop-in for fastText 0.9.3's: the same
labels, bit-identical float32 probabilities (including fastText's unclipped ``p + 1e-5``, so
values up to 1.00001 occur) and the same return shapes, but it works with numpy 2, releases
the GIL and runs on several threads.

Newlines. fastText predicts one line at a time and raises on ``"\\n"``. The pipelines that use
its classifiers each deal with newlines their own way, which changes the scores; ``newline=``
and ``strip=`` name these policies, and :data:`PRESETS` bundles them:

================  =============================================  ==============================
preset            text fastText sees                             used by
================  =============================================  ==============================
``"fasttext"``    the text; ``"\\n"`` raises                      fastText's ``predict``
``"dclm"``        ``" ".join(text.strip().splitlines())``        DCLM's quality classifier
``"datatrove"``   ``text.strip().replace("\\n", "")``             datatrove's classifier filter,
                                                                 PreSelect's filtering
``"space"``       ``text.replace("\\n", " ")``                    PreSelect's training data,
                                                                 datatrove's language id
================  =============================================  ==============================

``newline`` is ``"error"``, ``" "`` (a newline becomes a space), ``""`` (it is deleted) or
``"splitlines"`` (Python's ``splitlines``, which also breaks at U+001C..U+001E, U+0085,
U+2028 and U+2029, after ``strip``). ``strip=True`` applies ``str.strip()`` first.

Example::

    from tokensieve import fasttext

    model = fasttext.load_model("classifier.bin")
    labels, probs = model.predict("some text", k=2)
    hq = model.score(texts, label="__label__hq", **fasttext.PRESETS["dclm"])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from tokensieve import _core
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.io import Files, OnError, PathLike, ReadReport, corpus_files, is_file_source

__all__ = ["PRESETS", "BatchPrediction", "FastTextModel", "load_model"]

NewlinePolicy = Literal["error", " ", "", "splitlines"]
UnicodeErrors = Literal["strict", "replace", "ignore", "backslashreplace", "surrogateescape"]

#: Preprocessing presets (keyword arguments for ``predict``, ``predict_batch`` and ``score``).
PRESETS: dict[str, dict[str, Any]] = {
    "fasttext": {"newline": "error", "strip": False},
    "dclm": {"newline": "splitlines", "strip": True},
    "datatrove": {"newline": "", "strip": True},
    "space": {"newline": " ", "strip": False},
}

LABEL_PREFIX = "__label__"


class BatchPrediction(NamedTuple):
    """Top-k predictions of many documents.

    ``label_ids[i, j]`` indexes ``labels`` (-1 where document i has fewer than j + 1
    predictions: a threshold, or a text without features) and ``probs[i, j]`` is its float32
    probability (0 where there is none). Rows are sorted by decreasing probability.
    """

    labels: tuple[str, ...]
    label_ids: npt.NDArray[np.int32]
    probs: npt.NDArray[np.float32]


def load_model(path: str | os.PathLike[str], *, num_threads: int | None = None) -> FastTextModel:
    """Reads a fastText supervised model (``.bin`` or ``.ftz``).

    Raises :class:`~tokensieve.exceptions.ModelFormatError` for a file that is not a
    supervised fastText model or is truncated, oversized or inconsistent, and
    :class:`~tokensieve.exceptions.CorpusNotFoundError` (a ``FileNotFoundError``) if it is
    missing.
    """
    return FastTextModel(path, num_threads=num_threads)


class FastTextModel:
    """A supervised fastText model.

    Args:
        path: the ``.bin`` / ``.ftz`` file.
        num_threads: threads of batch calls; ``None`` reads ``TOKENSIEVE_NUM_THREADS``, else
            uses every CPU. Results do not depend on it.

    The model pickles as its path (the file is read again on unpickling).
    """

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int | None = None) -> None:
        self._core = _core.FastTextModel(os.fspath(path))
        self.path = os.fspath(path)
        self.num_threads = num_threads
        raw_labels, self._label_counts = self._core.entries(labels=True)
        self._raw_labels = tuple(raw_labels)
        self.labels: tuple[str, ...] = tuple(b.decode("utf-8", "replace") for b in raw_labels)
        """The label names (with their prefix), in the model's order."""

    def __repr__(self) -> str:
        args = self.args
        return (
            f"FastTextModel({self.path!r}, loss={args['loss']}, dim={args['dim']}, "
            f"wordNgrams={args['wordNgrams']}, labels={len(self.labels)})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "num_threads": self.num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], num_threads=state["num_threads"])  # type: ignore[misc]

    @property
    def args(self) -> dict[str, Any]:
        """The arguments stored in the file (``dim``, ``wordNgrams``, ``loss`` as a name, ``bucket``,
        ``minn``, ``maxn``, ...) and the format ``version``."""
        return self._core.args()

    # fastText's accessors -------------------------------------------------------------------

    def get_dimension(self) -> int:
        """The dimension of the word and sentence vectors."""
        return self._core.dim

    def is_quantized(self) -> bool:
        """Whether the input matrix is product-quantised (a ``.ftz`` model)."""
        return self._core.quantized

    @overload
    def get_labels(
        self, include_freq: Literal[False] = ..., on_unicode_error: UnicodeErrors = ...
    ) -> list[str]: ...
    @overload
    def get_labels(
        self, include_freq: Literal[True], on_unicode_error: UnicodeErrors = ...
    ) -> tuple[list[str], npt.NDArray[np.int64]]: ...
    def get_labels(
        self, include_freq: bool = False, on_unicode_error: UnicodeErrors = "strict"
    ) -> list[str] | tuple[list[str], npt.NDArray[np.int64]]:
        """The labels, as fastText's ``get_labels`` (with their training counts if asked)."""
        labels = [b.decode("utf-8", on_unicode_error) for b in self._raw_labels]
        return (labels, self._label_counts.copy()) if include_freq else labels

    @overload
    def get_words(
        self, include_freq: Literal[False] = ..., on_unicode_error: UnicodeErrors = ...
    ) -> list[str]: ...
    @overload
    def get_words(
        self, include_freq: Literal[True], on_unicode_error: UnicodeErrors = ...
    ) -> tuple[list[str], npt.NDArray[np.int64]]: ...
    def get_words(
        self, include_freq: bool = False, on_unicode_error: UnicodeErrors = "strict"
    ) -> list[str] | tuple[list[str], npt.NDArray[np.int64]]:
        """The vocabulary, as fastText's ``get_words`` (with counts if asked)."""
        raw, counts = self._core.entries(labels=False)
        words = [b.decode("utf-8", on_unicode_error) for b in raw]
        return (words, counts) if include_freq else words

    def get_word_vector(self, word: str) -> npt.NDArray[np.float32]:
        """fastText's word vector: the average of the word's row and its character n-gram rows
        (an unknown word: of its n-grams; zeros if it has none)."""
        return self._core.word_vector(word)

    def get_sentence_vector(
        self, text: str, *, newline: NewlinePolicy = "error", strip: bool = False
    ) -> npt.NDArray[np.float32]:
        """fastText's sentence vector of a supervised model: the average of the text's feature
        rows (its words, n-grams and ``</s>``), which is the classifier's hidden layer."""
        return self._core.sentence_vector(text, newline=newline, strip=strip)

    # predictions ----------------------------------------------------------------------------

    @overload
    def predict(
        self,
        text: str,
        k: int = ...,
        threshold: float = ...,
        on_unicode_error: UnicodeErrors = ...,
        *,
        newline: NewlinePolicy = ...,
        strip: bool = ...,
    ) -> tuple[tuple[str, ...], npt.NDArray[np.float64]]: ...
    @overload
    def predict(
        self,
        text: list[str],
        k: int = ...,
        threshold: float = ...,
        on_unicode_error: UnicodeErrors = ...,
        *,
        newline: NewlinePolicy = ...,
        strip: bool = ...,
    ) -> tuple[list[list[str]], list[npt.NDArray[np.float32]]]: ...
    def predict(
        self,
        text: str | list[str],
        k: int = 1,
        threshold: float = 0.0,
        on_unicode_error: UnicodeErrors = "strict",
        *,
        newline: NewlinePolicy = "error",
        strip: bool = False,
    ) -> (
        tuple[tuple[str, ...], npt.NDArray[np.float64]]
        | tuple[list[list[str]], list[npt.NDArray[np.float32]]]
    ):
        """fastText's ``predict``: the top ``k`` labels (``k=-1``: all) whose probability is at
        least ``threshold``, best first.

        For one ``str`` it returns ``(labels, probs)``: a tuple of label names and a float64
        array (fastText's shapes). For a list it returns ``(list of label lists, list of float32
        arrays)``. Probabilities are bit-identical to fastText 0.9.3's. A ``"\\n"`` raises
        :class:`~tokensieve.exceptions.InvalidArgumentError` (a ``ValueError``) unless ``newline``
        says otherwise (see the module documentation and :data:`PRESETS`).
        """
        names = self._decoded_labels(on_unicode_error)
        if isinstance(text, str):
            ids, probs = self._core.predict_batch(
                [text], k=k, threshold=threshold, newline=newline, strip=strip, num_threads=1
            )
            n = int(np.count_nonzero(ids[0] >= 0))
            return tuple(names[i] for i in ids[0, :n]), probs[0, :n].astype(np.float64)
        ids, probs = self._core.predict_batch(
            text, k=k, threshold=threshold, newline=newline, strip=strip, num_threads=self.num_threads
        )
        counts = np.count_nonzero(ids >= 0, axis=1).tolist()
        id_rows = ids.tolist()
        all_labels = [[names[i] for i in row[:n]] for row, n in zip(id_rows, counts, strict=True)]
        all_probs = [probs[i, :n].copy() for i, n in enumerate(counts)]
        return all_labels, all_probs

    def predict_batch(
        self,
        texts: Iterable[str] | Any,
        k: int = 1,
        threshold: float = 0.0,
        *,
        newline: NewlinePolicy = "error",
        strip: bool = False,
    ) -> BatchPrediction:
        """Top-k predictions of many texts (a list of ``str`` or an Arrow string array) as numpy
        arrays: see :class:`BatchPrediction`. Width ``min(k, len(labels))`` (``k=-1``: all labels).
        Runs on the model's threads with the GIL released; a non-string item raises
        :class:`~tokensieve.exceptions.BadRecordError`."""
        if isinstance(texts, str):
            raise InvalidArgumentError("predict_batch takes a list of texts; use predict() for one str")
        ids, probs = self._core.predict_batch(
            texts, k=k, threshold=threshold, newline=newline, strip=strip, num_threads=self.num_threads
        )
        return BatchPrediction(self.labels, ids, probs)

    @overload
    def score(
        self,
        source: Any,
        label: str,
        *,
        newline: NewlinePolicy = ...,
        strip: bool = ...,
        text_field: str = ...,
        on_error: OnError = ...,
        return_report: Literal[False] = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    def score(
        self,
        source: Any,
        label: str,
        *,
        newline: NewlinePolicy = ...,
        strip: bool = ...,
        text_field: str = ...,
        on_error: OnError = ...,
        return_report: Literal[True],
    ) -> tuple[npt.NDArray[np.float32], ReadReport]: ...
    def score(
        self,
        source: Iterable[str] | PathLike | Sequence[PathLike] | Files | Any,
        label: str,
        *,
        newline: NewlinePolicy = "error",
        strip: bool = False,
        text_field: str = "text",
        on_error: OnError = "skip",
        return_report: bool = False,
    ) -> npt.NDArray[np.float32] | tuple[npt.NDArray[np.float32], ReadReport]:
        """The probability of ``label`` for every document of ``source`` (texts in memory, or
        corpus files streamed in bounded memory; see :mod:`tokensieve.io`), as fastText's
        ``predict(text, k=-1)`` reports it, which is what datatrove stores and filters on:
        a float32 array, one value per document (skipped records have none; NaN for a text
        without any feature). ``label`` may omit the ``__label__`` prefix.

        For hs models the value is the label's path probability even where fastText's search
        would drop the label (below 1e-5).
        """
        label_id = self._label_id(label)
        if is_file_source(source):
            scores, raw = self._core.score_files(
                corpus_files(source),
                label=label_id,
                newline=newline,
                strip=strip,
                text_field=text_field,
                on_error=on_error,
                num_threads=self.num_threads,
            )
        else:
            scores, raw = self._core.score_texts(
                source,
                label=label_id,
                newline=newline,
                strip=strip,
                on_error=on_error,
                num_threads=self.num_threads,
            )
        report = ReadReport._from_core(raw)
        report.log_skips()
        return (scores, report) if return_report else scores

    def _label_id(self, label: str) -> int:
        for name in (label, LABEL_PREFIX + label):
            found = self._core.label_id(name)
            if found is not None:
                return found
        raise InvalidArgumentError(f"unknown label {label!r}; the model's labels are {list(self.labels)}")

    def _decoded_labels(self, errors: str) -> tuple[str, ...]:
        if errors == "replace":
            return self.labels
        return tuple(b.decode("utf-8", errors) for b in self._raw_labels)
