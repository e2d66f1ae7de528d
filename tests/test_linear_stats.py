"""tokensieve.kernels.linear_token_stats / linear_weighted_nll: the fused LM-head kernels (under
``TRITON_INTERPRET=1`` without a GPU, see conftest.py) against the float64 torch references, the
references against fully materialised float64 logits, gradients against autograd, determinism,
dispatch and errors. Inputs are fresh random draws each run; a failure names its seed.
"""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from torch.nn import functional  # noqa: E402

from tokensieve import kernels  # noqa: E402
from tokensieve.exceptions import InvalidArgumentError, TargetOutOfRangeError  # noqa: E402
from tokensieve.triton_kernels import linear_stats as linear_module  # noqa: E402
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
#: Small tiles, so that a few dozen tokens and a few hundred vocabulary entries span several row
#: tiles, vocabulary tiles, splits, D steps and token chunks.
SMALL = linear_module.LinearLaunch(
    block_n=16,
    block_v=32,
    block_d=16,
    num_warps=4,
    num_stages=2,
    dw_block_v=64,
    dw_block_d=32,
    dw_block_tokens=16,
)
#: Unit roundoff of each operand dtype: gradients pass through it twice (dz, then the result).
#: bf16 is one ulp: the interpreter truncates fp32 -> bf16 where a GPU rounds to nearest.
EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module")
def device() -> str:
    """``cuda``, or ``cpu`` under the Triton interpreter (conftest.py sets ``TRITON_INTERPRET=1``
    on machines without an NVIDIA GPU)."""
    if CUDA:
        return "cuda"
    if not token_module.interpreted():
        pytest.skip("no CUDA GPU, and the kernels were not imported under TRITON_INTERPRET=1")
    return "cpu"


@pytest.fixture
def seed() -> int:
    return random.SystemRandom().randrange(2**32)


def lm_head_case(
    gen: torch.Generator, shape: tuple[int, ...], dim: int, vocab: int, dtype: torch.dtype, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden [*shape, dim], weight [vocab, dim], bias [vocab], targets [*shape]) with logits of a
    few nats' spread, some rows peaked on one token, ~20% of the targets ignored."""
    n = math.prod(shape)
    hidden = torch.randn(n, dim, generator=gen) * torch.empty(n, 1).uniform_(0.5, 3.0, generator=gen)
    weight = torch.randn(vocab, dim, generator=gen) / math.sqrt(dim)
    hot = torch.randint(0, vocab, (n,), generator=gen)
    peaked = torch.rand(n, generator=gen) < 0.3
    hidden[peaked] += (
        4.0 * weight[hot[peaked]] * math.sqrt(dim) / weight[hot[peaked]].norm(dim=1, keepdim=True)
    )
    bias = torch.randn(vocab, generator=gen)
    targets = torch.where(peaked, hot, torch.randint(0, vocab, (n,), generator=gen))
    targets[torch.rand(n, generator=gen) < 0.2] = -100
    to = {"dtype": dtype, "device": device}
    return (
        hidden.reshape(*shape, dim).to(**to),
        weight.to(**to),
        bias.to(**to),
        targets.reshape(shape).to(device),
    )


def capped_logits64(hidden, weight, bias=None, softcap=None) -> torch.Tensor:
    """The float64 logits before the temperature (which keeps their order), flattened."""
    x = hidden.reshape(-1, weight.shape[1]).cpu().double() @ weight.cpu().double().T
    if bias is not None:
        x = x + bias.cpu().double()
    return x if softcap is None else softcap * torch.tanh(x / softcap)


def assert_stats_close(
    actual, expected, *, seed: int, rtol: float, atol: float, capped=None, dtype=torch.float32
) -> None:
    """The float statistics within tolerance; ``argmax`` equal, or, given the float64 ``capped``
    logits, a logit within fp32 rounding of the maximum (near-ties may resolve either way)."""
    for name in FLOAT_FIELDS:
        torch.testing.assert_close(
            getattr(actual, name).double().cpu(),
            getattr(expected, name).double().cpu(),
            rtol=rtol,
            atol=atol / 10 if name == "sum_p2" else atol,
            equal_nan=True,
            msg=lambda m, name=name: f"{name} (seed {seed}): {m}",
        )
    got, want = actual.argmax.cpu().reshape(-1), expected.argmax.cpu().reshape(-1)
    if capped is None:
        assert torch.equal(got, want), f"argmax (seed {seed})"
    else:
        top = capped.max(dim=1).values
        gap = top - capped.gather(1, got[:, None])[:, 0]
        assert bool(((got == want) | (gap <= 1e-5 * top.abs().clamp(min=1.0))).all()), f"argmax (seed {seed})"
    for value in actual:
        assert value.shape == expected.logprob.shape
        assert value.dtype == (torch.int64 if value is actual.argmax else dtype)


