"""Shared fixtures: paths to the project's real corpora and small slices of them."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

# Without an NVIDIA GPU the Triton kernels run under Triton's interpreter. Triton reads
# TRITON_INTERPRET when it (and each kernel) is imported, so it is set here, before any test
# module imports them; an explicit setting in the environment wins.
if not os.path.exists("/proc/driver/nvidia/version"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TOKENSIEVE_SHARED_DATA") or ROOT.parent / "shared" / "data")
DEMO_DATA = ROOT / "python" / "tokensieve" / "data"


def in_shared_mapping(array) -> bool:
    """Whether ``array``'s memory lies in a ``MAP_SHARED`` mapping of this process (Linux's
    ``/proc/self/maps``), as shared memory does and a private copy does not."""
    start = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            low, high = (int(x, 16) for x in span.split("-"))
            if low <= start < high:
                return perms.endswith("s")
    return False


def read_jsonl_zst(path: Path, limit: int | None = None) -> list[dict]:
    """The first `limit` records of a .jsonl.zst file, decoded with Python's json module."""
    zstandard = pytest.importorskip("zstandard")
    with open(path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        records = []
        for line in text:
            records.append(json.loads(line))
            if limit is not None and len(records) >= limit:
                break
    return records


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared corpora are not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def corpus_slice(shared_data: Path) -> list[str]:
    """About 900 real documents of varied sources, noise included."""
    texts: list[str] = []
    for name, n in [
        ("raw_pool/blogs", 150),
        ("raw_pool/newsgroups20", 150),
        ("raw_pool/spamassassin_email", 150),
        ("raw_pool/commoncrawl_samples", 33),
        ("raw_pool/reddit_drunk", 100),
        ("target/wikipedia_en", 40),
        ("target/gutenberg_books", 100),
        ("benchmark/gsm8k", 100),
        ("benchmark/llm_foundry_evals", 100),
    ]:
        texts.extend(r["text"] for r in read_jsonl_zst(shared_data / f"{name}.jsonl.zst", n))
    return texts


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer torch.empty allocates (the kernels' outputs and scratch) starts as 1234.5
    (floats) or -7 (integers), so an element a kernel fails to write shows up as a wrong value."""
    torch = pytest.importorskip("torch")
    empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(1234.5 if t.is_floating_point() else -7)

    monkeypatch.setattr(torch, "empty", poisoned_empty)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for the module's tests: the tiny models of the scoring tests
    run several times faster on one thread than on threads contending for a shared machine's
    cores (their results do not depend on the thread count)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def news_or_mail(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fastText classifier (labels ``news`` and ``mail``) trained by tokensieve on BBC
    News and SpamAssassin documents, saved as a ``.bin``."""
    from tokensieve.fasttext import train_supervised

    news = read_jsonl_zst(shared_data / "raw_pool/bbc_news.jsonl.zst", 150)
    mail = read_jsonl_zst(shared_data / "raw_pool/spamassassin_email.jsonl.zst", 150)
    texts = [" ".join(r["text"].split()) for r in news + mail]
    labels = ["news"] * len(news) + ["mail"] * len(mail)
    model = train_supervised((texts, labels), epoch=2, thread=1, seed=0, wordNgrams=2, bucket=10000)
    path = tmp_path_factory.mktemp("classifier") / "news_or_mail.bin"
    model.save_model(path)
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster for the session: 2 CPUs, a small object store, no dashboard. Its
    workers import tokensieve and the test modules from the paths this process imports them."""
    ray = pytest.importorskip("ray")
    import tokensieve

    paths = [str(Path(tokensieve.__file__).parent.parent), str(ROOT / "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
