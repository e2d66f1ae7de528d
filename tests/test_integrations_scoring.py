"""TokenScores, the language-model scorer as a batch function: in ``datasets``' map with 2
processes, on Ray actors and in a datatrove pipeline it gives, row for row, what
``TokenScorer.score`` gives on the same texts in this process, with nulls and a reason for the
texts it does not score; it pickles as the model directory's path, hash and options, and loads
the model on first use.

The values are compared within ``RTOL`` rather than bit for bit: a batch function scores the
texts of each batch together, so the scorer's forward passes hold other documents than a call
on all the texts at once, and the fp32 matrix products (blocked over the rows of a pass) may
round differently (seen: 1e-8 relative, in ``min_k_plus_plus``). Rows out of place, another
model or other options give differences of order 1.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")

from conftest import DEMO_DATA, read_jsonl_zst  # noqa: E402
from tokensieve.exceptions import InvalidArgumentError, ModelFormatError  # noqa: E402
from tokensieve.integrations.batch import TokenScores  # noqa: E402
from tokensieve.scoring import COLUMNS, TokenScorer  # noqa: E402
from tokensieve.training import train_causal_lm, train_tokenizer  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # Ray Data warns when a pool is larger than the blocks it gets, which small test data makes true.
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
]

#: Every column but the id, so that every statistic goes through each engine.
ALL = tuple(name for name in COLUMNS if name != "id")
#: Short windows, so that the longer texts are scored in several.
OPTIONS = {"max_length": 48, "stride": 32, "batch_size": 4}
RTOL = 1e-6
EMPTY, NULL = 3, 5


@pytest.fixture(scope="module")
def texts() -> list[str | None]:
    """Thirty real documents of 40 to 600 characters, an empty text and a null."""
    records = read_jsonl_zst(DEMO_DATA / "demo_raw.jsonl.zst", 30)
    out: list[str | None] = [r["text"][: 40 + (i * 97) % 560] for i, r in enumerate(records)]
    out[EMPTY], out[NULL] = "", None
    return out


@pytest.fixture(scope="module")
def lm_dir(texts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA (hidden size 16, one layer, 300 tokens) trained for 5 steps and saved."""
    docs = [t for t in texts if t]
    out = tmp_path_factory.mktemp("tiny_lm")
    tokenizer = train_tokenizer(docs, vocab_size=300)
    train_causal_lm(
        docs,
        tokenizer,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        seq_len=32,
        batch_size=4,
        steps=5,
        out_dir=out,
    )
    return out


@pytest.fixture(scope="module")
def expected(lm_dir, texts) -> pa.Table:
    """TokenScorer.score on the texts it scores, in this process, all at once."""
    scorer = TokenScorer.from_pretrained(lm_dir, device="cpu")
    return scorer.score([t for t in texts if t], id_field=None, **OPTIONS)


def assert_rows_match(columns: dict[str, list], texts, expected: pa.Table, prefix: str = "lm") -> None:
    """``columns`` (new column name -> values per row) hold ``expected``'s rows on the rows of
    the texts that are documents, and nulls on the others."""
    rows = [i for i, t in enumerate(texts) if t]
    for name in ALL:
        values = columns[f"{prefix}_{name}"]
        assert len(values) == len(texts)
        assert all(values[i] is None for i, t in enumerate(texts) if not t), name
        got = [values[i] for i in rows]
        if COLUMNS[name] == "int64":
            assert got == expected.column(name).to_pylist(), name
        else:
            np.testing.assert_allclose(got, expected.column(name).to_numpy(), rtol=RTOL, err_msg=name)


def test_columns_types_and_skipped_rows(lm_dir, texts, expected):
    fn = TokenScores(lm_dir, columns=ALL, device="cpu", **OPTIONS)
    table = fn(pa.table({"text": pa.chunked_array([texts[:10], texts[10:]]), "n": range(len(texts))}))
    assert table.column_names == ["text", "n", *fn.column_names]
    assert [table.schema.field(f"lm_{name}").type for name in ALL] == [
        getattr(pa, COLUMNS[name])() for name in ALL
    ]
    assert_rows_match(table.to_pydict(), texts, expected)
    skipped = fn.compute(texts).skipped.to_pylist()
    assert (skipped[EMPTY], skipped[NULL]) == ("empty_text", "missing_field")
    assert sum(reason is not None for reason in skipped) == 2
    # A batch of dicts (as datasets passes them) gets the same values as lists.
    assert fn({"text": texts}) == {name: table.column(name).to_pylist() for name in fn.column_names}
    assert fn({"text": ["", None]}) == {name: [None, None] for name in fn.column_names}
    default = TokenScores(lm_dir, prefix="tiny")
    assert default.column_names == ("tiny_tokens", "tiny_sum_nll", "tiny_mean_nll", "tiny_bits_per_byte")