# ---------------------------------------------------------------------------------------------
# the references


def test_references_match_materialised_float64(seed, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, targets = lm_head_case(gen, (2, 9), 24, 77, torch.float32, "cpu")
    weights = torch.rand(2, 9, generator=gen, dtype=torch.float64)
    logits = hidden.double() @ weight.double().T + bias.double()
    one_chunk = linear_module.linear_token_stats_reference(
        hidden, weight, targets, bias=bias, softcap=6.0, temperature=0.8, compute_dtype=torch.float64
    )
    want = token_module.token_stats_reference(
        logits, targets, softcap=6.0, temperature=0.8, compute_dtype=torch.float64
    )
    for x, y in zip(one_chunk, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12, msg=lambda m: f"seed {seed}: {m}")
    # the torch backend, in float64 and in fp32, in chunks of 4 tokens (the last one short)
    monkeypatch.setattr(token_module, "CPU_CHUNK_ELEMENTS", 4 * 77)
    monkeypatch.setattr(token_module, "MIN_CHUNK_ROWS", 1)
    for h, w, b, tol in (
        (hidden.double(), weight.double(), bias.double(), 1e-12),
        (hidden, weight, bias, 2e-5),
    ):
        fast = linear_module.linear_token_stats_torch(h, w, targets, bias=b, softcap=6.0, temperature=0.8)
        assert fast.lse.dtype == h.dtype
        assert_stats_close(fast, want, seed=seed, rtol=tol, atol=tol, dtype=h.dtype)
    # the loss: functional.cross_entropy on all the logits at once, float64
    plain = hidden.double() @ weight.double().T
    nll = functional.cross_entropy(plain.reshape(-1, 77), targets.reshape(-1), reduction="none").reshape(2, 9)
    lse = torch.logsumexp(plain, -1)
    want_loss = (weights * (nll + 0.01 * lse**2))[targets != -100].sum()
    loss = linear_module.linear_weighted_nll_reference(
        hidden.double(), weight.double(), targets, weights, z_loss=0.01, compute_dtype=torch.float64
    )
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-12), seed
    # chunked over 3 tokens at a time: the same numbers
    monkeypatch.setattr(linear_module, "REFERENCE_CHUNK_ELEMENTS", 3 * 77)
    chunked = linear_module.linear_token_stats_reference(
        hidden, weight, targets, bias=bias, softcap=6.0, temperature=0.8, compute_dtype=torch.float64
    )
    for x, y in zip(chunked, one_chunk, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-14, atol=1e-14)
    chunked_loss = linear_module.linear_weighted_nll_reference(
        hidden.double(), weight.double(), targets, weights, z_loss=0.01, compute_dtype=torch.float64
    )
    assert chunked_loss.item() == pytest.approx(loss.item(), rel=1e-13)


def test_torch_backend_with_a_masked_vocabulary_and_shift(seed, poisoned) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, ids = lm_head_case(gen, (3, 8), 16, 90, torch.bfloat16, "cpu")
    ids[ids == -100] = 5
    bias[torch.rand(90, generator=gen) < 0.2] = -float("inf")  # tokens the model never predicts
    ids[:, 1:][torch.isinf(bias[ids[:, 1:]])] = -100  # their logprob is -inf: not a target here
    fast = linear_module.linear_token_stats_torch(hidden, weight, ids, bias=bias, shift=True)
    want = linear_module.linear_token_stats_reference(
        hidden, weight, ids, bias=bias, shift=True, compute_dtype=torch.float64
    )
    assert fast.logprob.shape == (3, 7)
    assert_stats_close(
        fast, want, seed=seed, rtol=2e-5, atol=2e-5, capped=capped_logits64(hidden[:, :-1], weight, bias)
    )


