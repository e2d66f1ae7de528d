"""tokensieve.kernels: the Triton kernels (under ``TRITON_INTERPRET=1`` without a GPU, see
conftest.py) against the
float64 torch references, the references against the test vectors of methods.md, the order
statistics, dispatch and errors. Inputs are fresh random draws each run; a failure names its seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from tokensieve import kernels  # noqa: E402
from tokensieve.exceptions import InvalidArgumentError, TargetOutOfRangeError  # noqa: E402
from tokensieve.triton_kernels import segment_reduce as segment_module  # noqa: E402
from tokensieve.triton_kernels import token_stats as token_module  # noqa: E402

CUDA = torch.cuda.is_available()
pytestmark = [
    # the interpreter evaluates both sides of tl.where in numpy, including discarded -inf - -inf
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION:UserWarning"),
]
FLOAT_FIELDS = ("logprob", "lse", "entropy", "sum_p2", "var_logp", "max_logprob")
#: (rtol, atol) of the fp32 kernel against float64 on the same input values. Inputs of every dtype
#: are exact in fp32, so the bounds differ only where the arithmetic does: fp32 rounding of the
#: running sums over V <= 1000 lanes, plus the exp2-based tanh of the softcap (~softcap * 2^-23).
TOLERANCE = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-5, 2e-5), torch.bfloat16: (2e-5, 2e-5)}


@pytest.fixture(scope="module")
def device() -> str:
    """Where the kernels run: ``cuda``, or ``cpu`` under the Triton interpreter (conftest.py sets
    ``TRITON_INTERPRET=1`` on machines without an NVIDIA GPU)."""
    if CUDA:
        return "cuda"
    if not token_module.interpreted():
        pytest.skip("no CUDA GPU, and the kernels were not imported under TRITON_INTERPRET=1")
    return "cpu"


@pytest.fixture
def seed() -> int:
    return random.SystemRandom().randrange(2**32)


def assert_close(actual, expected, *, rtol: float, atol: float, what: str, seed: int | None = None) -> None:
    torch.testing.assert_close(
        actual.double().cpu(),
        expected.double().cpu(),
        rtol=rtol,
        atol=atol,
        equal_nan=True,
        msg=lambda m: f"{what} (seed {seed}): {m}",
    )


def random_case(
    gen: torch.Generator, shape: tuple[int, ...], vocab: int, dtype: torch.dtype, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of random spread, some rows peaked, a few -inf logits; targets with ~20% ignored."""
    n = math.prod(shape)
    spread = torch.empty(n, 1).uniform_(0.5, 8.0, generator=gen)
    logits = torch.randn(n, vocab, generator=gen) * spread
    peaked = torch.rand(n, generator=gen) < 0.3
    logits[peaked, torch.randint(0, vocab, (int(peaked.sum()),), generator=gen)] += 25.0
    logits[torch.rand(n, vocab, generator=gen) < 0.02] = -float("inf")
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[torch.rand(n, generator=gen) < 0.2] = -100
    return logits.reshape(*shape, vocab).to(dtype).to(device), targets.reshape(shape).to(device)


def check_token_stats(actual, logits, targets, *, seed, rtol, atol, lse_rtol=0.0, **kwargs) -> None:
    expected = token_module.token_stats_reference(
        logits.cpu(), targets.cpu(), compute_dtype=torch.float64, **kwargs
    )
    for name in FLOAT_FIELDS:
        tol = (max(rtol, lse_rtol), atol) if name == "lse" else (rtol, atol)
        if name == "sum_p2":
            tol = (rtol, atol / 10)
        assert_close(
            getattr(actual, name), getattr(expected, name), rtol=tol[0], atol=tol[1], what=name, seed=seed
        )
    torch.testing.assert_close(
        actual.argmax.cpu(), expected.argmax, msg=lambda m: f"argmax (seed {seed}): {m}"
    )
    for value in actual:
        assert value.shape == targets.shape
        assert value.dtype == (torch.int64 if value is actual.argmax else torch.float32)


# ---------------------------------------------------------------------------------------------
# token_stats


