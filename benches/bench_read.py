"""Reading corpus files into Python: the compiled readers' Arrow batches against the Python reader.

All of ``../shared/data/raw_pool`` (8 ``.jsonl.zst`` files, 68,250 documents) is read, every
document's text reaching Python, by:

* ``scan``: the compiled readers with no text handed on (the floor: decode + parse);
* ``ArrowBatches``: :class:`tokensieve.io.ArrowBatches`, texts as ``pyarrow`` record batches;
* ``DocumentReader``: :class:`tokensieve.io.DocumentReader`, the reader the LM scorer uses (files
  opened and decompressed in Python, JSON lines judged by the compiled parser a block at a time,
  one ``Record`` per document);
* Ray's ``read_corpus`` per-file readers in this process, one thread per file (no cluster): the
  one-pass Arrow path for JSON Lines against the scan + temporary Parquet copy + read back that
  it replaced (still the path for Parquet files).

Medians of ``--reps`` runs, 2 threads where the reader has a pool. JSON to ``benches/results/``.

Usage: python benches/bench_read.py [--reps 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from common import SHARED_DATA, median, timed, write_result

from tokensieve.io import ArrowBatches, DocumentReader, Files, scan


def arrow_batches(files: list[str]) -> int:
    return sum(batch.num_rows for batch in ArrowBatches(Files(files), num_threads=2))


def document_reader(files: list[str]) -> int:
    return sum(len(batch) for batch in DocumentReader(Files(files)))


def per_file(reader: Callable[..., Iterator[Any]]) -> Callable[[list[str]], int]:
    """Drains one of Ray's per-file readers over every file (its generator returns the report)."""

    def run(files: list[str]) -> int:
        rows = 0
        for path in files:
            for table in reader(path, path, "text", "skip", 4096):
                rows += table.num_rows
        return rows

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    files = [str(p) for p in sorted((SHARED_DATA / "raw_pool").glob("*.jsonl.zst"))]
    documents = scan(Files(files)).documents
    readers: dict[str, Callable[[list[str]], int]] = {
        "scan (no text to Python)": lambda f: scan(Files(f), num_threads=2).documents,
        "ArrowBatches": arrow_batches,
        "DocumentReader": document_reader,
    }
    try:
        from tokensieve.integrations import ray as tsray

        readers["ray read_corpus task: ArrowBatches"] = per_file(tsray._read_lines)
        readers["ray read_corpus task: scan + Parquet copy"] = per_file(tsray._read_parquet)
    except ImportError:
        print("ray is not installed: its per-file readers are left out")
    rows = []
    print(f"{len(files)} files, {documents:,} documents")
    print(f"{'reader':<44} {'median s':>9} {'docs/s':>11} {'x DocumentReader':>17}")
    for name, read in readers.items():
        assert read(files) == documents, name  # every document reaches Python
        rows.append({"name": name, "median_s": median(timed(lambda read=read: read(files), args.reps))})
    python = next(r["median_s"] for r in rows if r["name"].startswith("DocumentReader"))
    for row in rows:
        row["docs_per_s"] = documents / row["median_s"]
        row["vs_document_reader"] = python / row["median_s"]
        speedup = row["vs_document_reader"]
        print(f"{row['name']:<44} {row['median_s']:>9.3f} {row['docs_per_s']:>11,.0f} {speedup:>16.1f}x")
    results = {"files": len(files), "documents": documents, "reps": args.reps, "rows": rows}
    path = write_result("bench_read", results)
    print("wrote", path)


if __name__ == "__main__":
    main()