def test_reference_loss_passes_gradcheck(seed, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(5, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 6, -100, 3, 3])
    monkeypatch.setattr(linear_module, "REFERENCE_CHUNK_ELEMENTS", 2 * 7)  # three checkpointed chunks

    def loss(h, w, wt):
        return linear_module.linear_weighted_nll_reference(
            h, w, targets, wt, z_loss=0.1, compute_dtype=torch.float64
        )

    assert torch.autograd.gradcheck(loss, (hidden, weight, weights)), seed


# ---------------------------------------------------------------------------------------------
# linear_token_stats


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("shape", "dim", "options"),
    [
        ((37,), 32, {"splits": 1}),
        ((37,), 40, {"bias": True, "softcap": 4.0, "temperature": 0.7, "splits": 3}),  # D % 16 != 0
        ((3, 5), 48, {"temperature": 1.5, "splits": 8}),  # leading dims; more splits than blocks
    ],
    ids=["plain", "bias-softcap-temperature", "leading-dims"],
)
def test_linear_token_stats_match_float64_reference(
    device, seed, poisoned, dtype, shape, dim, options
) -> None:
    vocab = 203  # not a multiple of the 32-wide vocabulary tiles
    hidden, weight, bias, targets = lm_head_case(
        torch.Generator().manual_seed(seed), shape, dim, vocab, dtype, device
    )
    kwargs = {k: v for k, v in options.items() if k in ("softcap", "temperature")}
    if options.get("bias"):
        kwargs["bias"] = bias
    actual = linear_module.linear_token_stats_triton(
        hidden, weight, targets, launch=SMALL, splits=options["splits"], **kwargs
    )
    cpu = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    expected = linear_module.linear_token_stats_reference(
        hidden.cpu(), weight.cpu(), targets.cpu(), compute_dtype=torch.float64, **cpu
    )
    # inputs of every dtype are exact in fp32: the error is fp32 accumulation over D and V
    capped = capped_logits64(hidden, weight, kwargs.get("bias"), kwargs.get("softcap"))
    assert_stats_close(actual, expected, seed=seed, rtol=2e-5, atol=2e-5, capped=capped)