def test_pickles_as_path_hash_and_options_and_loads_lazily(lm_dir, texts, tmp_path):
    copy = tmp_path / "lm"
    shutil.copytree(lm_dir, copy)
    fn = TokenScores(copy, device="cpu", **OPTIONS)
    assert fn._scorer is None  # nothing is loaded at construction
    batch = {"text": texts[:8]}
    first = fn(batch)
    assert fn._scorer is not None
    blob = pickle.dumps(fn)
    weights = (copy / "model.safetensors").read_bytes()
    assert len(blob) < len(weights) / 10 and b"torch" not in blob
    clone = pickle.loads(blob)
    assert clone._scorer is None
    assert clone(batch) == first
    assert pickle.dumps(TokenScores(copy, device="cpu", **OPTIONS)) == blob  # equal state, equal bytes
    # A clone, or a function hashed here (e.g. by datasets' fingerprint), loads only the
    # directory that was hashed.
    hashed = TokenScores(copy, device="cpu")
    assert hashed.sha256 == pickle.loads(blob).sha256
    config = copy / "config.json"
    original = config.read_bytes()
    config.write_bytes(original + b"\n")  # the same model, other bytes
    for changed in (pickle.loads(blob), hashed):
        with pytest.raises(ModelFormatError, match="not the model directory") as info:
            changed(batch)
        assert info.value.path == str(copy)
    # A function loaded before its directory changed does not pickle as the new directory.
    config.write_bytes(original)
    loaded = TokenScores(copy, device="cpu")
    loaded.load()
    config.write_bytes(original + b"\n")
    with pytest.raises(ModelFormatError, match="changed after the model was loaded") as info:
        pickle.dumps(loaded)
    assert info.value.path == str(copy)


def test_bad_arguments_raise_typed_errors(lm_dir, tmp_path):
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        TokenScores(tmp_path / "missing")
    for columns in ([], ["id"], ["tokens", "loss"]):
        with pytest.raises(InvalidArgumentError, match="columns must be"):
            TokenScores(lm_dir, columns=columns)
    with pytest.raises(InvalidArgumentError, match="not a torch dtype"):
        TokenScores(lm_dir, dtype="float33")
    with pytest.raises(InvalidArgumentError, match="not a torch device"):
        TokenScores(lm_dir, device="gpu0")
    with pytest.raises(InvalidArgumentError, match="packing"):
        TokenScores(lm_dir, packing="tight")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="stride"):
        TokenScores(lm_dir, max_length=16, stride=16)
    # The model's own limit is known once it is loaded: in the worker, before any batch.
    too_long = TokenScores(lm_dir, device="cpu", max_length=10**6)
    with pytest.raises(InvalidArgumentError, match="max_position_embeddings"):
        too_long.load()


def test_datasets_map_in_two_processes_and_the_cache(lm_dir, texts, expected, tmp_path):
    datasets = pytest.importorskip("datasets")
    from datasets.fingerprint import Hasher

    datasets.Dataset.from_dict({"text": texts, "n": list(range(len(texts)))}).save_to_disk(tmp_path / "ds")
    saved = datasets.load_from_disk(tmp_path / "ds")  # backed by a file: map results are cached

    def fn() -> TokenScores:
        return TokenScores(lm_dir, columns=ALL, device="cpu", **OPTIONS)

    out = saved.map(fn(), batched=True, batch_size=8, num_proc=2)
    assert out["n"] == list(range(len(texts)))
    assert_rows_match(out.to_dict(), texts, expected)
    assert Hasher.hash(fn()) == Hasher.hash(fn())
    assert Hasher.hash(TokenScores(lm_dir, columns=ALL, device="cpu")) != Hasher.hash(fn())
    again = saved.map(fn(), batched=True, batch_size=8, num_proc=2)
    assert again.cache_files == out.cache_files and again._fingerprint == out._fingerprint


