"""Corpus readers: every format, every bad-input case, and the accounting of every record."""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from tokensieve import HashedNgrams
from tokensieve.exceptions import (
    BadRecordError,
    CorpusFormatError,
    CorpusNotFoundError,
    CorpusReadError,
    InvalidArgumentError,
)
from tokensieve.io import ArrowBatches, DocumentReader, Files, ReadReport, corpus_files, scan

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstandard = pytest.importorskip("zstandard")

GOOD = ["first document", "second one\nwith two lines", "último: ΟΔΟΣ"]

# (line bytes, reason or None for a good document)
MIXED_LINES: list[tuple[bytes, str | None]] = [
    (json.dumps({"text": GOOD[0]}).encode(), None),
    (b"", "blank_line"),
    (b"   \t", "blank_line"),
    (b'{"text": "cut', "malformed_json"),
    (b'{"title": "no text field"}', "missing_field"),
    (b'{"text": null}', "missing_field"),
    (b'{"text": 42}', "not_a_string"),
    (b'{"text": ["a"]}', "not_a_string"),
    (b'{"text": "half \\ud83d pair"}', "lone_surrogate"),
    (b'{"text": "bad \xff\xfe bytes"}', "invalid_utf8"),
    (b'"a bare string"', "malformed_json"),
    (json.dumps({"text": GOOD[1], "meta": {"x": [1, {"y": None}]}}).encode(), None),
    (json.dumps({"text": GOOD[2]}, ensure_ascii=False).encode(), None),
]


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def mixed_payload(crlf: bool = False) -> bytes:
    sep = b"\r\n" if crlf else b"\n"
    return sep.join(line for line, _ in MIXED_LINES)  # no newline after the last line


@pytest.fixture(params=["jsonl", "jsonl_crlf", "gz", "zst"])
def mixed_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind = request.param
    payload = mixed_payload(crlf=kind == "jsonl_crlf")
    if kind == "gz":
        return write(tmp_path / "mixed.jsonl.gz", gzip.compress(payload))
    if kind == "zst":
        return write(tmp_path / "mixed.jsonl.zst", zstandard.ZstdCompressor().compress(payload))
    return write(tmp_path / "mixed.jsonl", payload)


def test_every_line_is_accounted_for(mixed_file: Path) -> None:
    report = scan(mixed_file)
    expected_skips: dict[str, int] = {}
    for _, reason in MIXED_LINES:
        if reason:
            expected_skips[reason] = expected_skips.get(reason, 0) + 1
    assert report.records == len(MIXED_LINES)
    assert report.documents == 3
    assert dict(report.skipped) == expected_skips
    assert report.records == report.documents + report.skipped_total
    listed = [(r.line, r.reason) for r in report.skipped_records]
    bad = [(i + 1, reason) for i, (_, reason) in enumerate(MIXED_LINES) if reason not in (None, "blank_line")]
    assert listed == bad
    assert all(r.source == str(mixed_file) for r in report.skipped_records)
    assert report.sources[0].bytes == mixed_file.stat().st_size


def test_counts_over_a_file_equal_counts_over_its_good_texts(mixed_file: Path) -> None:
    f = HashedNgrams()
    np.testing.assert_array_equal(f.sum_counts(mixed_file), f.sum_counts(GOOD))


def test_raise_names_file_and_line(mixed_file: Path) -> None:
    with pytest.raises(BadRecordError) as info:
        HashedNgrams().sum_counts(mixed_file, on_error="raise")
    err = info.value
    assert (err.path, err.line, err.reason) == (str(mixed_file), 4, "malformed_json")
    assert f"{mixed_file}:4" in str(err)
    assert isinstance(err, ValueError)


