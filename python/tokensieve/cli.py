"""The ``tokensieve`` command line.

``tokensieve demo`` runs DSIR on the bundled sample; ``tokensieve dsir`` selects from corpus
files towards a target; ``tokensieve featurize`` counts hashed n-grams over corpus files and can
save the totals as ``.npy``; ``tokensieve classify`` scores corpus files with a fastText
classifier and keeps the best documents; ``tokensieve train-classifier`` trains one;
``tokensieve select`` applies a selection method to per-document score tables (Parquet);
``tokensieve score`` writes per-document language-model statistics to Parquet and
``tokensieve plot`` draws the histogram of one of them with a selection threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tokensieve import __version__, resolve_num_threads
from tokensieve.dsir import DSIR
from tokensieve.exceptions import (
    CorpusFormatError,
    CorpusNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    TokensieveError,
)
from tokensieve.features import HashedNgrams
from tokensieve.io import Files, ReadReport, corpus_files
from tokensieve.output import (
    file_sha256,
    files_sha256_in_background,
    manifest_header,
    prepare_output_dir,
    remove_stale_shards,
    shard_entries,
    skipped_lines,
    skipped_record_entries,
    write_atomic,
    write_json,
    write_npy,
)

__all__ = ["main"]


def demo_files() -> dict[str, Path]:
    """Paths of the bundled demo sample: ``raw`` and ``target`` (see data/ATTRIBUTION.md)."""
    data = resources.files("tokensieve") / "data"
    return {name: Path(str(data / f"demo_{name}.jsonl.zst")) for name in ("raw", "target")}


def _featurize(featurizer: HashedNgrams, path: Path) -> tuple[np.ndarray, ReadReport, float]:
    start = time.perf_counter()
    counts, report = featurizer.sum_counts(path, return_report=True)
    return counts, report, time.perf_counter() - start


def _describe(name: str, counts: np.ndarray, report: ReadReport, seconds: float) -> str:
    nonzero = int(np.count_nonzero(counts))
    return (
        f"  {name:<7} {report.documents:>6,} docs  {report.text_bytes / 1e6:5.2f} MB of text  "
        f"{int(counts.sum()):>10,} n-grams  {nonzero:>6,}/{counts.size:,} buckets used  "
        f"{seconds * 1e3:7.1f} ms  {report.text_bytes / max(seconds, 1e-9) / 1e6:6.1f} MB/s"
    )


def run_dsir(args: argparse.Namespace) -> int:
    """Fits, weighs, resamples and writes, printing each phase and a closing summary."""
    num_threads, min_example_length, seed, out = (
        args.num_threads,
        args.min_example_length,
        args.seed,
        args.out,
    )
    dsir = DSIR(
        Files(args.raw),
        Files(args.target),
        ngrams=args.ngrams,
        buckets=args.buckets,
        hash=args.hash,
        min_example_length=min_example_length,
        chunk_words=args.chunk_words,
        text_field=args.text_field,
        on_error=args.on_error,
        num_threads=num_threads,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )
    print(f"DSIR in {dsir.featurizer!r}, {resolve_num_threads(num_threads)} threads")
    timings = {}
    start = time.perf_counter()
    dsir.fit()
    timings["fit"] = time.perf_counter() - start
    raw_counts, target_counts = dsir.raw_counts, dsir.target_counts
    assert raw_counts is not None and target_counts is not None  # set by fit()
    print(
        f"  fit       {timings['fit']:7.2f} s  {int(raw_counts.sum()):,} raw and "
        f"{int(target_counts.sum()):,} target n-grams"
    )
    start = time.perf_counter()
    weights = dsir.weights()
    timings["weights"] = time.perf_counter() - start
    report = dsir.report
    mb = report.text_bytes / 1e6
    print(
        f"  weights   {timings['weights']:7.2f} s  {report.documents:,} documents, {mb:.1f} MB of text "
        f"({mb / max(timings['weights'], 1e-9):.1f} MB/s); {report.summary()}"
    )
    start = time.perf_counter()
    selection = dsir.resample(args.k, fraction=args.fraction, seed=seed, method=args.method, kl=True)
    timings["resample"] = time.perf_counter() - start
    start = time.perf_counter()
    selection = dsir.write(selection, out, output_format=args.format)
    timings["write"] = time.perf_counter() - start
    counts = selection.counts()
    print(
        f"  resample  {timings['resample']:7.2f} s  {selection.method}, seed {seed}, k = {selection.k:,} "
        f"of {counts['selected'] + counts['not_selected']:,} eligible (>= {min_example_length} tokens); "
        "KL measured"
    )
    print(f"  write     {timings['write']:7.2f} s  {len(selection.shards)} shard(s) + manifest in {out}")
    kl = selection.kl
    unit = "documents" if args.chunk_words is None else f"chunks of {args.chunk_words} words"
    print(
        f"\n{unit}: selected {counts['selected']:,} / not selected {counts['not_selected']:,} / "
        f"too short {counts['too_short']:,}; records skipped {report.skipped_total:,} "
        f"(of {report.records:,} records)"
    )
    print(
        f"KL(target || random sample) {kl['kl_random']:.4f}  "
        f"KL(target || selection) {kl['kl_selected']:.4f}  KL reduction {kl['kl_reduction']:+.4f}"
    )
    print(
        f"mean log-weight: selected {weights[selection.indices].mean():.1f}, pool {weights.mean():.1f}; "
        f"total {sum(timings.values()):.2f} s ({mb / max(sum(timings.values()), 1e-9):.1f} MB/s end to end)"
    )
    return 0


def run_demo(num_threads: int | None, out: str | None) -> int:
    """``tokensieve dsir`` on the bundled sample, selecting 10%."""
    files = demo_files()
    print(f"tokensieve {__version__} demo: DSIR selects 10% of the bundled raw sample towards the target")
    for name, path in files.items():
        print(f"  {name}: {path.name} ({path.stat().st_size / 1e6:.2f} MB compressed)")
    with tempfile.TemporaryDirectory(prefix="tokensieve-demo-") as tmp:
        argv = ["dsir", "--raw", str(files["raw"]), "--target", str(files["target"]), "--fraction", "0.1"]
        argv += ["--out", out or tmp] + ([] if num_threads is None else ["--num-threads", str(num_threads)])
        return run_dsir(build_parser().parse_args(argv))


def run_featurize(args: argparse.Namespace) -> int:
    featurizer = HashedNgrams(
        ngrams=args.ngrams,
        buckets=args.buckets,
        tokenizer=args.tokenizer,
        hash=args.hash,
        num_threads=args.num_threads,
    )
    files = corpus_files(Files(args.inputs))
    start = time.perf_counter()
    counts, report = featurizer.sum_counts(
        Files(files), text_field=args.text_field, on_error=args.on_error, return_report=True
    )
    seconds = time.perf_counter() - start
    size = sum(s.bytes for s in report.sources)
    print(f"{featurizer!r}")
    print(
        f"{len(files)} files, {size / 1e6:.1f} MB on disk, {report.text_bytes / 1e6:.1f} MB of text, "
        f"{seconds:.2f} s ({report.text_bytes / max(seconds, 1e-9) / 1e6:.1f} MB/s)"
    )
    print(report.summary())
    print(f"{int(counts.sum()):,} n-grams in {int(np.count_nonzero(counts)):,} of {counts.size:,} buckets")
    if args.out:
        out = Path(args.out)
        write_npy(out, counts)
        print(f"wrote {out}")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    """Scores every document with a fastText classifier; writes ``scores.npy`` (float32, one per
    document in input order, NaN for a text without features) and, with a threshold or a top
    fraction, the selected documents as shards; ``manifest.json`` accounts for every record."""
    from tokensieve import _core
    from tokensieve import fasttext as tsft

    ours = ("part-", "manifest.json", "scores.npy")  # and their .tmp files
    out_dir = prepare_output_dir(args.out, lambda name: name.startswith(ours))
    model = tsft.load_model(args.model, num_threads=args.num_threads)
    label = args.label if args.label is not None else model.labels[0]
    paths = corpus_files(Files(args.input))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    start = time.perf_counter()
    scores, report = model.score(
        Files(paths),
        label,
        **tsft.PRESETS[args.preset],
        text_field=args.text_field,
        on_error=args.on_error,
        return_report=True,
        progress=progress,
    )
    score_seconds = time.perf_counter() - start
    full_label = model.labels[model._label_id(label)]
    mb = report.text_bytes / 1e6
    print(
        f"scored {report.documents:,} documents ({mb:.1f} MB of text) with P({full_label}) in "
        f"{score_seconds:.2f} s ({mb / max(score_seconds, 1e-9):.1f} MB/s); {report.summary()}"
    )
    write_npy(out_dir / "scores.npy", scores)
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    selection: dict = {"mode": "scores only"}
    copies = None
    if args.threshold is not None:
        copies = (ranked >= args.threshold).view(np.uint8)
        selection = {"mode": "threshold", "threshold": args.threshold}
    elif args.top_fraction is not None:
        if not 0 < args.top_fraction <= 1:
            raise InvalidArgumentError(f"--top-fraction must be in (0, 1], got {args.top_fraction}")
        k = round(args.top_fraction * len(scores))
        copies = np.zeros(len(scores), dtype=np.uint8)
        copies[np.argsort(-ranked, kind="stable")[:k]] = 1  # ties: the earlier document
        selection = {"mode": "top_fraction", "top_fraction": args.top_fraction, "k": k}
    shards: list[tuple[int, str, int]] = []
    digests = files_sha256_in_background(paths, args.num_threads)
    if copies is not None:
        shards = _core.write_selected_files(
            paths,
            [s.documents for s in report.sources],
            skipped_lines(report),
            copies,
            out_dir,
            format=args.format,
            text_field=args.text_field,
            on_error=args.on_error,
            num_threads=args.num_threads,
        )
        remove_stale_shards(out_dir, (p for _, p, _ in shards))
    chosen = copies.view(bool) if copies is not None else np.zeros(len(scores), dtype=bool)
    sources, end = [], 0
    for s, digest in zip(report.sources, digests(), strict=True):
        begin, end = end, end + s.documents
        sources.append(
            {
                "name": s.name,
                "bytes": s.bytes,
                "sha256": digest,
                "records": s.records,
                "documents": s.documents,
                "selected": int(chosen[begin:end].sum()),
                "not_selected": s.documents - int(chosen[begin:end].sum()),
                "skipped": s.records - s.documents,
            }
        )
    finite = scores[~np.isnan(scores)]
    manifest = {
        **manifest_header("fasttext-classifier"),
        "model": {"path": str(Path(args.model).resolve()), "sha256": file_sha256(args.model), **model.args},
        "config": {
            "label": full_label,
            "preset": args.preset,
            **tsft.PRESETS[args.preset],
            "text_field": args.text_field,
            "on_error": args.on_error,
        },
        "selection": selection,
        "scores": {
            "file": "scores.npy",
            "documents": len(scores),
            "without_features": int(np.isnan(scores).sum()),
            "mean": float(finite.mean()) if finite.size else None,
            "quantiles": (
                dict(zip(QUANTILES, np.quantile(finite, [0.1, 0.5, 0.9]).tolist(), strict=True))
                if finite.size
                else {}
            ),
        },
        "counts": {
            "records": report.records,
            "documents": report.documents,
            "selected": int(chosen.sum()),
            "not_selected": int(len(scores) - chosen.sum()),
            "skipped": dict(report.skipped),
        },
        "skipped_records": skipped_record_entries(report),
        "sources": sources,
        "shards": shard_entries(shards),
        "score_seconds": score_seconds,
    }
    write_json(out_dir / "manifest.json", manifest)
    print(
        f"documents: selected {int(chosen.sum()):,} / not selected {int(len(scores) - chosen.sum()):,}; "
        f"records skipped {report.skipped_total:,} (of {report.records:,}); "
        f"{len(shards)} shard(s) + scores.npy + manifest.json in {out_dir}"
    )
    return 0


QUANTILES = ("0.1", "0.5", "0.9")


def run_train_classifier(args: argparse.Namespace) -> int:
    """Trains a fastText classifier on a file in fastText's format and saves it as ``.bin``."""
    from tokensieve import fasttext as tsft

    hyper = {
        name: getattr(args, name)
        for name in (
            "lr",
            "dim",
            "ws",
            "epoch",
            "minCount",
            "minCountLabel",
            "minn",
            "maxn",
            "neg",
            "wordNgrams",
            "loss",
            "bucket",
            "thread",
            "lrUpdateRate",
            "t",
            "label",
            "seed",
        )
    }
    start = time.perf_counter()
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    model = tsft.train_supervised(args.input, **hyper, progress=progress)
    seconds = time.perf_counter() - start
    model.save_model(args.output)
    words = len(model.get_words())
    print(
        f"trained in {seconds:.2f} s: {words:,} words, {len(model.labels)} labels {list(model.labels)[:10]}, "
        f"dim {args.dim}, loss {args.loss}; saved {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB)"
    )
    return 0


