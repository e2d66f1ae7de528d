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

Training. :func:`train_supervised` takes fastText's hyper-parameters (same names, same
defaults) and runs fastText's algorithm in Rust on threads of its own (hogwild, linear
learning-rate decay over a token budget of ``epoch`` passes, the four losses), with every
weight initialised; ``thread=1`` with a ``seed`` is deterministic. :meth:`FastTextModel.save_model`
writes a ``.bin`` that fastText's ``load_model`` reads and predicts with identically::

    model = fasttext.train_supervised("train.txt", wordNgrams=2, epoch=3, thread=1)
    model = fasttext.train_supervised((texts, labels), wordNgrams=2)
    model.save_model("classifier.bin")
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from tokensieve import _core
from tokensieve.exceptions import InvalidArgumentError, ModelFormatError
from tokensieve.io import Files, OnError, PathLike, ReadReport, corpus_files, is_file_source
from tokensieve.output import file_sha256
from tokensieve.progress import progress_bar

__all__ = ["PRESETS", "BatchPrediction", "FastTextModel", "load_model", "train_supervised"]

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
        input_matrix: the file's input matrix in memory that processes share (a read-only
            float32 array such as ``ray.get`` returns for :meth:`get_input_matrix` put in Ray's
            object store): the model uses it instead of a copy of its own, so that processes on
            one machine hold the largest part of a model once. The file's matrix is still read
            and must equal it bit for bit (else :class:`~tokensieve.exceptions.ModelFormatError`).

    The model pickles as its path and the file's SHA-256 (no weights): an unpickled model reads
    the file on first use, in the process that uses it (a worker), and raises
    :class:`~tokensieve.exceptions.ModelFormatError` if the file there is not the one pickled.
    Equal models pickle to equal bytes, so ``datasets`` fingerprints them stably. A model from
    :func:`train_supervised` has no path until :meth:`save_model`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        input_matrix: npt.NDArray[np.float32] | None = None,
    ) -> None:
        self._setup(os.fspath(path), num_threads, sha256=None)
        if input_matrix is not None:
            self._use_input_matrix(input_matrix)
        self._read()

    @classmethod
    def _from_core(cls, core: _core.FastTextModel, num_threads: int | None) -> FastTextModel:
        model = cls.__new__(cls)
        model._setup(None, num_threads, sha256=None)
        model._handle = core
        return model

    def _setup(self, path: str | None, num_threads: int | None, sha256: str | None) -> None:
        self.path: str | None = path
        """The file the model was read from or last saved to (``None``: trained, not saved)."""
        self.num_threads = num_threads
        self._sha256 = sha256
        self._handle: _core.FastTextModel | None = None
        #: (size, mtime) of the file when it was read, to notice it changing before it is hashed.
        self._stat: tuple[int, int] | None = None
        self._label_entries: tuple[tuple[bytes, ...], np.ndarray] | None = None
        self._shared_input: npt.NDArray[np.float32] | None = None

    def _use_input_matrix(self, matrix: npt.NDArray[np.float32]) -> None:
        """Reads the model sharing ``matrix`` (see the class) when it is next used."""
        if self.path is None:
            raise InvalidArgumentError("a trained model has no file yet: call save_model(path) first")
        if not isinstance(matrix, np.ndarray) or matrix.dtype != np.float32 or matrix.ndim != 2:
            detail = (
                f"a {matrix.dtype} array of {matrix.ndim} dimensions"
                if isinstance(matrix, np.ndarray)
                else type(matrix).__name__
            )
            raise InvalidArgumentError(f"input_matrix must be a 2-D float32 array, got {detail}")
        if matrix.flags.writeable or not matrix.flags.c_contiguous:
            raise InvalidArgumentError(
                "input_matrix must be read-only and C-contiguous (as ray.get returns it, or with "
                "flags.writeable = False): the model reads it from several threads"
            )
        self._shared_input = matrix
        self._handle = None

    def _read(self) -> _core.FastTextModel:
        assert self.path is not None
        handle = _core.FastTextModel(self.path, shared_input=self._shared_input)
        shared = self._shared_input
        own = None if shared is None else handle.input_matrix()  # None only for quantised models
        if shared is not None and own is not None and own.shape != shared.shape:
            # the same floats in another shape (the core compares them in order)
            raise ModelFormatError(
                f"input_matrix has shape {shared.shape}, the file's input matrix {own.shape}", self.path
            )
        self._stat = _stat(self.path)
        if self._sha256 is not None and file_sha256(self.path) != self._sha256:
            raise ModelFormatError(f"{self.path} is not the file the model was pickled from", self.path)
        self._handle = handle
        return handle

    @property
    def _native(self) -> _core.FastTextModel:
        """The compiled model, read from :attr:`path` on first use after unpickling."""
        return self._handle if self._handle is not None else self._read()

    @property
    def sha256(self) -> str:
        """The SHA-256 of :attr:`path` (hashed once, on first use)."""
        if self.path is None:
            raise InvalidArgumentError("a trained model has no file yet: call save_model(path) first")
        if self._sha256 is None:
            if self._stat is not None and _stat(self.path) != self._stat:
                raise ModelFormatError(f"{self.path} changed after the model was read", self.path)
            self._sha256 = file_sha256(self.path)
        return self._sha256

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names (with their prefix), in the model's order."""
        return tuple(b.decode("utf-8", "replace") for b in self._labels_and_counts()[0])

    def _labels_and_counts(self) -> tuple[tuple[bytes, ...], np.ndarray]:
        if self._label_entries is None:
            raw, counts = self._native.entries(labels=True)
            self._label_entries = tuple(raw), counts
        return self._label_entries

    def __repr__(self) -> str:
        args = self.args
        return (
            f"FastTextModel({self.path!r}, loss={args['loss']}, dim={args['dim']}, "
            f"wordNgrams={args['wordNgrams']}, labels={len(self.labels)})"
        )

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            raise TypeError("a trained model pickles as its file: call save_model(path) first")
        return {"path": self.path, "sha256": self.sha256, "num_threads": self.num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["path"], state["num_threads"], sha256=state["sha256"])

    @property
    def args(self) -> dict[str, Any]:
        """The arguments stored in the file (``dim``, ``wordNgrams``, ``loss`` as a name, ``bucket``,
        ``minn``, ``maxn``, ...) and the format ``version``."""
        return self._native.args()

    def save_model(self, path: str | os.PathLike[str]) -> None:
        """Writes the model in fastText's format (version 12): fastText's ``load_model`` reads it
        and predicts exactly as this model does. A model without a path takes this one."""
        self._native.save(os.fspath(path))
        if self.path is None:
            self.path = os.fspath(path)
            self._stat = _stat(self.path)

    # fastText's accessors -------------------------------------------------------------------

    def get_input_matrix(self) -> npt.NDArray[np.float32]:
        """The input matrix, ``[words + buckets, dim]``: a read-only view of the model's memory
        (fastText returns a copy). Raises for a quantised model, as fastText does."""
        matrix = self._native.input_matrix()
        if matrix is None:
            raise InvalidArgumentError("a quantised model has no dense input matrix")
        return matrix

    def get_dimension(self) -> int:
        """The dimension of the word and sentence vectors."""
        return self._native.dim

    def is_quantized(self) -> bool:
        """Whether the input matrix is product-quantised (a ``.ftz`` model)."""
        return self._native.quantized

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
        raw, counts = self._labels_and_counts()
        labels = [b.decode("utf-8", on_unicode_error) for b in raw]
        return (labels, counts.copy()) if include_freq else labels

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
        raw, counts = self._native.entries(labels=False)
        words = [b.decode("utf-8", on_unicode_error) for b in raw]
        return (words, counts) if include_freq else words

    def get_word_vector(self, word: str) -> npt.NDArray[np.float32]:
        """fastText's word vector: the average of the word's row and its character n-gram rows
        (an unknown word: of its n-grams; zeros if it has none)."""
        return self._native.word_vector(word)

    def get_sentence_vector(
        self, text: str, *, newline: NewlinePolicy = "error", strip: bool = False
    ) -> npt.NDArray[np.float32]:
        """fastText's sentence vector of a supervised model: the average of the text's feature
        rows (its words, n-grams and ``</s>``), which is the classifier's hidden layer."""
        return self._native.sentence_vector(text, newline=newline, strip=strip)

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
            ids, probs = self._native.predict_batch(
                [text], k=k, threshold=threshold, newline=newline, strip=strip, num_threads=1
            )
            n = int(np.count_nonzero(ids[0] >= 0))
            return tuple(names[i] for i in ids[0, :n]), probs[0, :n].astype(np.float64)
        ids, probs = self._native.predict_batch(
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
        ids, probs = self._native.predict_batch(
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
        progress: bool = ...,
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
        progress: bool = ...,
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
        progress: bool = False,
    ) -> npt.NDArray[np.float32] | tuple[npt.NDArray[np.float32], ReadReport]:
        """The probability of ``label`` for every document of ``source`` (texts in memory, or
        corpus files streamed in bounded memory; see :mod:`tokensieve.io`), as fastText's
        ``predict(text, k=-1)`` reports it, which is what datatrove stores and filters on:
        a float32 array, one value per document (skipped records have none; NaN for a text
        without any feature). ``label`` may omit the ``__label__`` prefix.

        For hs models the value is the label's path probability even where fastText's search
        would drop the label (below 1e-5). ``progress=True`` draws a progress bar on stderr
        while files are read.
        """
        label_id = self._label_id(label)
        if is_file_source(source):
            paths = corpus_files(source)
            with progress_bar("score", paths, progress) as bar:
                scores, raw = self._native.score_files(
                    paths,
                    label=label_id,
                    newline=newline,
                    strip=strip,
                    text_field=text_field,
                    on_error=on_error,
                    num_threads=self.num_threads,
                    progress=bar,
                )
        else:
            scores, raw = self._native.score_texts(
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
            found = self._native.label_id(name)
            if found is not None:
                return found
        raise InvalidArgumentError(f"unknown label {label!r}; the model's labels are {list(self.labels)}")

    def _decoded_labels(self, errors: str) -> tuple[str, ...]:
        if errors == "replace":
            return self.labels
        return tuple(b.decode("utf-8", errors) for b in self._labels_and_counts()[0])


def _stat(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _training_text(
    texts: Iterable[str], labels: Iterable[str | Sequence[str]], prefix: str, newline: str
) -> bytes:
    """fastText's training format: one line per text, its labels (prefixed) first."""
    lines = []
    n_texts = 0
    for n_texts, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        names = [label] if isinstance(label, str) else list(label)
        if not names:
            raise InvalidArgumentError(f"text {n_texts - 1} has no label")
        for name in names:
            if not isinstance(name, str) or not name or any(c in name for c in " \n\r\t\v\f\0"):
                raise InvalidArgumentError(
                    f"label {name!r} of text {n_texts - 1} is empty or holds whitespace"
                )
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text {n_texts - 1} is a {type(text).__name__}, not a str")
        tags = " ".join(name if name.startswith(prefix) else prefix + name for name in names)
        lines.append(f"{tags} {text.replace(chr(10), newline)}\n")
    if n_texts == 0:
        raise InvalidArgumentError("no training texts")
    return "".join(lines).encode("utf-8", "surrogatepass")


class _TrainingBar:
    """``train  42.0%  lr 0.058  loss 0.412  1.23 M tokens/s`` on stderr, every 0.2 s."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._last = float("-inf")
        self._line = ""

    def __call__(self, fraction: float, lr: float, loss: float, tokens: int) -> None:
        now = time.perf_counter()
        rate = tokens / max(now - self._start, 1e-9) / 1e6
        self._line = f"train {100 * fraction:6.1f}%  lr {lr:.6f}  loss {loss:.6f}  {rate:6.2f} M tokens/s"
        if now - self._last >= 0.2:
            self._last = now
            sys.stderr.write("\r" + self._line)
            sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + self._line + "\n")
        sys.stderr.flush()


def train_supervised(
    input: PathLike | tuple[Iterable[str], Iterable[str | Sequence[str]]],
    lr: float = 0.1,
    dim: int = 100,
    ws: int = 5,
    epoch: int = 5,
    minCount: int = 1,  # noqa: N803 (fastText's names)
    minCountLabel: int = 0,  # noqa: N803
    minn: int = 0,
    maxn: int = 0,
    neg: int = 5,
    wordNgrams: int = 1,  # noqa: N803
    loss: Literal["softmax", "hs", "ns", "ova"] = "softmax",
    bucket: int = 2_000_000,
    thread: int | None = None,
    lrUpdateRate: int = 100,  # noqa: N803
    t: float = 1e-4,
    label: str = LABEL_PREFIX,
    verbose: int = 2,
    pretrainedVectors: str = "",  # noqa: N803
    seed: int = 0,
    autotuneValidationFile: str = "",  # noqa: N803
    *,
    newline: str = " ",
    progress: bool = False,
    num_threads: int | None = None,
) -> FastTextModel:
    """Trains a supervised classifier with fastText's algorithm: fastText's
    ``train_supervised``, with its hyper-parameter names and defaults.

    Args:
        input: a training file in fastText's format (one example per line, its labels first:
            ``__label__a some text``), or ``(texts, labels)``: each label a ``str`` or a list
            of them (multi-label), with or without the ``label`` prefix. In-memory texts become
            one line each, their newlines replaced by ``newline``.
        thread: training threads (hogwild: several threads give a slightly different model at
            every run). ``None`` is fastText's default, ``os.cpu_count() - 1``. With
            ``thread=1`` training is deterministic for a given ``seed``.
        bucket: forced to 0 without word or character n-grams, as fastText does.
        verbose: accepted for compatibility; ``progress=True`` shows a progress line on stderr.
        num_threads: threads of the returned model's batch predictions.

    Unlike fastText, every weight of the input matrix is initialised (fastText leaves all but
    ``min(thread, 10)`` tenths of it as whatever memory it got, which can give NaN), and the
    training file is read into memory. ``pretrainedVectors`` and autotuning are not supported.
    """
    del verbose
    if pretrainedVectors:
        raise InvalidArgumentError("pretrainedVectors is not supported: train without it")
    if autotuneValidationFile:
        raise InvalidArgumentError("autotuning is not supported: give the hyper-parameters")
    if thread is None:
        thread = max(1, (os.cpu_count() or 2) - 1)
    if isinstance(input, tuple):
        texts, labels = input
        source: dict[str, Any] = {"data": _training_text(texts, labels, label, newline)}
    elif isinstance(input, (str, os.PathLike)):
        source = {"path": os.fspath(input)}
    else:
        raise InvalidArgumentError(
            f"input must be a training file or a (texts, labels) tuple, got {type(input).__name__}"
        )
    bar = _TrainingBar() if progress else None
    try:
        core = _core.train_supervised(
            **source,
            lr=lr,
            dim=dim,
            ws=ws,
            epoch=epoch,
            min_count=minCount,
            min_count_label=minCountLabel,
            minn=minn,
            maxn=maxn,
            neg=neg,
            word_ngrams=wordNgrams,
            loss=loss,
            bucket=bucket,
            thread=thread,
            lr_update_rate=lrUpdateRate,
            t=t,
            label=label,
            seed=seed,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    return FastTextModel._from_core(core, num_threads)