def test_reference_reproduces_the_methods_test_vector() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    s = token_module.token_stats_reference(logits, torch.tensor([1]), compute_dtype=torch.float64)
    assert s.lse.item() == pytest.approx(2.4401896985611953, abs=1e-14)
    assert s.logprob.item() == pytest.approx(-1.4401896985611953, abs=1e-14)
    assert s.max_logprob.item() == pytest.approx(math.log(0.6439142598879724), abs=1e-14)
    assert s.entropy.item() == pytest.approx(0.9475369639754255, abs=1e-14)
    assert s.var_logp.item() == pytest.approx(0.616586274855508, abs=1e-14)
    assert s.sum_p2.item() == pytest.approx(0.4793609299265755, abs=1e-14)
    assert s.argmax.item() == 0
    # Min-K%++'s z = (log p(y) - mu) / sigma with mu = -H
    z = (s.logprob + s.entropy) / s.var_logp.sqrt()
    assert z.item() == pytest.approx(-0.6273992153439274, abs=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    ("shape", "vocab", "launch"),
    [
        ((13,), 1000, {"block_v": 128, "splits": 3}),  # V not a multiple of the block; 3 splits
        ((3, 5), 300, {"block_v": 64, "splits": 8}),  # leading dims; more splits than fit (5 used)
        ((1,), 37, {}),  # N = 1, one block wider than V
    ],
    ids=["split3", "split8", "single"],
)
@pytest.mark.parametrize(("softcap", "temperature"), [(None, 1.0), (4.0, 0.7)], ids=["plain", "softcap"])
def test_kernel_matches_float64_reference(
    device, seed, poisoned, dtype, shape, vocab, launch, softcap, temperature
) -> None:
    logits, targets = random_case(torch.Generator().manual_seed(seed), shape, vocab, dtype, device)
    actual = token_module.token_stats_triton(
        logits, targets, softcap=softcap, temperature=temperature, **launch
    )
    rtol, atol = TOLERANCE[dtype]
    check_token_stats(
        actual, logits, targets, seed=seed, rtol=rtol, atol=atol, softcap=softcap, temperature=temperature
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("offset", [1e4, -1e4])
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_large_common_offsets_keep_the_relative_statistics_accurate(
    device, seed, dtype, offset, softcap
) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits, targets = random_case(gen, (6,), 700, torch.float32, "cpu")
    logits = (logits + offset).to(dtype).to(device)
    actual = token_module.token_stats_triton(
        logits, targets.to(device), softcap=softcap, block_v=128, splits=2
    )
    # lse itself is ~1e4, where one fp32 ulp is 1e-3; every other statistic is shift-invariant
    check_token_stats(
        actual, logits, targets, seed=seed, rtol=2e-5, atol=2e-5, lse_rtol=3e-7, softcap=softcap
    )


def test_softcap_does_not_give_padded_lanes_probability(device) -> None:
    # saturated rows: every logit caps to 5, so p is uniform over V = 1000 (not over the 1024
    # lanes of 8 blocks of 128) and lse = 5 + log(1000)
    logits = torch.full((3, 1000), 200.0, device=device)
    targets = torch.tensor([0, 999, 500], device=device)
    s = token_module.token_stats_triton(logits, targets, softcap=5.0, block_v=128, splits=3)
    torch.testing.assert_close(s.lse.cpu(), torch.full((3,), 5.0 + math.log(1000.0)), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s.entropy.cpu(), torch.full((3,), math.log(1000.0)), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s.logprob.cpu(), torch.full((3,), -math.log(1000.0)), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s.sum_p2.cpu(), torch.full((3,), 1e-3), rtol=1e-5, atol=0.0)
    assert s.argmax.tolist() == [0, 0, 0]


def test_ignored_and_out_of_range_targets(device, seed) -> None:
    logits, _ = random_case(torch.Generator().manual_seed(seed), (6,), 50, torch.float32, device)
    targets = torch.tensor([3, -100, 0, 50, -1, 49], device=device)
    s = token_module.token_stats_triton(logits, targets, ignore_index=0, block_v=16, splits=2)
    assert s.logprob[2].item() == 0.0  # ignore_index may be a real token id: it wins
    assert math.isnan(s.logprob[3].item()) and math.isnan(s.logprob[4].item())  # out of range
    assert math.isnan(s.logprob[1].item())  # -100 is out of range when ignore_index is 0
    valid = torch.tensor([3, 0, 0, 0, 0, 49], device=device)
    ref = token_module.token_stats_reference(logits, valid, ignore_index=0, compute_dtype=torch.float64)
    for i in (0, 5):
        assert s.logprob[i].item() == pytest.approx(ref.logprob[i].item(), abs=2e-5)
    for name in FLOAT_FIELDS[1:]:  # statistics not about the target are there for every token
        assert_close(getattr(s, name), getattr(ref, name), rtol=2e-5, atol=2e-5, what=name, seed=seed)
    with pytest.raises(TargetOutOfRangeError, match="target -100 at flat position 1 "):
        token_module.token_stats_reference(logits, targets, ignore_index=0)
    with pytest.raises(TargetOutOfRangeError):
        kernels.token_stats(logits.cpu(), targets.cpu(), backend="torch")


def test_many_splits_merge_in_blocks_of_fewer_rows(device, seed) -> None:
    # 17 splits of one 16-lane block each: the merge kernel takes 32 rows per program
    # (merge_launch keeps it from spilling on a GPU), so 40 rows need 2 programs, the last partial
    assert token_module.merge_launch(17) == (32, 32)
    logits, targets = random_case(torch.Generator().manual_seed(seed), (40,), 270, torch.float32, device)
    actual = token_module.token_stats_triton(logits, targets, block_v=16, splits=17)
    check_token_stats(actual, logits, targets, seed=seed, rtol=2e-5, atol=2e-5)


def test_kernel_is_deterministic_and_split_invariant(device, seed) -> None:
    logits, targets = random_case(torch.Generator().manual_seed(seed), (9,), 1000, torch.bfloat16, device)
    a = token_module.token_stats_triton(logits, targets, block_v=128, splits=4)
    b = token_module.token_stats_triton(logits, targets, block_v=128, splits=4)
    c = token_module.token_stats_triton(logits, targets, block_v=256, splits=1)
    for x, y, z, name in zip(a, b, c, a._fields, strict=True):
        assert torch.equal(x, y), name
        assert_close(x, z, rtol=2e-6, atol=2e-6, what=name, seed=seed)


def test_empty_batch_and_all_ignored(device) -> None:
    s = token_module.token_stats_triton(
        torch.zeros(0, 7, device=device), torch.zeros(0, dtype=torch.long, device=device)
    )
    assert all(v.shape == (0,) for v in s)
    logits = torch.zeros(2, 7, device=device)
    s = token_module.token_stats_triton(logits, torch.full((2,), -100, device=device))
    assert s.logprob.tolist() == [0.0, 0.0]
    assert s.entropy.cpu().tolist() == pytest.approx([math.log(7)] * 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize(("softcap", "temperature"), [(None, 1.0), (4.0, 0.7)], ids=["plain", "softcap"])
def test_torch_backend_matches_float64_reference(
    seed, poisoned, monkeypatch: pytest.MonkeyPatch, dtype, softcap, temperature
) -> None:
    # chunks of 4 rows (8 chunks, the last one short), so the buffers are reused
    monkeypatch.setattr(token_module, "CPU_CHUNK_ELEMENTS", 4 * 300)
    monkeypatch.setattr(token_module, "MIN_CHUNK_ROWS", 1)
    logits, targets = random_case(torch.Generator().manual_seed(seed), (3, 10), 300, dtype, "cpu")
    logits[1, 4] = -float("inf")  # a row without a finite logit has no distribution
    targets[1, 4] = 7
    scales = {"softcap": softcap, "temperature": temperature}
    actual = token_module.token_stats_torch(logits, targets, **scales)
    expected = token_module.token_stats_reference(logits, targets, compute_dtype=torch.float64, **scales)
    if softcap is None:
        for name in FLOAT_FIELDS:
            assert math.isnan(getattr(actual, name)[1, 4].item()), name
        keep = torch.ones_like(targets, dtype=torch.bool)
        keep[1, 4] = False
        actual = type(actual)(*(v[keep] for v in actual))
        expected = type(expected)(*(v[keep] for v in expected))
    # fp32: the kernel's tolerance (same running sums); float64: rounding only
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for name in FLOAT_FIELDS:
        assert_close(getattr(actual, name), getattr(expected, name), rtol=tol, atol=tol, what=name, seed=seed)
        assert getattr(actual, name).dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.equal(actual.argmax, expected.argmax), seed


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_torch_backend_keeps_large_offsets_accurate(seed, offset) -> None:
    logits, targets = random_case(torch.Generator().manual_seed(seed), (6,), 700, torch.float32, "cpu")
    actual = token_module.token_stats_torch(logits + offset, targets)
    expected = token_module.token_stats_reference(logits + offset, targets, compute_dtype=torch.float64)
    for name in FLOAT_FIELDS:
        rtol = 3e-7 if name == "lse" else 2e-5  # lse itself is ~1e4, where one fp32 ulp is 1e-3
        assert_close(
            getattr(actual, name), getattr(expected, name), rtol=rtol, atol=2e-5, what=name, seed=seed
        )


@pytest.mark.parametrize(
    ("logits", "targets", "kwargs", "message"),
    [
        (torch.zeros(3, 5, dtype=torch.int32), torch.zeros(3, dtype=torch.long), {}, "logits must be one of"),
        (torch.zeros(3, 5), torch.zeros(3), {}, "targets must be an integer tensor"),
        (torch.zeros(3, 5), torch.zeros(4, dtype=torch.long), {}, r"shaped \[\*targets.shape, V\]"),
        (torch.zeros(3, 0), torch.zeros(3, dtype=torch.long), {}, "empty vocabulary"),
        (torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), {"temperature": 0.0}, "temperature"),
        (torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), {"softcap": -1.0}, "softcap"),
        (torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), {"backend": "cuda"}, "backend must be"),
    ],
)
def test_bad_token_stats_arguments_raise(logits, targets, kwargs, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.token_stats(logits, targets, **kwargs)


def test_public_token_stats_dispatch(device, seed) -> None:
    logits, targets = random_case(torch.Generator().manual_seed(seed), (4,), 100, torch.float32, "cpu")
    targets[targets == -100] = 1
    on_cpu = kernels.token_stats(logits, targets)  # auto on CPU: the torch reference, fp32
    assert isinstance(on_cpu, kernels.TokenStats) and on_cpu.lse.dtype == torch.float32
    as64 = kernels.token_stats(logits.double(), targets)
    assert as64.lse.dtype == torch.float64
    forced = kernels.token_stats(logits.to(device), targets.to(device), backend="triton")
    for name in FLOAT_FIELDS:
        assert_close(getattr(forced, name), getattr(on_cpu, name), rtol=1e-5, atol=1e-5, what=name, seed=seed)


# ---------------------------------------------------------------------------------------------
# segment_reduce


def segment_case(gen: torch.Generator, n: int, dtype: torch.dtype):
    values = (torch.randn(n, generator=gen) * 3).to(dtype)
    mask = torch.rand(n, generator=gen) < 0.8
    lengths = [0, 5, 0, 1, 17, 3, 11]  # empty documents at both ends and inside
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()])
    mask[int(cu[5]) : int(cu[6])] = False  # a fully masked document
    return values, mask, cu[cu <= n]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("use_mask", [False, True], ids=["all", "masked"])