def test_shift_scores_each_position_on_the_next_token(device, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, ids = lm_head_case(gen, (3, 11), 32, 150, torch.float16, device)
    # a [B, T, D] view whose rows are not contiguous with each other (strides 2T*D', D')
    wide = torch.zeros(3, 22, 48, dtype=hidden.dtype, device=device)
    view = wide[:, ::2, :32]
    view.copy_(hidden)
    shifted = linear_module.linear_token_stats_triton(
        view, weight, ids, bias=bias, shift=True, launch=SMALL, splits=2
    )
    assert shifted.logprob.shape == (3, 10)
    explicit = linear_module.linear_token_stats_triton(
        hidden[:, :-1].contiguous(), weight, ids[:, 1:], bias=bias, launch=SMALL, splits=2
    )
    for x, y, name in zip(shifted, explicit, shifted._fields, strict=True):
        assert torch.equal(x, y), f"{name} (seed {seed})"
    expected = linear_module.linear_token_stats_reference(
        hidden.cpu(), weight.cpu(), ids.cpu(), bias=bias.cpu(), shift=True, compute_dtype=torch.float64
    )
    capped = capped_logits64(hidden[:, :-1], weight, bias)
    assert_stats_close(shifted, expected, seed=seed, rtol=2e-5, atol=2e-5, capped=capped)
    one = linear_module.linear_token_stats_triton(hidden[:, :1], weight, ids[:, :1], shift=True, launch=SMALL)
    assert all(v.shape == (3, 0) for v in one)


def test_softcap_does_not_give_padded_columns_probability(device) -> None:
    # every logit is about 1e4 and caps to 5: p is uniform over V = 203, not over 7 tiles of 32
    hidden = torch.full((4, 16), 50.0, device=device)
    weight = torch.full((203, 16), 12.5, device=device)
    targets = torch.tensor([0, 202, 100, -100], device=device)
    s = linear_module.linear_token_stats_triton(hidden, weight, targets, softcap=5.0, launch=SMALL, splits=3)
    log_v = math.log(203.0)
    torch.testing.assert_close(s.lse.cpu(), torch.full((4,), 5.0 + log_v), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s.entropy.cpu(), torch.full((4,), log_v), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s.logprob.cpu(), torch.tensor([-log_v] * 3 + [0.0]), rtol=1e-6, atol=1e-5)
    assert s.argmax.tolist() == [0, 0, 0, 0]


def test_ignored_and_out_of_range_targets(device, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, _, _ = lm_head_case(gen, (6,), 16, 50, torch.float32, device)
    targets = torch.tensor([3, -100, 0, 50, -1, 49], device=device)
    s = linear_module.linear_token_stats_triton(
        hidden, weight, targets, ignore_index=0, launch=SMALL, splits=2
    )
    assert s.logprob[2].item() == 0.0  # ignore_index may be a real token id: it wins
    assert all(math.isnan(s.logprob[i].item()) for i in (1, 3, 4))  # out of range
    valid = torch.tensor([3, 0, 0, 0, 0, 49], device=device)
    ref = linear_module.linear_token_stats_reference(
        hidden, weight, valid, ignore_index=0, compute_dtype=torch.float64
    )
    assert s.logprob[[0, 5]].cpu().tolist() == pytest.approx(ref.logprob[[0, 5]].cpu().tolist(), abs=2e-5)
    for name in FLOAT_FIELDS[1:]:  # statistics not about the target are there for every token
        torch.testing.assert_close(getattr(s, name).double(), getattr(ref, name), rtol=2e-5, atol=2e-5)
    with pytest.raises(TargetOutOfRangeError, match="target -100 at flat position 1 "):
        linear_module.linear_token_stats_reference(hidden, weight, targets, ignore_index=0)
    with pytest.raises(TargetOutOfRangeError):
        kernels.linear_weighted_nll(hidden.cpu(), weight.cpu(), targets.cpu(), backend="torch")
    loss = linear_module.linear_weighted_nll_triton(hidden, weight, targets, launch=SMALL)
    assert math.isnan(loss.item())


def test_linear_token_stats_are_deterministic_and_split_invariant(device, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, targets = lm_head_case(gen, (21,), 32, 300, torch.float16, device)
    a = linear_module.linear_token_stats_triton(hidden, weight, targets, bias=bias, launch=SMALL, splits=4)
    b = linear_module.linear_token_stats_triton(hidden, weight, targets, bias=bias, launch=SMALL, splits=4)
    c = linear_module.linear_token_stats_triton(hidden, weight, targets, bias=bias, launch=SMALL, splits=1)
    for x, y, name in zip(a, b, a._fields, strict=True):
        assert torch.equal(x, y), name
    assert_stats_close(a, c, seed=seed, rtol=2e-6, atol=2e-6)


def test_empty_and_all_ignored(device) -> None:
    weight = torch.randn(30, 16, device=device)
    s = linear_module.linear_token_stats_triton(
        torch.zeros(0, 16, device=device), weight, torch.zeros(0, dtype=torch.long, device=device)
    )
    assert all(v.shape == (0,) for v in s)
    s = linear_module.linear_token_stats_triton(
        torch.zeros(2, 16, device=device), weight, torch.full((2,), -100, device=device), launch=SMALL
    )
    assert s.logprob.tolist() == [0.0, 0.0]
    assert s.entropy.cpu().tolist() == pytest.approx([math.log(30)] * 2)
    hidden = torch.zeros(0, 16, device=device, requires_grad=True)
    w = weight.clone().requires_grad_()
    loss = linear_module.linear_weighted_nll_triton(
        hidden, w, torch.zeros(0, dtype=torch.long, device=device)
    )
    loss.backward()
    assert loss.item() == 0.0 and w.grad is not None and not w.grad.any()


def test_no_allocation_grows_with_n_times_v(device, seed, monkeypatch: pytest.MonkeyPatch) -> None:
    hidden, weight, targets, weights = weighted_case(seed, torch.float16, device, n=64, vocab=250)
    sizes: list[int] = []
    for name in ("empty", "zeros", "ones"):
        allocate = getattr(torch, name)

        def recording(*args, allocate=allocate, **kwargs):
            t = allocate(*args, **kwargs)
            sizes.append(t.numel())
            return t

        monkeypatch.setattr(torch, name, recording)
    with torch.no_grad():
        linear_module.linear_token_stats_triton(hidden, weight, targets, launch=SMALL, splits=3)
        linear_module.linear_weighted_nll_triton(hidden, weight, targets, weights, launch=SMALL, splits=3)
    assert max(sizes) == 6 * 64 * 3  # the partial states: O(N x splits)
    sizes.clear()
    w = weight.clone().requires_grad_()
    linear_module.linear_weighted_nll_triton(hidden, w, targets, launch=SMALL, chunk_tokens=16).backward()
    assert max(sizes) == 250 * 40  # the fp32 grad_weight; the logits live 16 tokens at a time
    assert 16 * 250 in sizes and 64 * 250 not in sizes


# ---------------------------------------------------------------------------------------------
# linear_weighted_nll


def weighted_case(seed: int, dtype: torch.dtype, device: str, n: int = 37, dim: int = 40, vocab: int = 203):
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, _, targets = lm_head_case(gen, (n,), dim, vocab, dtype, device)
    weights = torch.rand(n, generator=gen) * (torch.rand(n, generator=gen) < 0.7)  # a Rho-1-style mask
    return hidden, weight, targets, weights.to(device)


def triton_loss_and_grads(hidden, weight, targets, weights, z_loss, grad_scale: float = 1.0, **kwargs):
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    wt = weights.clone().requires_grad_()
    loss = linear_module.linear_weighted_nll_triton(h, w, targets, wt, z_loss=z_loss, **kwargs)
    (loss * grad_scale).backward()
    return loss, h.grad, w.grad, wt.grad


@pytest.mark.parametrize(
    ("dtype", "z_loss"),
    [(torch.float32, 0.0), (torch.float32, 1e-3), (torch.float16, 1e-3), (torch.bfloat16, 0.0)],
    ids=str,
)
def test_weighted_nll_and_gradients_match_float64_autograd(device, seed, poisoned, dtype, z_loss) -> None:
    hidden, weight, targets, weights = weighted_case(seed, dtype, device)
    # 37 tokens in chunks of 16 (the last one ragged), D = 40 (not a multiple of 16)
    loss, g_hidden, g_weight, g_weights = triton_loss_and_grads(
        hidden, weight, targets, weights, z_loss, grad_scale=0.25, launch=SMALL, splits=2, chunk_tokens=16
    )
    h64 = hidden.cpu().double().requires_grad_()
    w64 = weight.cpu().double().requires_grad_()
    wt64 = weights.cpu().double().requires_grad_()
    ref = kernels.linear_weighted_nll(h64, w64, targets.cpu(), wt64, z_loss=z_loss, backend="torch")
    (ref * 0.25).backward()
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert loss.item() == pytest.approx(ref.item(), rel=2e-6), seed
    for name, got, want, eps in (
        ("grad hidden", g_hidden, h64.grad, EPS[dtype]),
        ("grad weight", g_weight, w64.grad, EPS[dtype]),
        ("grad weights", g_weights, wt64.grad, EPS[torch.float32]),
    ):
        assert got.dtype == (weights.dtype if name == "grad weights" else dtype) and got.shape == want.shape
        scale = want.abs().max().item()
        # dz is rounded to the operand dtype, and the result once more; fp32 sums over D and V
        tol = 4 * eps * scale + 1e-6 * scale
        torch.testing.assert_close(
            got.cpu().double(),
            want,
            rtol=0.0,
            atol=tol,
            msg=lambda m, name=name: f"{name} (seed {seed}): {m}",
        )


def test_weighted_nll_is_deterministic_and_uses_the_statistics_logits(device, seed) -> None:
    hidden, weight, targets, weights = weighted_case(seed, torch.float16, device)
    options = {"launch": SMALL, "splits": 2, "chunk_tokens": 16}
    first = triton_loss_and_grads(hidden, weight, targets, weights, 1e-3, **options)
    second = triton_loss_and_grads(hidden, weight, targets, weights, 1e-3, **options)
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y), seed
    # no gradients: one pass over all the tokens, the same loss bit for bit
    with torch.no_grad():
        plain = linear_module.linear_weighted_nll_triton(
            hidden, weight, targets, weights, z_loss=1e-3, **options
        )
    assert torch.equal(plain, first[0]), seed
    # and the same per-token numbers as the statistics kernel
    s = linear_module.linear_token_stats_triton(hidden, weight, targets, launch=SMALL, splits=2)
    keep = targets != -100
    from_stats = (weights * torch.where(keep, 1e-3 * s.lse**2 - s.logprob, 0.0)).sum()
    assert from_stats.item() == pytest.approx(plain.item(), rel=1e-6), seed


def test_weighted_nll_gradients_only_where_asked(device, seed) -> None:
    hidden, weight, targets, weights = weighted_case(seed, torch.float32, device)
    w = weight.clone().requires_grad_()
    loss = linear_module.linear_weighted_nll_triton(hidden, w, targets, launch=SMALL, chunk_tokens=16)
    loss.backward()
    ref_w = weight.cpu().double().requires_grad_()
    kernels.linear_weighted_nll(hidden.cpu().double(), ref_w, targets.cpu(), backend="torch").backward()
    scale = ref_w.grad.abs().max().item()
    torch.testing.assert_close(w.grad.cpu().double(), ref_w.grad, rtol=0.0, atol=1e-5 * scale)
    wt = weights.clone().requires_grad_()
    loss = linear_module.linear_weighted_nll_triton(hidden, weight, targets, wt, launch=SMALL)
    loss.backward()  # only the per-token weights need a gradient: nll + z_loss * lse^2, 0 if ignored
    s = linear_module.linear_token_stats_triton(hidden, weight, targets, launch=SMALL)
    assert torch.equal(wt.grad, torch.where(targets != -100, -s.logprob, 0.0)), seed
    with torch.no_grad():
        h = hidden.clone().requires_grad_()
        assert not linear_module.linear_weighted_nll_triton(h, weight, targets, launch=SMALL).requires_grad


def test_public_dispatch(device, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, targets = lm_head_case(gen, (2, 6), 16, 40, torch.float32, "cpu")
    targets[targets == -100] = 1
    on_cpu = kernels.linear_token_stats(hidden, weight, targets, bias=bias)  # auto on CPU: torch
    assert isinstance(on_cpu, kernels.TokenStats) and on_cpu.lse.dtype == torch.float32
    assert kernels.linear_token_stats(hidden.double(), weight.double(), targets).lse.dtype == torch.float64
    forced = kernels.linear_token_stats(
        hidden.to(device), weight.to(device), targets.to(device), bias=bias.to(device), backend="triton"
    )
    capped = capped_logits64(hidden, weight, bias)
    assert_stats_close(forced, on_cpu, seed=seed, rtol=1e-5, atol=1e-5, capped=capped)
    loss = kernels.linear_weighted_nll(
        hidden.to(device), weight.to(device), targets.to(device), backend="triton"
    )
    assert loss.item() == pytest.approx(kernels.linear_weighted_nll(hidden, weight, targets).item(), rel=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h, w, t: kernels.linear_token_stats(h.long(), w, t), "hidden must be one of"),
        (lambda h, w, t: kernels.linear_token_stats(h, w.double(), t), "must have the dtype of hidden"),
        (lambda h, w, t: kernels.linear_token_stats(h, w[0], t), r"weight must be \[V, D\]"),
        (lambda h, w, t: kernels.linear_token_stats(h[:, :3], w, t), "does not match weight"),
        (lambda h, w, t: kernels.linear_token_stats(h, w, t[:2]), r"shaped \[\*targets.shape, D\]"),
        (lambda h, w, t: kernels.linear_token_stats(h, w, t.float()), "targets must be an integer"),
        (
            lambda h, w, t: kernels.linear_token_stats(h, w, t, shift=True),
            r"shift=True needs hidden \[B, T, D\]",
        ),
        (
            lambda h, w, t: kernels.linear_token_stats(h, w, t, bias=torch.zeros(3)),
            r"bias must be shaped \[V\]",
        ),
        (
            lambda h, w, t: kernels.linear_token_stats(h, w, t, bias=torch.zeros(9).long()),
            "bias must be one of",
        ),
        (lambda h, w, t: kernels.linear_token_stats(h, w, t, temperature=0.0), "temperature"),
        (lambda h, w, t: kernels.linear_token_stats(h, w, t, softcap=-1.0), "softcap"),
        (lambda h, w, t: kernels.linear_token_stats(h, w, t, backend="cuda"), "backend must be"),
        (lambda h, w, t: kernels.linear_weighted_nll(h, w, t, torch.ones(3)), "weights must be shaped like"),
        (
            lambda h, w, t: kernels.linear_weighted_nll(h, w, t, torch.ones(4).long()),
            "weights must be a float",
        ),
        (lambda h, w, t: kernels.linear_weighted_nll(h, w, t, z_loss=-0.1), "z_loss"),
        (lambda h, w, t: kernels.linear_weighted_nll(h, w, t, z_loss=math.nan), "z_loss"),
        (lambda h, w, t: linear_module.LinearLaunch(block_n=24), "block_n must be a power of two >= 16"),
        (lambda h, w, t: linear_module.LinearLaunch(block_d=8), "block_d must be a power of two >= 16"),
        (lambda h, w, t: linear_module.LinearLaunch(num_warps=0), "num_warps must be >= 1"),
    ],
)
def test_bad_arguments_raise(call, message) -> None:
    hidden, weight, targets = torch.zeros(4, 5), torch.zeros(9, 5), torch.zeros(4, dtype=torch.long)
    with pytest.raises(InvalidArgumentError, match=message):
        call(hidden, weight, targets)


def test_bad_launch_settings_raise(device) -> None:
    hidden, weight, targets = (
        torch.zeros(4, 16, device=device),
        torch.zeros(9, 16, device=device),
        torch.zeros(4, dtype=torch.long, device=device),
    )
    with pytest.raises(InvalidArgumentError, match="splits must be >= 1"):
        linear_module.linear_token_stats_triton(hidden, weight, targets, launch=SMALL, splits=0)
    with pytest.raises(InvalidArgumentError, match="chunk_tokens must be >= 1"):
        linear_module.linear_weighted_nll_triton(
            hidden, weight.requires_grad_(), targets, launch=SMALL, chunk_tokens=0
        )


# ---------------------------------------------------------------------------------------------
# GPU only: bf16 tensor cores at realistic shapes


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("vocab", [32000, 128256])
def test_gpu_bf16_statistics_at_realistic_shapes(seed, vocab) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n, dim = 1024, 2048
    hidden = torch.randn(n, dim, device="cuda", generator=gen).bfloat16()
    weight = (torch.randn(vocab, dim, device="cuda", generator=gen) * 0.05).bfloat16()
    targets = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    targets[::7] = -100
    s = kernels.linear_token_stats(hidden, weight, targets, softcap=30.0)
    rows = torch.randperm(n, device="cuda", generator=gen)[:64]
    want = linear_module.linear_token_stats_reference(
        hidden[rows], weight, targets[rows], softcap=30.0, compute_dtype=torch.float64
    )
    got = type(s)(*(v[rows] for v in s))
    capped = capped_logits64(hidden[rows], weight, softcap=30.0)
    assert_stats_close(got, want, seed=seed, rtol=1e-5, atol=1e-4, capped=capped)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_bf16_training_gradients_and_determinism(seed) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n, dim, vocab = 2048, 1024, 32000
    hidden = torch.randn(n, dim, device="cuda", generator=gen).bfloat16()
    weight = (torch.randn(vocab, dim, device="cuda", generator=gen) * 0.05).bfloat16()
    targets = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    weights = (torch.rand(n, device="cuda", generator=gen) < 0.6).float()
    options = {"chunk_tokens": 768}  # three chunks, the last one partial
    first = triton_loss_and_grads(hidden, weight, targets, weights, 1e-4, **options)
    second = triton_loss_and_grads(hidden, weight, targets, weights, 1e-4, **options)
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)
    h64 = hidden.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    ref = linear_module.linear_weighted_nll_reference(
        h64, w64, targets, weights.double(), z_loss=1e-4, compute_dtype=torch.float64
    )
    ref.backward()
    assert first[0].item() == pytest.approx(ref.item(), rel=1e-5)
    for got, want in ((first[1], h64.grad), (first[2], w64.grad)):
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=0.0, atol=4 * EPS[torch.bfloat16] * scale)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_linear_token_stats_is_cuda_graph_capturable(seed) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(2, 300, 512, device="cuda", generator=gen).bfloat16()
    weight = (torch.randn(32000, 512, device="cuda", generator=gen) * 0.05).bfloat16()
    ids = torch.randint(0, 32000, (2, 300), device="cuda", generator=gen)
    eager = kernels.linear_token_stats(hidden, weight, ids, shift=True)  # compiles outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = kernels.linear_token_stats(hidden, weight, ids, shift=True)
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(captured, eager, strict=True):
        assert torch.equal(x, y)
