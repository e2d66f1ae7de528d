"""The command line: the demo runs on the bundled sample; featurize writes what the API computes;
every option is documented."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from tokensieve import HashedNgrams
from tokensieve.cli import build_parser, demo_files, main


def test_demo_runs_dsir_on_the_bundled_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--num-threads", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1,865 records" in out  # the raw sample, every line a document
    assert "KL reduction +" in out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["selected"] + counts["not_selected"] + counts["too_short"] == counts["records"] == 1865
    assert all(p.stat().st_size < 2_000_000 for p in demo_files().values())


def test_dsir_command_writes_what_the_api_selects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = demo_files()
    args = ["dsir", "--raw", str(files["raw"]), "--target", str(files["target"]), "--k", "50"]
    assert (
        main([*args, "--seed", "5", "--format", "jsonl", "--out", str(tmp_path / "cli"), "--progress"]) == 0
    )
    printed = capsys.readouterr()
    assert "selected 50 /" in printed.out
    raw_size = files["raw"].stat().st_size / 1e6
    # The weights come from the bucket ids spilled while fitting: no pass over the files, no bar.
    for phase in ("fit raw", "fit target"):
        final = [line for line in printed.err.split("\n") if line.startswith(f"\r{phase} ")][-1]
        assert "100.0%" in final, final
    assert f"/ {raw_size:.1f} MB 100.0%" in printed.err
    from tokensieve import DSIR
    from tokensieve.io import Files

    api = DSIR(Files([files["raw"]]), Files([files["target"]])).fit()
    api.resample(50, seed=5, out=tmp_path / "api", output_format="jsonl")
    cli_shard = (tmp_path / "cli" / "part-00000.jsonl").read_bytes()
    assert cli_shard == (tmp_path / "api" / "part-00000.jsonl").read_bytes()
    assert cli_shard.count(b"\n") == 50


def test_featurize_writes_the_api_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"body": t}) for t in ["a b c", "b c d"]) + "\nnot json\n")
    out = tmp_path / "counts.npy"
    args = ["featurize", str(corpus), "--text-field", "body", "--hash", "fast-v1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "3 records, 2 documents, skipped: 1 malformed_json" in printed
    expected = HashedNgrams(hash="fast-v1").sum_counts(["a b c", "b c d"])
    np.testing.assert_array_equal(np.load(out), expected)


def test_featurize_reports_errors_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": 1}\n')
    assert main(["featurize", str(corpus), "--on-error", "raise"]) == 2
    assert f"{corpus}:1: not_a_string" in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) == 8
    for name, command in commands.choices.items():
        for action in command._actions:
            option = "/".join(action.option_strings) or action.dest
            assert action.help, f"tokensieve {name} {option} has no help"
        with pytest.raises(SystemExit) as exit:
            main([name, "--help"])
        assert exit.value.code == 0
        text = capsys.readouterr().out
        # Defaults are shown; options without one (None) are not given a "(default: None)".
        assert "(default: None)" not in text
    assert "--seed SEED seed of the sampling (default: 0)" in _help("dsir", capsys)
    score = _help("score", capsys)
    assert "--text-field" in score and "--id-field" in score  # the names the other commands use


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # whatever the terminal width