def test_skips_are_logged(mixed_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    HashedNgrams().sum_counts(mixed_file)
    assert any("skipped 8 bad records" in r.getMessage() for r in caplog.records)


def test_text_field_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", b'{"content": "a b"}\n{"text": "x"}\n')
    report = scan(path, text_field="content")
    assert (report.documents, dict(report.skipped)) == (1, {"missing_field": 1})


def test_parquet_with_nulls_and_any_string_type(tmp_path: Path) -> None:
    f = HashedNgrams(hash="fast-v1")
    for i, typ in enumerate([pa.string(), pa.large_string(), pa.string_view()]):
        table = pa.table({"id": [1, 2, 3, 4], "text": pa.array([GOOD[0], None, GOOD[1], GOOD[2]], typ)})
        path = tmp_path / f"t{i}.parquet"
        pq.write_table(table, path, row_group_size=2)
        counts, report = f.sum_counts(path, return_report=True)
        np.testing.assert_array_equal(counts, f.sum_counts(GOOD))
        assert (report.records, report.documents) == (4, 3)
        assert [(r.line, r.reason) for r in report.skipped_records] == [(2, "missing_field")]


def test_parquet_errors_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(CorpusFormatError, match="no column named"):
        scan(path)
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(CorpusFormatError, match="type Int64"):
        scan(path)
    data = path.read_bytes()
    truncated = write(tmp_path / "cut.parquet", data[:4] + data[len(data) // 2 :])
    with pytest.raises(CorpusFormatError) as info:
        scan(truncated)
    assert info.value.path == str(truncated)


def test_missing_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError) as info:
        scan(tmp_path / "nope.jsonl")
    assert isinstance(info.value, FileNotFoundError)
    payload = zstandard.ZstdCompressor().compress(b'{"text": "abc"}\n' * 50_000)
    cut = write(tmp_path / "cut.jsonl.zst", payload[: len(payload) // 2])
    with pytest.raises(CorpusReadError) as info:
        scan(cut)
    assert info.value.path == str(cut)


def test_arrow_inputs_are_read_with_nulls_accounted(tmp_path: Path) -> None:
    f = HashedNgrams(hash="fast-v1")
    expected = f.sum_counts(GOOD)
    arr = pa.array([GOOD[0], None, GOOD[1], GOOD[2]])
    chunked = pa.chunked_array([[GOOD[0]], [None, GOOD[1]], [GOOD[2]]], type=pa.large_string())
    for source in (arr, chunked, arr.cast(pa.string_view())):
        counts, report = f.sum_counts(source, return_report=True)
        np.testing.assert_array_equal(counts, expected)
        assert report.skipped == {"missing_field": 1}
    m = f.transform(arr, on_error="skip")
    assert m.shape[0] == 4 and m[[1]].nnz == 0
    with pytest.raises(BadRecordError, match="<arrow>:2"):
        f.transform(arr)
    with pytest.raises(InvalidArgumentError, match="type"):
        f.sum_counts(pa.array([1, 2]))
    binary = pa.array([GOOD[0].encode(), b"\xff bad", GOOD[1].encode()], pa.binary())
    counts, report = f.sum_counts(binary, return_report=True)
    assert report.skipped == {"invalid_utf8": 1}


def test_directories_globs_and_file_lists(tmp_path: Path) -> None:
    for i, text in enumerate(GOOD):
        write(tmp_path / f"part-{i}.jsonl", json.dumps({"text": text}).encode() + b"\n")
    write(tmp_path / "notes.txt", b"not a corpus file")
    files = corpus_files(tmp_path)
    assert [Path(p).name for p in files] == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    assert corpus_files(str(tmp_path / "part-*.jsonl")) == files
    f = HashedNgrams()
    expected = f.sum_counts(GOOD)
    for source in (tmp_path, Files(files), [Path(p) for p in files], files[0]):
        counts = f.sum_counts(source)
        if source == files[0]:
            np.testing.assert_array_equal(counts, f.sum_counts(GOOD[:1]))
        else:
            np.testing.assert_array_equal(counts, expected)
    with pytest.raises(InvalidArgumentError, match="texts in memory"):
        f.transform(tmp_path)


def test_bounded_blocks_and_long_lines(tmp_path: Path) -> None:
    long_text = "x " * 3_000_000  # one 6 MB line, larger than a block
    lines = [json.dumps({"text": t}) for t in ["a", long_text, "b"] * 3]
    path = write(tmp_path / "long.jsonl", "\n".join(lines).encode())
    counts, report = HashedNgrams(hash="fast-v1").sum_counts(path, return_report=True)
    assert report.documents == 9
    assert counts.sum() == 3 * (1 + (2 * 3_000_000 - 1) + 1)


def _count_in_child(path: str, queue: multiprocessing.Queue) -> None:
    queue.put(HashedNgrams(num_threads=2).sum_counts(path).tolist())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pool_works_in_a_forked_child(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", b'{"text": "fork safe threads"}\n' * 1000)
    parent = HashedNgrams(num_threads=2).sum_counts(path)  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_count_in_child, args=(str(path), queue))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked child hung or died"
    assert queue.get(timeout=5) == parent.tolist()


def test_thread_count_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokensieve import resolve_num_threads

    monkeypatch.setenv("TOKENSIEVE_NUM_THREADS", "3")
    assert resolve_num_threads() == 3
    assert resolve_num_threads(5) == 5
    monkeypatch.setenv("TOKENSIEVE_NUM_THREADS", "zero")
    with pytest.raises(InvalidArgumentError, match="TOKENSIEVE_NUM_THREADS"):
        resolve_num_threads()
    monkeypatch.delenv("TOKENSIEVE_NUM_THREADS")
    assert resolve_num_threads() == os.cpu_count()


def test_real_corpus_files_are_read_completely(shared_data: Path) -> None:
    path = shared_data / "raw_pool" / "reuters21578.jsonl.zst"
    report = scan(path)
    with open(path, "rb") as fh:
        lines = zstandard.ZstdDecompressor().stream_reader(fh).read().count(b"\n")
    assert report.records == lines == 7981
    assert report.documents + report.skipped_total == report.records


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_progress_reaches_the_stored_size_and_a_raising_callback_stops_the_read(
    tmp_path: Path, suffix: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"document {i} " + "word " * (i % 50) for i in range(5000)]
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"text": texts}), path, row_group_size=700)
    else:
        lines = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
        path.write_bytes(gzip.compress(lines) if suffix.endswith(".gz") else lines)
    core = HashedNgrams(hash="fast-v1")._core
    seen: list[tuple[int, int]] = []
    options = {"text_field": "text", "on_error": "raise", "num_threads": 2}
    core.sum_counts_files([str(path)], progress=lambda b, d: seen.append((b, d)), **options)
    assert seen == sorted(seen) and seen[-1] == (path.stat().st_size, len(texts))

    class StopError(Exception):
        pass

    def stop(bytes_read: int, documents: int) -> None:
        raise StopError(f"{documents} documents")

    with pytest.raises(StopError):
        core.sum_counts_files([str(path)], progress=stop, **options)


# ---------------------------------------------------------------------------------------------
# DocumentReader: the same policy, for documents streamed to Python


def read_all(source, **kwargs) -> tuple[list, ReadReport]:
    reader = DocumentReader(source, **kwargs)
    records = [record for batch in reader for record in batch]
    return records, reader.report


def test_document_reader_accounts_for_records_as_the_rust_readers(mixed_file: Path) -> None:
    records, report = read_all(mixed_file, batch_records=2)
    assert report == scan(mixed_file)  # the same verdicts, details and all: one JSON parser
    assert [r.text for r in records] == GOOD
    assert [r.line for r in records] == [1, 12, 13]
    assert [r.id for r in records] == [f"{mixed_file.name}:{line}" for line in (1, 12, 13)]
    with pytest.raises(BadRecordError) as info:
        read_all(mixed_file, on_error="raise")
    assert (info.value.path, info.value.line, info.value.reason) == (str(mixed_file), 4, "malformed_json")


def test_document_reader_judges_lines_with_the_compiled_parser(tmp_path: Path) -> None:
    # nesting deeper than Python's recursion limit (its json module gave up: malformed_json)
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + ', "id": 7, "text": "deep"}'
    ids = ['"x"', "12", "1.5", "true", "[1]"]
    lines = [deep, *(f'{{"text": "t{i}", "id": {v}}}' for i, v in enumerate(ids)), '{"text": "\\ud800"}']
    path = write(tmp_path / "d.jsonl", ("\n".join(lines) + "\n").encode())
    records, report = read_all(path)
    # an id is a string or an integer; other values leave the location
    want = [
        ("deep", "7"),
        ("t0", "x"),
        ("t1", "12"),
        ("t2", "d.jsonl:4"),
        ("t3", "d.jsonl:5"),
        ("t4", "d.jsonl:6"),
    ]
    assert [(r.text, r.id) for r in records] == want
    assert report == scan(path) and report.skipped == {"lone_surrogate": 1}
    items = [{"text": "m", "id": v} for v in ("x", 12, 1.5, True)]
    assert [r.id for r in read_all(items)[0]] == ["x", "12", "2", "3"]


def test_document_reader_ids_paths_and_progress(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = write(tmp_path / "a" / "x.jsonl", b'{"text": "one", "id": "doc-1"}\n{"text": "two", "id": 2}\n')
    frames = b"".join(
        zstandard.ZstdCompressor().compress(json.dumps({"text": t}).encode() + b"\n") for t in "pq"
    )
    second = write(tmp_path / "y.jsonl.zst", frames)  # two zstd frames, read across
    reader = DocumentReader(Files([first, second]))
    records = [r for batch in reader for r in batch]
    assert [(r.text, r.id, r.source) for r in records] == [
        ("one", "doc-1", 0),
        ("two", "2", 0),
        ("p", "y.jsonl.zst:1", 1),
        ("q", "y.jsonl.zst:2", 1),
    ]
    assert reader.bytes_read == reader.total_bytes == first.stat().st_size + second.stat().st_size
    assert reader.report == scan(Files([first, second]))
    with pytest.raises(InvalidArgumentError, match="once"):
        list(reader)
    records, _ = read_all(first, id_field=None)
    assert [r.id for r in records] == ["x.jsonl:1", "x.jsonl:2"]


def test_document_reader_parquet_arrow_and_python_items(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", None], "text": [GOOD[0], None, GOOD[1], GOOD[2]]}), path)
    records, report = read_all(path)
    assert [(r.text, r.id) for r in records] == [(GOOD[0], "a"), (GOOD[1], "c"), (GOOD[2], "t.parquet:4")]
    assert report == scan(path)
    arrow = pa.array([GOOD[0], None, GOOD[1]])
    records, report = read_all(arrow)
    assert [(r.text, r.id, r.line) for r in records] == [(GOOD[0], "0", 1), (GOOD[1], "2", 3)]
    assert report.skipped == {"missing_field": 1} and report.sources[0].name == "<arrow>"
    items = [GOOD[0], None, 5, "lone \ud800", {"text": GOOD[1], "id": "k"}, {"body": "x"}]
    records, report = read_all(iter(items))
    assert [(r.text, r.id) for r in records] == [(GOOD[0], "0"), (GOOD[1], "k")]
    assert report.skipped == {"missing_field": 2, "not_a_string": 1, "lone_surrogate": 1}
    assert report.records == len(items) and report.sources[0].name == "<list>"


def test_categorical_text_columns_are_read_by_every_reader(tmp_path: Path) -> None:
    # A dictionary-encoded column (pandas' categoricals) of strings or of bytes, with nulls, an
    # empty text and invalid UTF-8: the Rust readers and DocumentReader take the same documents.
    strings = pa.array([GOOD[0], GOOD[1], GOOD[0], None, "", GOOD[1]]).dictionary_encode()
    binary = pa.array([b"ok", b"\xff", None, b"ok"]).dictionary_encode()
    for name, column, want in (
        ("strings", strings, [(1, GOOD[0]), (2, GOOD[1]), (3, GOOD[0]), (5, ""), (6, GOOD[1])]),
        ("binary", binary, [(1, "ok"), (4, "ok")]),
    ):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"text": column}), path)
        assert pq.read_schema(path).field("text").type == column.type  # still a dictionary
        records, report = read_all(path)
        batches = ArrowBatches(path)
        rows = [
            (line, text)
            for b in batches
            for line, text in zip(b.column("line").to_pylist(), b.column("text").to_pylist(), strict=True)
        ]
        assert [(r.line, r.text) for r in records] == rows == want
        assert report == batches.report == scan(path)
        records, _ = read_all(column)
        assert [r.text for r in records] == [text for _, text in want]
    assert scan(tmp_path / "binary.parquet").skipped == {"missing_field": 1, "invalid_utf8": 1}