def test_datatrove_annotate_loads_the_model_in_each_task(lm_dir, texts, expected, tmp_path):
    pytest.importorskip("datatrove")
    tsdt = pytest.importorskip("tokensieve.integrations.datatrove")
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    docs = [t for t in texts if t]
    (tmp_path / "in").mkdir()
    for part in range(2):
        with open(tmp_path / "in" / f"part-{part}.jsonl", "w", encoding="utf-8") as f:
            lines = (json.dumps({"id": str(i), "text": docs[i]}) + "\n" for i in range(part, len(docs), 2))
            f.writelines(lines)
    step = tsdt.Annotate(TokenScores(lm_dir, columns=ALL, device="cpu", **OPTIONS), batch_size=8)
    # One worker runs the 2 tasks in this process, each on its own copy of the pipeline.
    LocalPipelineExecutor(
        pipeline=[JsonlReader(str(tmp_path / "in")), step, JsonlWriter(str(tmp_path / "out"))],
        tasks=2,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    assert step.fn._scorer is None  # the tasks loaded the model in their copies, not here
    metadata: dict[int, dict] = {}
    for path in (tmp_path / "out").glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            metadata.update((int(d["id"]), d["metadata"]) for d in map(json.loads, f))
    assert sorted(metadata) == list(range(len(docs)))
    columns = {f"lm_{name}": [metadata[i][f"lm_{name}"] for i in sorted(metadata)] for name in ALL}
    assert_rows_match(columns, docs, expected)
    # datatrove's readers drop empty texts; a step fed one directly gives it nulls.
    out = list(step.run(iter([Document(text="", id="empty"), Document(text=docs[0], id="0")])))
    assert out[0].metadata["lm_sum_nll"] is None
    assert out[1].metadata["lm_sum_nll"] == pytest.approx(expected.column("sum_nll")[0].as_py(), rel=RTOL)


def to_arrow(ds) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


@pytest.mark.ray
def test_ray_cpu_actors_and_the_gpu_request(ray_cluster, lm_dir, texts, expected):
    tsray = pytest.importorskip("tokensieve.integrations.ray")
    ds = ray_cluster.data.from_items(
        [{"text": t, "n": i} for i, t in enumerate(texts)], override_num_blocks=3
    )
    fn = TokenScores(lm_dir, columns=ALL, **OPTIONS)  # device None: the CPU on actors without a GPU
    table = to_arrow(tsray.apply(ds, fn, actors=1, batch_size=8)).sort_by("n")
    assert table.column("n").to_pylist() == list(range(len(texts)))
    assert_rows_match(table.to_pydict(), texts, expected)
    # A GPU request reaches the actors' resources and tells each actor it holds a GPU (planned only).
    planned = tsray.apply(ds, fn, actors=2, batch_size=8, num_gpus=1)._logical_plan.dag
    assert planned.ray_remote_args == {"num_cpus": 1, "num_gpus": 1}
    assert planned.fn_constructor_kwargs["gpu"] is True
    clone = pickle.loads(pickle.dumps(fn))
    clone.place(num_threads=1, gpu=True)
    assert clone.device == "cuda"


@pytest.mark.ray
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ray_gpu_actors_match_the_cpu_scores(ray_cluster, lm_dir, texts, expected):
    tsray = pytest.importorskip("tokensieve.integrations.ray")
    ds = ray_cluster.data.from_items([{"text": t, "n": i} for i, t in enumerate(texts)])
    fn = TokenScores(lm_dir, columns=ALL, dtype="float32", **OPTIONS)
    table = to_arrow(tsray.apply(ds, fn, actors=1, batch_size=8, num_gpus=1)).sort_by("n")
    columns = table.to_pydict()
    rows = [i for i, t in enumerate(texts) if t]
    # the Triton kernels sum in fp32 on the GPU (as in test_scoring's GPU test)
    for name in ("tokens", "sum_nll", "mean_nll", "bits_per_byte", "mean_entropy", "el2n"):
        got = [columns[f"lm_{name}"][i] for i in rows]
        np.testing.assert_allclose(got, expected.column(name).to_numpy(), rtol=1e-4, err_msg=name)
