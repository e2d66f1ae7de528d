"""Output helpers shared by the writers: atomic files, checksums, output directories."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.output import (
    atomic_file,
    file_sha256,
    files_sha256_in_background,
    prepare_output_dir,
    remove_stale_shards,
    write_json,
    write_npy,
)


def test_atomic_file_replaces_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def killed_mid_write() -> None:
        with atomic_file(path) as f:
            f.write(b"partial")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        killed_mid_write()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no .tmp left behind
    with atomic_file(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not visible until the block ends
    assert path.read_bytes() == b"new"


def test_json_and_npy_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"a": [1, 2], "b": None})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": None}
    counts = np.arange(7, dtype=np.int64)
    write_npy(tmp_path / "c.npy", counts)
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy", allow_pickle=False), counts)
    with pytest.raises(ValueError, match="pickle"):
        write_npy(tmp_path / "o.npy", np.array([object()], dtype=object))
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.npy.tmp").exists()


def test_file_sha256_matches_hashlib_across_blocks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=(1 << 20) + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


def test_background_digests_come_back_in_path_order(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    blobs = [rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 3 << 20, 5)]
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(blob)
    for threads in (1, 2, None):
        assert files_sha256_in_background(paths, threads)() == [hashlib.sha256(b).hexdigest() for b in blobs]
    with pytest.raises(FileNotFoundError):
        files_sha256_in_background([tmp_path / "missing"], 2)()


def test_prepare_output_dir_refuses_strangers(tmp_path: Path) -> None:
    out = prepare_output_dir(tmp_path / "new" / "dir", lambda name: name.startswith("part-"))
    assert out.is_dir()
    (out / "part-00000.jsonl").write_text("")
    assert prepare_output_dir(out, lambda name: name.startswith("part-")) == out
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match=r"did not write: \['notes.txt'\]"):
        prepare_output_dir(out, lambda name: name.startswith("part-"))


def test_remove_stale_shards_keeps_written_ones(tmp_path: Path) -> None:
    for name in ("part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl", "manifest.json"):
        (tmp_path / name).write_text("")
    remove_stale_shards(tmp_path, [str(tmp_path / "part-00000.jsonl"), tmp_path / "part-00002.jsonl"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "part-00000.jsonl",
        "part-00002.jsonl",
    ]