def test_document_reader_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError):
        read_all(tmp_path / "nope.jsonl")
    payload = zstandard.ZstdCompressor().compress(b'{"text": "abc"}\n' * 50_000)
    cut = write(tmp_path / "cut.jsonl.zst", payload[: len(payload) // 2])
    with pytest.raises(CorpusReadError) as info:
        read_all(cut)
    assert info.value.path == str(cut)
    gz = write(tmp_path / "cut.jsonl.gz", gzip.compress(b'{"text": "abc"}\n' * 1000)[:-20])
    with pytest.raises(CorpusReadError):
        read_all(gz)
    # A read error comes after every line read before it (lines are parsed in blocks of 1,024).
    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(3000))
    cut_gz = write(tmp_path / "cut3000.jsonl.gz", gzip.compress(data)[:-20])
    readable = zlib.decompressobj(31).decompress(cut_gz.read_bytes()).count(b"\n")
    assert 2048 < readable < 3000
    records: list = []
    with pytest.raises(CorpusReadError, match=rf"\(after line {readable}\)"):
        records.extend(r for batch in DocumentReader(cut_gz, batch_records=1) for r in batch)
    assert [r.text for r in records] == [f"line {i}" for i in range(readable)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(CorpusFormatError, match="no column named"):
        read_all(path)
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(CorpusFormatError, match="type int64"):
        read_all(path)
    with pytest.raises(InvalidArgumentError, match="on_error"):
        DocumentReader(["x"], on_error="ignore")
    with pytest.raises(InvalidArgumentError, match="expected texts"):
        read_all(42)


def test_arrow_batches_hold_the_documents_the_readers_take(mixed_file: Path, tmp_path: Path) -> None:
    table = pa.table({"text": ["parquet row", None, "another row"]})
    parquet = tmp_path / "rows.parquet"
    pq.write_table(table, parquet)
    batches = ArrowBatches([mixed_file, parquet], batch_rows=2)
    with pytest.raises(InvalidArgumentError, match="every batch"):
        batches.report  # noqa: B018 (not known before the end)
    got = list(batches)
    assert all(b.num_rows <= 2 and len(set(b.column("source").to_pylist())) == 1 for b in got)
    assert got[0].schema.types == [pa.large_string(), pa.int32(), pa.uint64()]
    rows = pa.Table.from_batches(got).to_pylist()
    expected = [(GOOD[i], 0, line) for i, line in enumerate([1, 12, 13])]
    expected += [("parquet row", 1, 1), ("another row", 1, 3)]
    assert [(r["text"], r["source"], r["line"]) for r in rows] == expected
    assert batches.report == scan([mixed_file, parquet])
    with pytest.raises(InvalidArgumentError, match="once"):
        iter(batches)


def test_arrow_batches_equal_the_python_reader_on_real_files(shared_data: Path) -> None:
    files = sorted((shared_data / "raw_pool").glob("*.jsonl.zst"))[:3]
    batches = ArrowBatches(files, num_threads=2)
    texts = [t for b in batches for t in b.column("text").to_pylist()]
    records, report = read_all(files)
    assert texts == [r.text for r in records]
    assert batches.report == report


def test_arrow_batches_raise_read_errors_after_the_good_batches(tmp_path: Path) -> None:
    good = write(tmp_path / "a.jsonl", b'{"text": "kept"}\n')
    batches = ArrowBatches([good, tmp_path / "missing.jsonl"])
    iterator = iter(batches)
    assert next(iterator).column("text").to_pylist() == ["kept"]
    with pytest.raises(CorpusNotFoundError):
        next(iterator)
    bad = write(tmp_path / "bad.jsonl", b'{"text": "ok"}\nnot json\n')
    with pytest.raises(BadRecordError) as info:
        list(ArrowBatches(bad, on_error="raise"))
    assert (info.value.path, info.value.line) == (str(bad), 2)
    with pytest.raises(InvalidArgumentError):
        ArrowBatches(good, batch_rows=0)
    # Stopping early (dropping the iterator) ends the reading thread.
    many = write(tmp_path / "many.jsonl", b'{"text": "x"}\n' * 100_000)
    iterator = iter(ArrowBatches(many, batch_rows=10))
    assert next(iterator).num_rows == 10
    assert reader_threads() == 1  # blocked on its full channel
    del iterator
    # The thread has been joined; the kernel drops it from /proc/self/task a moment later.
    deadline = time.monotonic() + 5.0
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert reader_threads() == 0


def reader_threads() -> int:
    """Threads of this process named like ArrowBatches' reading thread (Linux truncates names
    to 15 bytes); a thread that ends while they are listed is not counted."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        pytest.skip("thread names are read from /proc")
    count = 0
    for task in tasks.iterdir():
        with contextlib.suppress(FileNotFoundError):
            count += (task / "comm").read_text().startswith("tokensieve-rea")
    return count
