"""tokensieve.scoring: per-document statistics against a float64 computation done here from the
model's own logits, one document at a time; invariance to packing, windowing and chunking; the
accounting of every record; the score and plot commands.

The models are tiny (tens of thousands of parameters) and trained here for a few steps on the
bundled demo sample, so the file needs no download and runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import DEMO_DATA, read_jsonl_zst  # noqa: E402
from tokensieve import scoring  # noqa: E402
from tokensieve.cli import main  # noqa: E402
from tokensieve.exceptions import BadRecordError, InvalidArgumentError  # noqa: E402
from tokensieve.io import Files  # noqa: E402
from tokensieve.scoring import COLUMNS, TokenScorer, manifest_path, windows  # noqa: E402
from tokensieve.training import train_causal_lm, train_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FLOATS = [name for name, kind in COLUMNS.items() if kind == "float64"]
#: fp32 model and kernels against float64 on the same logits; the sums over a few hundred
#: tokens and the fp32 LM head (recomputed on other row counts) are the largest terms.
RTOL, ATOL = 2e-5, 2e-5


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Forty-odd real documents of varied length, cut to at most 600 characters."""
    records = read_jsonl_zst(DEMO_DATA / "demo_raw.jsonl.zst", 48)
    return [r["text"][: 40 + (i * 97) % 560] for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def lm_dir(texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm")
    tokenizer = train_tokenizer(texts, vocab_size=384)
    train_causal_lm(
        texts,
        tokenizer,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        seq_len=32,
        batch_size=8,
        steps=20,
        out_dir=out,
    )
    return out


@pytest.fixture(scope="module")
def scorer(lm_dir: Path) -> TokenScorer:
    return TokenScorer.from_pretrained(lm_dir, device="cpu")


def reference_rows(
    model: torch.nn.Module,
    encode,
    docs: Sequence[str],
    *,
    max_length: int | None = None,
    stride: int | None = None,
    ratio: float = 0.2,
) -> list[dict[str, float]]:
    """The statistics of each document from ``model(ids).logits`` in float64, one document at a
    time. With ``max_length``, target t is predicted from the window that starts at ``k *
    stride`` for the smallest k with ``t < k * stride + max_length`` (the closed form of the
    documented windowing)."""
    rows = []
    for text in docs:
        ids = torch.tensor(encode(text))
        n = len(ids)
        length = max_length or n
        step = stride or length - 1
        logits = torch.empty((n - 1, model.config.vocab_size), dtype=torch.float64)
        context_of = [max(0, math.ceil((t - length + 1) / step)) * step for t in range(1, n)]
        with torch.no_grad():
            for start in sorted(set(context_of)):
                window = ids[start : min(start + length, n)]
                out = model(input_ids=window[None]).logits[0].double()
                for t in range(start + 1, start + len(window)):
                    if context_of[t - 1] == start:
                        logits[t - 1] = out[t - 1 - start]
        logp = torch.log_softmax(logits, dim=-1)
        p = logp.exp()
        targets = ids[1:]
        lp = logp[torch.arange(n - 1), targets]
        mu = (p * logp).sum(-1)
        var = (p * logp * logp).sum(-1) - mu * mu
        onehot = torch.nn.functional.one_hot(targets, logits.shape[1]).double()
        nll = (-lp).numpy()
        k = int(len(lp) * ratio)
        z = ((lp - mu) / var.sqrt()).numpy()
        sum_nll = float(nll.sum())
        row = {
            "tokens": n - 1,
            "bytes": len(text.encode("utf-8")),
            "chars": len(text),
            "sum_nll": sum_nll,
            "mean_nll": float(nll.mean()),
            "bits_per_byte": sum_nll / (len(text.encode("utf-8")) * math.log(2)),
            "bits_per_char": sum_nll / (len(text) * math.log(2)),
            "perplexity": math.exp(nll.mean()),
            "mean_entropy": float(-mu.mean()),
            "min_k": float(np.sort(lp.numpy())[:k].mean()) if k else math.nan,
            "min_k_plus_plus": float(np.sort(z)[:k].mean()) if k else math.nan,
            "el2n": float((p - onehot).norm(dim=-1).mean()),
            **dict(zip(("nll_q10", "nll_q50", "nll_q90"), np.quantile(nll, [0.1, 0.5, 0.9]), strict=True)),
        }
        rows.append(row)
    return rows


def assert_rows_match(table: pa.Table, expected: list[dict[str, float]], rtol: float = RTOL) -> None:
    assert table.schema.names == list(COLUMNS)
    assert [str(t) for t in table.schema.types] == [
        {"string": "string", "int64": "int64", "float64": "double"}[k] for k in COLUMNS.values()
    ]
    assert table.num_rows == len(expected)
    for name in ("tokens", "bytes", "chars"):
        assert table.column(name).to_pylist() == [row[name] for row in expected], name
    for name in FLOATS:
        np.testing.assert_allclose(
            table.column(name).to_numpy(), [row[name] for row in expected], rtol=rtol, atol=ATOL, err_msg=name
        )


def hf_encode(tokenizer, add_special_tokens: bool = True):
    return lambda text: tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


# ---------------------------------------------------------------------------------------------
# statistics


@pytest.mark.parametrize("packing", ["pack", "pad"])
def test_statistics_equal_a_float64_computation_per_document(
    scorer: TokenScorer, texts: list[str], packing: str
) -> None:
    s = TokenScorer(scorer.model, scorer.tokenizer, packing=packing)
    assert s.packing == packing
    table = s.score(texts, max_length=512, batch_size=2)
    expected = reference_rows(scorer.model, hf_encode(scorer.tokenizer), texts)
    assert max(row["tokens"] for row in expected) < 512  # one window per document
    assert_rows_match(table, expected)
    assert table.column("id").to_pylist() == [str(i) for i in range(len(texts))]
    # the model's own loss (its cross-entropy over the shifted labels) is the mean NLL
    ids = torch.tensor(hf_encode(scorer.tokenizer)(texts[3]))[None]
    with torch.no_grad():
        loss = scorer.model(input_ids=ids, labels=ids).loss
    assert table.column("mean_nll")[3].as_py() == pytest.approx(float(loss), rel=1e-5)


def test_packing_auto_detects_a_model_that_keeps_packed_documents_apart(scorer: TokenScorer) -> None:
    assert scorer.packing == "pack"  # LLaMA builds its masks from the packed position ids


def test_windows_score_every_target_once_with_the_documented_context(
    scorer: TokenScorer, texts: list[str]
) -> None:
    long_docs = sorted(texts, key=len)[-3:]
    scorers = [TokenScorer(scorer.model, scorer.tokenizer, packing=packing) for packing in ("pack", "pad")]
    for max_length, stride in ((16, 5), (24, None), (9, 8)):
        expected = reference_rows(
            scorer.model, hf_encode(scorer.tokenizer), long_docs, max_length=max_length, stride=stride
        )
        for s in scorers:
            assert_rows_match(
                s.score(long_docs, max_length=max_length, stride=stride, batch_size=3), expected
            )


def test_forward_passes_stay_within_the_token_budget(scorer: TokenScorer, texts: list[str]) -> None:
    encode = hf_encode(scorer.tokenizer)
    window_tokens = sum(end - start for t in texts for start, end, _ in windows(len(encode(t)), 64, 32))
    for packing, least_filled in (("pack", 0.95), ("pad", 0.9)):
        s = TokenScorer(scorer.model, scorer.tokenizer, packing=packing)
        slots = 0
        for inputs in s.forward_inputs(texts, max_length=64, stride=32, batch_size=4):
            rows, width = inputs["input_ids"].shape
            assert width <= 64 and width % 8 == 0 and rows * width <= 4 * 64
            assert (inputs["attention_mask"] is None) == (packing == "pack")
            assert int((inputs["position_ids"] == 0).sum()) >= rows  # every row starts a window
            slots += rows * width
        assert window_tokens / slots >= least_filled, packing


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION:UserWarning")
def test_the_kernel_path_under_the_triton_interpreter(scorer: TokenScorer, texts: list[str]) -> None:
    from tokensieve.triton_kernels import token_stats as token_module

    if not token_module.interpreted():
        pytest.skip("the kernels were not imported under TRITON_INTERPRET=1")
    s = TokenScorer(scorer.model, scorer.tokenizer, backend="triton")
    docs = texts[:2]  # the interpreter runs each program in numpy: a hundred tokens or so
    table = s.score(docs, max_length=24, stride=16)
    expected = reference_rows(scorer.model, hf_encode(scorer.tokenizer), docs, max_length=24, stride=16)
    assert_rows_match(table, expected, rtol=1e-4)  # fp32 per-document sums in the kernel


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("packing", ["pack", "pad"])
def test_gpu_scoring_matches_the_cpu_reference(lm_dir: Path, texts: list[str], packing: str) -> None:
    cpu_model = transformers.AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    fp32 = TokenScorer.from_pretrained(lm_dir, device="cuda", dtype=torch.float32, packing=packing)
    table = fp32.score(texts, max_length=64, stride=40, batch_size=4)
    expected = reference_rows(cpu_model, hf_encode(fp32.tokenizer), texts, max_length=64, stride=40)
    assert_rows_match(table, expected, rtol=1e-4)  # the Triton kernels sum in fp32
    # bf16 weights and activations are another model, close to the fp32 one: the averages agree
    # to about 2^-8 relative (methods.md section 0.4); order statistics may move more
    bf16 = TokenScorer.from_pretrained(lm_dir, device="cuda", dtype=torch.bfloat16, packing=packing)
    table = bf16.score(texts, max_length=64, stride=40, batch_size=4)
    for name in ("mean_nll", "bits_per_byte", "mean_entropy", "el2n"):
        np.testing.assert_allclose(table.column(name).to_numpy(), [r[name] for r in expected], rtol=3e-2)


def test_window_plan() -> None:
    assert windows(5, 8, 7) == [(0, 5, 1)]
    assert windows(20, 9, 3) == [(0, 9, 1), (3, 12, 9), (6, 15, 12), (9, 18, 15), (12, 20, 18)]
    for n, length, stride in ((2, 2, 1), (100, 10, 9), (101, 10, 1), (57, 16, 5)):
        scored = [t for _, end, first in windows(n, length, stride) for t in range(first, end)]
        assert scored == list(range(1, n))


def test_results_do_not_depend_on_batching_or_chunking(
    scorer: TokenScorer, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_chunk = scorer.score(texts, max_length=64, stride=40, batch_size=64)
    monkeypatch.setattr(scoring, "CHUNK_BATCHES", 1)
    many = scorer.score(texts, max_length=64, stride=40, batch_size=1)
    assert one_chunk.column("id").equals(many.column("id"))
    for name in FLOATS:
        np.testing.assert_allclose(many.column(name).to_numpy(), one_chunk.column(name).to_numpy(), rtol=1e-5)


class Bigram(torch.nn.Module):
    """A model whose prediction depends on the current token only (no context at all)."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=True)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.embed(input_ids)


class CausalMean(torch.nn.Module):
    """Hidden state = running mean of the embeddings of the row: context-dependent, and blind to
    position ids, so packing mixes documents."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        e = self.embed(input_ids)
        return e.cumsum(1) / torch.arange(1, e.shape[1] + 1)[None, :, None]


def test_any_module_with_an_lm_head(scorer: TokenScorer, texts: list[str]) -> None:
    texts = texts[:16]
    torch.manual_seed(0)
    bigram = Bigram(len(scorer.tokenizer), 8).double()
    encode = hf_encode(scorer.tokenizer)

    class Wrapped(torch.nn.Module):  # the reference needs .logits and .config
        config = type("C", (), {"vocab_size": len(scorer.tokenizer)})

        def forward(self, input_ids):
            return type("O", (), {"logits": bigram.head(bigram(input_ids))})

    expected = reference_rows(Wrapped(), encode, texts)
    for packing, max_length, stride in (("pack", 64, None), ("pad", 16, 3), ("auto", 7, 2)):
        s = TokenScorer(bigram, scorer.tokenizer, lm_head=bigram.head, packing=packing)
        assert_rows_match(
            s.score(texts, max_length=max_length, stride=stride, batch_size=2), expected, rtol=1e-9
        )

    mean_model = CausalMean(len(scorer.tokenizer), 8).double()
    auto = TokenScorer(mean_model, scorer.tokenizer, lm_head=mean_model.head.weight)
    assert auto.packing == "pad"  # the probe saw packed sequences mix
    with pytest.raises(InvalidArgumentError, match="packing='pad'"):
        TokenScorer(mean_model, scorer.tokenizer, lm_head=mean_model.head, packing="pack")

    class WrappedMean(torch.nn.Module):
        config = Wrapped.config

        def forward(self, input_ids):
            return type(
                "O", (), {"logits": torch.nn.functional.linear(mean_model(input_ids), mean_model.head.weight)}
            )

    assert_rows_match(
        auto.score(texts, max_length=512, batch_size=3), reference_rows(WrappedMean(), encode, texts)
    )


def test_a_tokenizer_without_bos_leaves_the_first_token_unscored(
    scorer: TokenScorer, texts: list[str]
) -> None:
    s = TokenScorer(scorer.model, scorer.tokenizer, add_special_tokens=False)
    encode = hf_encode(scorer.tokenizer, add_special_tokens=False)
    table, report = s.score([*texts[:6], "a", ""], max_length=512, return_report=True)
    assert_rows_match(table, reference_rows(scorer.model, encode, texts[:6]))
    for text, tokens in zip(texts[:6], table.column("tokens").to_pylist(), strict=True):
        assert tokens == len(encode(text)) - 1 == len(hf_encode(scorer.tokenizer)(text)) - 2
    assert dict(report.skipped) == {"too_short": 1, "empty_text": 1}
    assert [(r.line, r.reason) for r in report.skipped_documents] == [(7, "too_short"), (8, "empty_text")]


def test_gpt2_and_a_raw_tokenizers_tokenizer(scorer: TokenScorer, texts: list[str]) -> None:
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=len(scorer.tokenizer),
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    gpt2 = transformers.GPT2LMHeadModel(config).eval()
    raw = scorer.tokenizer.backend_tokenizer  # a tokenizers.Tokenizer
    s = TokenScorer(gpt2, raw)
    assert s.packing == "pack"
    table = s.score(texts[:12], max_length=32, stride=20)
    encode = lambda text: raw.encode(text).ids  # noqa: E731
    assert_rows_match(table, reference_rows(gpt2, encode, texts[:12], max_length=32, stride=20))


def test_a_model_that_scales_its_logits_is_refused(scorer: TokenScorer) -> None:
    class Scaled(transformers.LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    scaled = Scaled(scorer.model.config)
    scaled.load_state_dict(scorer.model.state_dict())
    with pytest.raises(InvalidArgumentError, match="logit scale"):
        TokenScorer(scaled, scorer.tokenizer)


def test_bad_arguments(scorer: TokenScorer, lm_dir: Path, tmp_path: Path) -> None:
    for kwargs, match in (
        ({"max_length": 1}, "max_length"),
        ({"max_length": 10_000}, "max_position_embeddings"),
        ({"max_length": 8, "stride": 8}, "stride"),
        ({"max_length": 8, "stride": 0}, "stride"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_k_ratio": 0}, "min_k_ratio"),
    ):
        with pytest.raises(InvalidArgumentError, match=match):
            scorer.score(["x y"], **kwargs)
    with pytest.raises(InvalidArgumentError, match="packing"):
        TokenScorer(scorer.model, scorer.tokenizer, packing="tight")
    with pytest.raises(InvalidArgumentError, match="lm_head"):
        TokenScorer(Bigram(10, 4), scorer.tokenizer)
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        TokenScorer.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError):
        scorer.score_to_parquet(["x"], tmp_path / "s.parquet", max_lenght=8)


# ---------------------------------------------------------------------------------------------
# inputs, accounting, output files


def write_corpus(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_files_are_streamed_and_every_record_accounted_for(
    scorer: TokenScorer, texts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = texts[:5]
    lines = [
        json.dumps({"text": good[0], "id": "doc-a"}).encode(),
        b"",
        json.dumps({"text": good[1]}).encode(),
        b'{"text": "cut',
        json.dumps({"body": "no text"}).encode(),
        json.dumps({"text": "", "id": "empty"}).encode(),
        json.dumps({"text": good[2], "id": 7}).encode(),
    ]
    (tmp_path / "a").mkdir()
    first = write_corpus(tmp_path / "a" / "one.jsonl", lines)
    second = write_corpus(tmp_path / "b.jsonl", [json.dumps({"text": t}).encode() for t in good[3:]])
    out = tmp_path / "out" / "scores.parquet"
    report = scorer.score_to_parquet(Files([first, second]), out, max_length=512)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["doc-a", "a/one.jsonl:3", "7", "b.jsonl:1", "b.jsonl:2"]
    assert_rows_match(table, reference_rows(scorer.model, hf_encode(scorer.tokenizer), good))
    assert table.equals(scorer.score(Files([first, second]), max_length=512, progress=True))
    size = (first.stat().st_size + second.stat().st_size) / 1e6
    assert f"/ {size:.1f} MB 100.0%" in capsys.readouterr().err.split("\r")[-1]

    assert report.scored == 5 and report.records == len(lines) + 2
    assert report.records == report.scored + report.read.skipped_total + sum(report.skipped.values())
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest_path(out).name == "scores.manifest.json"
    assert manifest["counts"]["skipped"] == {
        "blank_line": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "empty_text": 1,
    }
    assert manifest["counts"]["records"] == 9 and manifest["counts"]["scored"] == 5
    assert [(r["line"], r["reason"]) for r in manifest["skipped_records"]] == [
        (4, "malformed_json"),
        (5, "missing_field"),
        (6, "empty_text"),
    ]
    assert [(s["records"], s["scored"], s["skipped"]) for s in manifest["sources"]] == [(7, 3, 4), (2, 2, 0)]
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert manifest["config"]["packing"] == "pack" and manifest["output"]["rows"] == 5
    assert not list(out.parent.glob("*.tmp"))

    with pytest.raises(BadRecordError) as info:
        scorer.score(first, on_error="raise")
    assert (info.value.path, info.value.line, info.value.reason) == (str(first), 4, "malformed_json")


def test_parquet_rows_are_gathered_into_row_groups(
    scorer: TokenScorer, texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "PARQUET_ROW_GROUP_ROWS", 4)
    out = tmp_path / "s.parquet"
    scorer.score_to_parquet(texts[:10], out, max_length=48, batch_size=1)  # chunks of a few rows
    parquet = pq.ParquetFile(out)
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [4, 4, 2]
    assert parquet.read().equals(scorer.score(texts[:10], max_length=48, batch_size=1))


@pytest.fixture
def checkpointed(texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Files, dict]:
    """Two files of documents with bad records and unscorable documents between them, and the
    options that score them in chunks of a few documents, with a checkpoint after each."""
    monkeypatch.setattr(scoring, "CHUNK_BATCHES", 1)
    monkeypatch.setattr(scoring, "CHECKPOINT_ROWS", 1)
    first = [json.dumps({"text": t}).encode() for t in texts[:8]]
    first[2:2] = [b"", b'{"text": "cut', json.dumps({"text": ""}).encode()]
    second = [json.dumps({"text": t, "id": f"b{i}"}).encode() for i, t in enumerate(texts[8:14])]
    second[4:4] = [json.dumps({"body": "no text"}).encode()]
    files = Files([write_corpus(tmp_path / "one.jsonl", first), write_corpus(tmp_path / "two.jsonl", second)])
    return files, {"max_length": 64, "batch_size": 2}


SCORE_CHUNK = TokenScorer._score_chunk


def kill_after(monkeypatch: pytest.MonkeyPatch, chunks: int | None) -> list[int]:
    """Makes TokenScorer fail in the chunk after ``chunks`` scored chunks (``None``: never);
    returns the documents of each chunk scored."""
    scored: list[int] = []

    def score_chunk(self, chunk, opts):
        if len(scored) == chunks:
            raise RuntimeError("killed")
        scored.append(len(chunk.records))
        return SCORE_CHUNK(self, chunk, opts)

    monkeypatch.setattr(TokenScorer, "_score_chunk", score_chunk)
    return scored


def manifest_without_times(out: Path) -> dict:
    manifest = json.loads(manifest_path(out).read_text())
    del manifest["created"], manifest["seconds"], manifest["counts"]["resumed"]
    return manifest


def test_an_interrupted_run_resumes_from_its_checkpoint(
    scorer: TokenScorer,
    checkpointed: tuple[Files, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    corpus, options = checkpointed
    clean = tmp_path / "clean" / "scores.parquet"
    every_chunk = kill_after(monkeypatch, None)
    scorer.score_to_parquet(corpus, clean, **options)
    assert len(every_chunk) >= 5 and not (tmp_path / "clean" / "scores.parquet.parts").exists()

    out = tmp_path / "out" / "scores.parquet"
    parts = tmp_path / "out" / "scores.parquet.parts"
    before = kill_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="killed"):
        scorer.score_to_parquet(corpus, out, **options)
    assert not out.exists() and sorted(p.name for p in parts.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "state.json",
    ]
    (parts / "part-00003.parquet").write_bytes(b"a part written after the last state")

    after = kill_after(monkeypatch, None)
    with caplog.at_level("WARNING", logger="tokensieve"):
        report = scorer.score_to_parquet(corpus, out, **options)
    assert f"resuming the interrupted run in {parts}: {sum(before)} documents scored" in caplog.text
    # Only the documents after the checkpoint were scored again, in the same chunks.
    assert after == every_chunk[3:] and before == every_chunk[:3]
    assert report.resumed == sum(before) and report.scored == sum(every_chunk)
    assert f"({sum(before)} of the documents by an interrupted run, resumed)" in report.summary()
    assert pq.read_table(out).equals(pq.read_table(clean))  # bit for bit
    assert manifest_without_times(out) == manifest_without_times(clean)
    assert json.loads(manifest_path(out).read_text())["counts"]["resumed"] == sum(before)
    assert not parts.exists()


def test_a_checkpoint_resumes_only_the_same_run(
    scorer: TokenScorer,
    checkpointed: tuple[Files, dict],
    texts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus, options = checkpointed
    out = tmp_path / "scores.parquet"
    kill_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        scorer.score_to_parquet(corpus, out, **options)

    kill_after(monkeypatch, None)
    with pytest.raises(
        InvalidArgumentError, match=r"scores.parquet.parts holds an interrupted run with other options"
    ):
        scorer.score_to_parquet(corpus, out, max_length=32, batch_size=2)
    with pytest.raises(InvalidArgumentError, match=r"other files"):
        scorer.score_to_parquet(Files(corpus.paths[:1]), out, **options)
    with monkeypatch.context() as other_model:  # other weights, same shapes
        other_model.setattr(scorer, "head_weight", scorer.head_weight * 1.001)
        with pytest.raises(InvalidArgumentError, match=r"other model"):
            scorer.score_to_parquet(corpus, out, **options)
    trunk = next(p for name, p in scorer.model.named_parameters() if ".0." in name)  # in block 0
    original = trunk.detach().clone()
    with torch.no_grad():  # a fine-tuned trunk under the same LM head
        trunk.mul_(1.001)
        try:
            with pytest.raises(InvalidArgumentError, match=r"other model"):
                scorer.score_to_parquet(corpus, out, **options)
        finally:
            trunk.copy_(original)

    # A damaged or hostile state is refused with a typed error, not used.
    parts = tmp_path / "scores.parquet.parts"
    state = json.loads((parts / "state.json").read_text())
    for damaged in (
        "{",
        json.dumps({**state, "parts": ["../../scores.parquet"]}),
        json.dumps({**state, "rows": "2"}),
    ):
        (parts / "state.json").write_text(damaged)
        with pytest.raises(InvalidArgumentError, match=r"state.json cannot be read"):
            scorer.score_to_parquet(corpus, out, **options)
    all_again = kill_after(monkeypatch, None)
    report = scorer.score_to_parquet(corpus, out, resume=False, **options)
    assert report.resumed == 0 and sum(all_again) == report.scored

    # Input in memory cannot be recognised: it always starts over.
    kill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="killed"):
        scorer.score_to_parquet(texts[:10], out, **options)
    all_again = kill_after(monkeypatch, None)
    assert scorer.score_to_parquet(texts[:10], out, **options).resumed == 0 and sum(all_again) == 10
    assert pq.read_table(out).num_rows == 10  # the earlier run's parts are not in it

    foreign = tmp_path / "other.parquet.parts"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="not a tokensieve checkpoint"):
        scorer.score_to_parquet(corpus, tmp_path / "other.parquet", **options)
    assert (foreign / "notes.txt").exists()


def test_compressed_parquet_and_in_memory_sources_agree(
    scorer: TokenScorer, texts: list[str], tmp_path: Path
) -> None:
    zstandard = pytest.importorskip("zstandard")
    docs = texts[:8]
    records = [{"text": t, "id": f"d{i}"} for i, t in enumerate(docs)]
    payload = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    pq.write_table(pa.table({"id": [r["id"] for r in records], "text": docs}), tmp_path / "c.parquet")
    expected = scorer.score(records, max_length=100)
    assert expected.column("id").to_pylist() == [f"d{i}" for i in range(8)]
    for source in (
        tmp_path / "c.jsonl.zst",
        tmp_path / "c.parquet",
        iter(records),
        pa.table({"text": docs, "id": [f"d{i}" for i in range(8)]}),
    ):
        assert scorer.score(source, max_length=100).equals(expected)
    by_position = scorer.score(pa.array(docs), max_length=100)
    assert by_position.column("id").to_pylist() == [str(i) for i in range(8)]
    assert by_position.drop_columns(["id"]).equals(expected.drop_columns(["id"]))
    assert (
        scorer.score(records, id_field=None, max_length=100).column("id").to_pylist()
        == by_position.column("id").to_pylist()
    )


def test_an_empty_source_gives_an_empty_table(scorer: TokenScorer, tmp_path: Path) -> None:
    table, report = scorer.score([], return_report=True)
    assert table.num_rows == 0 and table.schema.names == list(COLUMNS)
    assert report.records == 0
    out = tmp_path / "empty.parquet"
    scorer.score_to_parquet(write_corpus(tmp_path / "blank.jsonl", [b""]), out)
    assert pq.read_table(out).num_rows == 0


def test_score_and_plot_commands(
    lm_dir: Path, texts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    corpus = write_corpus(tmp_path / "c.jsonl", [json.dumps({"text": t}).encode() for t in texts[:20]])
    out = tmp_path / "scores.parquet"
    args = ["score", "--model", str(lm_dir), "--input", str(corpus), "--out", str(out)]
    assert main([*args, "--max-length", "64", "--stride", "48", "--device", "cpu", "--no-progress"]) == 0
    assert "20 documents scored" in capsys.readouterr().out
    table = pq.read_table(out)
    api = TokenScorer.from_pretrained(lm_dir, device="cpu").score(Files(corpus), max_length=64, stride=48)
    assert table.equals(api)
    assert json.loads(manifest_path(out).read_text())["counts"]["scored"] == 20

    values = np.sort(table.column("mean_nll").to_numpy())
    for rule, threshold in ((["--top-k", "5"], values[4]), (["--quantile", "0.5"], np.median(values))):
        png = tmp_path / f"{rule[0][2:]}.png"
        assert main(["plot", "--scores", str(out), "--column", "mean_nll", *rule, "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        printed = capsys.readouterr().out
        assert f"threshold {threshold:.6g}" in printed
    assert "keeps the low side: 5 of 20" in main_output(["--top-k", "5"], out, tmp_path, capsys)
    high = main_output(
        ["--threshold", str(values[-3]), "--keep", "high", "--column", "mean_nll"], out, tmp_path, capsys
    )
    assert "3 of 20" in high
    assert main(["plot", "--scores", str(out), "--column", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def main_output(rule: list[str], scores: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["plot", "--scores", str(scores), *rule, "--out", str(tmp_path / "p.png")]) == 0
    return capsys.readouterr().out