def _read_scores(path: str) -> Any:
    """A scores Parquet file as a ``pyarrow.Table``; a missing or unreadable file raises the
    typed corpus errors, naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def naming(error: TokensieveError) -> TokensieveError:
        error.path = path  # type: ignore[attr-defined]
        return error

    try:
        return pq.read_table(path)
    except FileNotFoundError as e:
        raise naming(CorpusNotFoundError(f"{path}: no such file")) from e
    except (pa.ArrowException, OSError) as e:
        raise naming(CorpusFormatError(f"{path}: not a readable Parquet file ({e})")) from e


def run_select(args: argparse.Namespace) -> int:
    """Applies a selection method to scores Parquet files; writes the selected rows' ids, scores
    and per-method columns as ``selected.{parquet,jsonl}`` (input order) and ``manifest.json``,
    which accounts for every input row (selected / rejected / rejected for a NaN score)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokensieve.methods.tables import DEFAULT_COLUMNS, READS, select_from_tables

    ours = {"selected.parquet", "selected.jsonl", "manifest.json"}
    out_dir = prepare_output_dir(args.out, lambda name: name in ours or name.endswith(".tmp"))
    tables = [_read_scores(path) for path in args.scores]
    method_options = sorted({name for reads in READS.values() for name in reads})
    options = {name: getattr(args, name) for name in ("column", "id_column", "nan_policy", *method_options)}
    result = select_from_tables(args.method, tables, sources=args.scores, **options)
    rows = np.flatnonzero(result.selected)
    columns = {"id": [result.ids[i] for i in rows], "score": result.score[rows]}
    columns.update({name: values[rows] for name, values in result.extra.items()})
    name = f"selected.{args.format}"
    if args.format == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), sink)
        data = sink.getvalue().to_pybytes()
    else:
        records = zip(*(np.asarray(v).tolist() for v in columns.values()), strict=True)
        data = "".join(json.dumps(dict(zip(columns, r, strict=True))) + "\n" for r in records).encode()
    write_atomic(out_dir / name, data)
    other = out_dir / f"selected.{'jsonl' if args.format == 'parquet' else 'parquet'}"
    other.unlink(missing_ok=True)  # from an earlier run in the other format
    counts = result.counts
    manifest = {
        **manifest_header(args.method),
        "command": "select",
        "inputs": [
            {"path": str(Path(p).resolve()), "sha256": file_sha256(p), "rows": t.num_rows}
            for p, t in zip(args.scores, tables, strict=True)
        ],
        "config": {
            "column": args.column or DEFAULT_COLUMNS[args.method],
            "id_column": args.id_column,
            "nan_policy": args.nan_policy,
            **{name: options[name] for name in READS[args.method]},
        },
        "selection": result.details,
        "counts": counts,
        "output": {"file": name, "rows": int(rows.size)},
    }
    write_json(out_dir / "manifest.json", manifest)
    print(
        f"{args.method}: selected {counts['selected']:,} / rejected {counts['rejected']:,} / NaN score "
        f"{counts['rejected_nan']:,} of {counts['rows']:,} rows; {name} + manifest.json in {out_dir}"
    )
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Scores corpus files with a causal LM into a Parquet file and its manifest."""
    import torch

    from tokensieve.scoring import TokenScorer, manifest_path

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    scorer = TokenScorer.from_pretrained(args.model, device=args.device, dtype=dtype, packing=args.packing)
    parameters = sum(p.numel() for p in scorer.model.parameters())
    print(
        f"{type(scorer.model).__name__} ({parameters:,} parameters, {str(scorer.head_weight.dtype)[6:]}) "
        f"on {scorer.device}, packing: {scorer.packing}"
    )
    report = scorer.score_to_parquet(
        Files(args.input),
        args.out,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        resume=args.resume,
        max_length=args.max_length,
        stride=args.stride,
        batch_size=args.batch_size,
        text_field=args.text_field,
        id_field=args.id_field or None,
        on_error=args.on_error,
        min_k_ratio=args.min_k_ratio,
    )
    print(report.summary())
    print(f"wrote {args.out} ({report.scored:,} rows) and {manifest_path(args.out)}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """Draws the histogram of one score column with a selection threshold, to PNG."""
    from tokensieve.plotting import kept_mask, plot_histogram, selection_threshold

    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingDependencyError("tokensieve plot needs pyarrow: pip install tokensieve[scoring]") from e
    try:
        schema = pq.read_schema(args.scores)
    except (OSError, ValueError) as e:  # pyarrow's errors derive from these
        raise InvalidArgumentError(f"{args.scores}: not a readable Parquet file ({e})") from e
    if args.column not in schema.names:
        raise InvalidArgumentError(f"{args.scores} has no column {args.column!r}; it has {schema.names}")
    values = pq.read_table(args.scores, columns=[args.column]).column(0).to_numpy(zero_copy_only=False)
    threshold = selection_threshold(
        values, threshold=args.threshold, top_k=args.top_k, quantile=args.quantile, keep=args.keep
    )
    plot_histogram(values, args.out, column=args.column, threshold=threshold, keep=args.keep, bins=args.bins)
    described = "no threshold"
    if threshold is not None:
        kept = int(kept_mask(values, threshold, args.keep).sum())
        described = (
            f"threshold {threshold:.6g} keeps the {args.keep} side: {kept:,} of {len(values):,} documents"
        )
    print(f"{args.column}: {described}; wrote {args.out}")
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help, where there is one to show (not ``None``,
    not ``False``) and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # Identity, not equality: a default of 0 (== False) is shown.
        hidden = default is None or default is False or default == argparse.SUPPRESS
        if hidden or "default" in text or not action.option_strings:
            return text
        shown = " ".join(default) if isinstance(default, list) else "%(default)s"
        return f"{text} (default: {shown})"


def _subcommand(sub: Any, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        formatter_class=_HelpFormatter,
    )
    return parser


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-field", default="text", help="the JSON field, or Parquet column, of the text")
    parser.add_argument(
        "--on-error",
        choices=["skip", "raise"],
        default="skip",
        help="a bad record (malformed JSON, invalid UTF-8, missing or non-string text): count it "
        "and go on, or stop with an error naming its file and line",
    )


def _add_feature_space(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hash",
        choices=["dsir-sha256", "fast-v1"],
        default="dsir-sha256",
        help="n-gram hashing: data-selection's (same buckets as the package) or tokensieve's faster one",
    )
    parser.add_argument("--ngrams", type=int, default=2, help="n-grams of 1 to N words are counted")
    parser.add_argument("--buckets", type=int, default=10000, help="hash buckets of the feature vectors")


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="threads (default: TOKENSIEVE_NUM_THREADS, else every CPU)",
    )


def _add_shard_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["jsonl", "jsonl.zst", "parquet"],
        default="jsonl.zst",
        help="format of the output shards",
    )


def _add_progress(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{what} on stderr (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``tokensieve`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tokensieve",
        description="Score and select language-model pretraining data.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tokensieve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = _subcommand(sub, "demo", "run DSIR on the bundled sample and print a summary")
    _add_threads(demo)
    demo.add_argument("--out", help="keep the selection here (default: a temporary directory)")

    dsir = _subcommand(sub, "dsir", "select raw documents that look like the target (DSIR)")
    dsir.add_argument("--raw", nargs="+", required=True, help="raw pool: files, directories or globs")
    dsir.add_argument("--target", nargs="+", required=True, help="target: files, directories or globs")
    size = dsir.add_mutually_exclusive_group(required=True)
    size.add_argument("--k", type=int, help="number of documents to select")
    size.add_argument("--fraction", type=float, help="fraction of the eligible documents to select")
    dsir.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    dsir.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    dsir.add_argument(
        "--method",
        choices=["gumbel", "topk", "replacement"],
        default="gumbel",
        help="gumbel: sample without replacement in proportion to the importance weights; topk: "
        "the k largest weights; replacement: k draws with replacement",
    )
    _add_feature_space(dsir)
    dsir.add_argument(
        "--min-example-length", type=int, default=100, help="documents with fewer tokens are never selected"
    )
    dsir.add_argument(
        "--chunk-words", type=int, default=None, help="cut documents into pieces of N words (the paper: 128)"
    )
    _add_reading(dsir)
    _add_shard_format(dsir)
    _add_threads(dsir)
    _add_progress(dsir, "progress bars")

    feat = _subcommand(sub, "featurize", "count hashed n-grams over corpus files")
    feat.add_argument("inputs", nargs="+", help="files, directories or glob patterns")
    feat.add_argument(
        "--tokenizer",
        choices=["wordpunct", "whitespace"],
        default="wordpunct",
        help="wordpunct: lowercased runs of word characters or of punctuation (data-selection's); "
        "whitespace: fastText's split",
    )
    _add_feature_space(feat)
    _add_reading(feat)
    _add_threads(feat)
    feat.add_argument("--out", help="write the total counts here as .npy (atomically)")

    classify = _subcommand(sub, "classify", "score documents with a fastText classifier and keep the best")
    classify.add_argument("--model", required=True, help="fastText .bin or .ftz model")
    classify.add_argument("--input", nargs="+", required=True, help="files, directories or globs")
    classify.add_argument("--out", required=True, help="output directory (scores.npy, shards, manifest.json)")
    classify.add_argument("--label", help="the label whose probability is the score (default: the first)")
    keep = classify.add_mutually_exclusive_group()
    keep.add_argument("--threshold", type=float, help="keep documents scoring at least this")
    keep.add_argument("--top-fraction", type=float, help="keep this fraction of the documents, best first")
    classify.add_argument(
        "--preset",
        choices=["dclm", "datatrove", "space", "fasttext"],
        default="dclm",
        help="newline handling: dclm joins the stripped lines with spaces, datatrove deletes the "
        "line breaks of the stripped text, space replaces them with spaces, fasttext refuses them",
    )
    _add_shard_format(classify)
    _add_reading(classify)
    _add_threads(classify)
    _add_progress(classify, "progress bars")

    train = _subcommand(
        sub,
        "train-classifier",
        "train a fastText classifier (fastText's algorithm)",
        "Train a supervised fastText classifier with fastText's algorithm, hyper-parameters and "
        "defaults; the .bin it writes loads in the fasttext package.",
    )
    train.add_argument("--input", required=True, help="training file: '__label__X text' per line")
    train.add_argument("--output", required=True, help="model file to write (.bin)")
    for name, kind, default, meaning in (
        ("lr", float, 0.1, "learning rate"),
        ("dim", int, 100, "size of the word vectors"),
        ("ws", int, 5, "context window (unused by supervised training, kept in the model)"),
        ("epoch", int, 5, "passes over the data"),
        ("minCount", int, 1, "words seen fewer times are dropped"),
        ("minCountLabel", int, 0, "labels seen fewer times are dropped"),
        ("minn", int, 0, "shortest character n-gram (0: none)"),
        ("maxn", int, 0, "longest character n-gram (0: none)"),
        ("neg", int, 5, "negatives sampled (loss ns)"),
        ("wordNgrams", int, 1, "word n-grams up to this length"),
        ("bucket", int, 2_000_000, "hash buckets of the n-grams"),
        ("lrUpdateRate", int, 100, "tokens between learning-rate updates"),
        ("t", float, 1e-4, "sampling threshold (unused by supervised training, kept in the model)"),
        ("seed", int, 0, "seed of the initialisation and sampling"),
    ):
        train.add_argument(f"--{name}", type=kind, default=default, help=meaning)
    train.add_argument(
        "--loss",
        choices=["softmax", "hs", "ns", "ova"],
        default="softmax",
        help="softmax, hierarchical softmax, negative sampling or one-vs-all",
    )
    train.add_argument("--label", default="__label__", help="label prefix")
    train.add_argument(
        "--thread", type=int, default=None, help="training threads (default: CPUs - 1, as fastText)"
    )
    _add_progress(train, "a progress line")

    from tokensieve.methods.perplexity_correlations import ESTIMATORS
    from tokensieve.methods.tables import METHODS

    select = _subcommand(
        sub,
        "select",
        "select documents from per-document score tables (Parquet)",
        "Reads score tables (one row per document: id plus score columns), applies a method and "
        "writes the selected ids with manifest.json. NaN (or null) scores raise unless "
        "--nan-policy reject, which never selects them and counts them apart.",
    )
    select.add_argument("--method", choices=METHODS, required=True, help="the selection method")
    select.add_argument(
        "--scores",
        nargs="+",
        required=True,
        help="scores Parquet file(s): one; prior and conditional (color); one per model "
        "(perplexity-correlations)",
    )
    select.add_argument("--out", required=True, help="output directory (selected ids, manifest.json)")
    select.add_argument(
        "--format", choices=["parquet", "jsonl"], default="parquet", help="format of the id list"
    )
    select.add_argument("--column", help="score column (default: per method: mean_nll, perplexity, ...)")
    select.add_argument("--id-column", default="id", help="the column of the document ids")
    select.add_argument(
        "--nan-policy",
        choices=["raise", "reject"],
        default="raise",
        help="a NaN or null score: stop with an error, or never select the document",
    )
    size = select.add_mutually_exclusive_group()
    size.add_argument("--k", type=int, help="top-k, bottom-k, color: number of documents")
    size.add_argument(
        "--fraction",
        type=float,
        help="top-k, bottom-k: fraction of the documents; perplexity-correlations: the desired "
        "filter ratio of tokens (default 0.1)",
    )
    select.add_argument("--at-least", type=float, help="threshold: keep scores >= this")
    select.add_argument("--at-most", type=float, help="threshold: keep scores <= this")
    select.add_argument("--tau", type=float, help="color: keep int(N / tau) documents")
    select.add_argument(
        "--cutoffs",
        nargs=2,
        type=float,
        metavar=("HEAD", "MIDDLE"),
        help="ccnet: perplexity cutoffs (default: the pool's 30th and 60th percentiles)",
    )
    select.add_argument(
        "--keep-buckets",
        nargs="+",
        choices=["head", "middle", "tail"],
        default=["head"],
        help="ccnet: the perplexity buckets kept",
    )
    select.add_argument("--threshold", type=float, help="min-k: scores above it are likely training members")
    select.add_argument("--keep-members", action="store_true", help="min-k: keep the members instead")
    select.add_argument(
        "--benchmark-errors",
        nargs="+",
        type=float,
        help="perplexity-correlations: each model's benchmark error (1 - accuracy), in --scores order",
    )
    select.add_argument(
        "--estimator", choices=ESTIMATORS, default="spearmanr", help="perplexity-correlations: the estimator"
    )
    select.add_argument(
        "--projection",
        choices=["linear", "l2"],
        default="linear",
        help="perplexity-correlations: the projection",
    )
    select.add_argument("--tokens-column", default="tokens", help="perplexity-correlations: token counts")

    score = _subcommand(sub, "score", "per-document language-model statistics of corpus files, to Parquet")
    score.add_argument(
        "--model", required=True, help="directory of a Hugging Face causal LM and its tokenizer"
    )
    score.add_argument("--input", nargs="+", required=True, help="files, directories or globs")
    score.add_argument("--out", required=True, help="Parquet file to write (the manifest goes next to it)")
    score.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per window (default: 1024, or the model's maximum if smaller)",
    )
    score.add_argument("--stride", type=int, default=None, help="window stride (default: max-length - 1)")
    score.add_argument("--batch-size", type=int, default=8, help="rows of max-length tokens per forward pass")
    score.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    score.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="weights' dtype (auto: bfloat16 on a GPU that has it, else float32)",
    )
    score.add_argument(
        "--packing",
        choices=["auto", "pad", "pack"],
        default="auto",
        help="several windows per row (pack) or one, padded (pad); auto packs when the model keeps "
        "packed windows apart",
    )
    _add_reading(score)
    score.add_argument("--id-field", default="id", help='the record field of the id ("" for locations only)')
    score.add_argument(
        "--min-k-ratio", type=float, default=0.2, help="the fraction of tokens Min-K%% and Min-K%%++ average"
    )
    score.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="go on from the checkpoint of an interrupted run with the same input, model and "
        "options (OUT.parts/); --no-resume starts over",
    )
    _add_progress(score, "a progress bar")

    plot = _subcommand(sub, "plot", "histogram of a score column with a selection threshold, to PNG")
    plot.add_argument("--scores", required=True, help="Parquet file written by tokensieve score")
    plot.add_argument("--column", default="mean_nll", help="the score column drawn")
    rule = plot.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=float, help="draw this threshold")
    rule.add_argument("--top-k", type=int, help="the threshold that keeps the k best documents")
    rule.add_argument("--quantile", type=float, help="the threshold at this quantile of the column")
    plot.add_argument(
        "--keep", choices=["low", "high"], default="low", help="which side of the threshold is kept"
    )
    plot.add_argument("--bins", type=int, default=50, help="histogram bins")
    plot.add_argument("--out", required=True, help="PNG file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokensieve`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return run_demo(args.num_threads, args.out)
        if args.command == "dsir":
            return run_dsir(args)
        if args.command == "classify":
            return run_classify(args)
        if args.command == "train-classifier":
            return run_train_classifier(args)
        if args.command == "select":
            return run_select(args)
        if args.command == "score":
            return run_score(args)
        if args.command == "plot":
            return run_plot(args)
        return run_featurize(args)
    except TokensieveError as e:
        print(f"tokensieve: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Outputs are written atomically: an interrupted command leaves the previous ones.
        print("tokensieve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