def test_segment_reduce_kernel_matches_float64_reference(device, seed, poisoned, dtype, use_mask) -> None:
    gen = torch.Generator().manual_seed(seed)
    values, mask, cu = segment_case(gen, 37, dtype)
    doc_ids = torch.randint(-1, 6, (37,), generator=gen)  # unsorted, -1 = no document
    kw_mask = mask if use_mask else None
    for segments in ({"cu_seqlens": cu}, {"doc_ids": doc_ids, "num_docs": 8}):
        expected = segment_module.segment_reduce_reference(
            values, mask=kw_mask, compute_dtype=torch.float64, **segments
        )
        on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in segments.items()}
        actual = segment_module.segment_reduce_triton(
            values.to(device), mask=None if kw_mask is None else kw_mask.to(device), block=4, **on_device
        )
        assert torch.equal(actual.count.cpu(), expected.count), seed
        for name in ("sum", "mean", "min", "max"):
            assert_close(
                getattr(actual, name), getattr(expected, name), rtol=1e-6, atol=1e-6, what=name, seed=seed
            )
    empty = expected.count == 0
    assert empty[-2:].all() and expected.sum[empty].eq(0).all() and expected.mean[empty].isnan().all()


def test_segment_reduce_reference_by_hand() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, -1.0, 8.0])
    s = kernels.segment_reduce(values, cu_seqlens=torch.tensor([0, 3, 3, 5]), mask=values != 4.0)
    assert s.count.tolist() == [2, 0, 2]
    assert s.sum.tolist() == [3.0, 0.0, 7.0]
    assert s.mean[0].item() == 1.5 and math.isnan(s.mean[1].item())
    assert s.min[2].item() == -1.0 and s.max[2].item() == 8.0
    by_ids = kernels.segment_reduce(values, doc_ids=torch.tensor([2, 0, 2, -1, 0]))
    assert by_ids.count.tolist() == [2, 0, 2] and by_ids.sum.tolist() == [10.0, 0.0, 5.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"cu_seqlens": torch.tensor([0, 3]), "doc_ids": torch.zeros(5, dtype=torch.long)}, "exactly one of"),
        ({"cu_seqlens": torch.tensor([0, 4, 2])}, "nondecreasing"),
        ({"cu_seqlens": torch.tensor([0, 6])}, r"within \[0, 5\]"),
        ({"cu_seqlens": torch.tensor([0.0, 5.0])}, "integer"),
        ({"doc_ids": torch.zeros(4, dtype=torch.long)}, "shaped like values"),
        ({"cu_seqlens": torch.tensor([0, 5]), "mask": torch.ones(5)}, "bool tensor"),
        ({"cu_seqlens": torch.tensor([0, 5]), "backend": "gpu"}, "backend must be"),
    ],
)
def test_bad_segment_arguments_raise(kwargs, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.segment_reduce(torch.zeros(5), **kwargs)


# ---------------------------------------------------------------------------------------------
# order statistics


def test_order_statistics_reproduce_the_methods_test_vectors() -> None:
    lp = torch.tensor([-0.1, -2.0, -0.5, -4.0, -1.0, -0.2, -3.0, -0.05, -0.7, -1.5], dtype=torch.float64)
    assert kernels.bottom_k_mean(lp, 0.2, compute_dtype=torch.float64).item() == -3.5
    assert kernels.bottom_k_mean(lp, 0.3, compute_dtype=torch.float64).item() == pytest.approx(-3.0)
    assert kernels.bottom_k_mean(lp, 0.5, compute_dtype=torch.float64).item() == pytest.approx(-2.3)
    assert math.isnan(kernels.bottom_k_mean(lp, 0.05).item())  # k = 0, as the reference code
    z = torch.tensor([0.8, -1, 0.75, -2, 0.4, 1, -1, 2.5, 2 / 3, -0.4])
    assert kernels.bottom_k_mean(z, 0.2).item() == -1.5
    chow = torch.tensor([-0.01, -0.2, -2.3, -0.05, -0.7])
    assert kernels.quantiles(chow, [0.0, 0.25, 0.5]).tolist() == pytest.approx([-2.3, -0.7, -0.2])
    excess = torch.tensor([1, -0.25, -0.25, 0.75, 3, 0.25, 0.5, -0.25, 0.75, 0])
    assert kernels.top_k_token_mask(excess, 0.6).nonzero()[:, 0].tolist() == [0, 3, 4, 5, 6, 8]
    # a tie at the boundary goes to the lower index
    assert kernels.top_k_token_mask(torch.tensor([1.0, 2.0, 1.0, 1.0]), 0.5).tolist() == [
        True,
        True,
        False,
        False,
    ]


def per_document_loop(values, docs, live, d, fn: Callable[[np.ndarray], object]) -> list:
    return [fn(values[(docs == i) & live]) for i in range(d)]


def test_order_statistics_per_document_against_numpy(seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    values, mask, cu = segment_case(gen, 37, torch.float64)
    values[3] = values[4]  # a tie
    docs, d = segment_module.token_documents(37, cu, None, None)
    v, dn, live = values.numpy(), docs.numpy(), mask.numpy()
    qs = [0.0, 0.1, 0.5, 0.9, 1.0]
    got = kernels.quantiles(values, qs, cu_seqlens=cu, mask=mask, compute_dtype=torch.float64).numpy()
    want = per_document_loop(v, dn, live, d, lambda x: np.quantile(x, qs) if x.size else [np.nan] * 5)
    np.testing.assert_allclose(got, np.array(want), rtol=1e-12, err_msg=f"seed {seed}")
    got = kernels.bottom_k_mean(values, 0.4, cu_seqlens=cu, mask=mask, compute_dtype=torch.float64).numpy()
    want = per_document_loop(
        v, dn, live, d, lambda x: np.sort(x)[: int(x.size * 0.4)].mean() if int(x.size * 0.4) else np.nan
    )
    np.testing.assert_allclose(got, np.array(want), rtol=1e-12, err_msg=f"seed {seed}")
    selected = kernels.top_k_token_mask(values, 0.5, cu_seqlens=cu, mask=mask).numpy()
    for i in range(d):
        idx = np.flatnonzero((dn == i) & live)
        order = idx[np.argsort(-v[idx], kind="stable")]
        want_sel = set(order[: round(idx.size * 0.5)].tolist())
        assert set(np.flatnonzero(selected & (dn == i)).tolist()) == want_sel, f"doc {i}, seed {seed}"
    assert not selected[~live].any()


def test_order_statistic_arguments_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="fraction"):
        kernels.bottom_k_mean(torch.zeros(3), 1.5)
    with pytest.raises(InvalidArgumentError, match="q must be"):
        kernels.quantiles(torch.zeros(3), [0.5, 2.0])
    with pytest.raises(InvalidArgumentError, match="fraction"):
        kernels.top_k_token_mask(torch.zeros(3), -0.1)


# ---------------------------------------------------------------------------------------------
# GPU only


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("vocab", [32000, 128256])
def test_gpu_bf16_at_realistic_shapes(seed, vocab) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n = 2048
    logits = (torch.randn(n, vocab, device="cuda", generator=gen) * 4).bfloat16()
    targets = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    s = kernels.token_stats(logits, targets)
    rows = torch.randperm(n, device="cuda", generator=gen)[:64]
    sub = type(s)(*(v[rows] for v in s))
    check_token_stats(sub, logits[rows], targets[rows], seed=seed, rtol=1e-5, atol=1e-4)
    # reductions per document on the GPU
    cu = torch.tensor([0, 100, 100, 1500, n], device="cuda")
    got = kernels.segment_reduce(s.logprob, cu_seqlens=cu)
    want = segment_module.segment_reduce_reference(s.logprob, cu_seqlens=cu, compute_dtype=torch.float64)
    assert_close(got.sum, want.sum, rtol=1e-5, atol=1e-3, what="sum", seed=seed)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_more_than_2_31_elements(seed) -> None:
    vocab = 128256
    n = 2**31 // vocab + 64  # 2.15e9 bf16 elements (4.3 GB)
    if torch.cuda.mem_get_info()[0] < n * vocab * 2 + 2**30:
        pytest.skip("not enough free GPU memory")
    logits = torch.empty(n, vocab, device="cuda", dtype=torch.bfloat16)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    for i in range(0, n, 4096):
        logits[i : i + 4096].normal_(generator=gen)
    targets = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    s = kernels.token_stats(logits, targets)
    rows = torch.tensor([0, n // 2, n - 65, n - 1], device="cuda")  # the last rows lie past 2^31
    sub = type(s)(*(v[rows] for v in s))
    check_token_stats(sub, logits[rows], targets[rows], seed=seed, rtol=1e-5, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_token_stats_is_cuda_graph_capturable(seed) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    logits = torch.randn(512, 32000, device="cuda", generator=gen).bfloat16()
    targets = torch.randint(0, 32000, (512,), device="cuda", generator=gen)
    cu = torch.tensor([0, 200, 512], device="cuda")
    eager = kernels.token_stats(logits, targets)  # compiles outside the capture
    kernels.segment_reduce(eager.logprob, cu_seqlens=cu)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = kernels.token_stats(logits, targets)
        per_doc = kernels.segment_reduce(captured.logprob, cu_seqlens=cu)
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(captured, eager, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(per_doc.sum, kernels.segment_reduce(eager.logprob, cu_seqlens=cu).sum)
