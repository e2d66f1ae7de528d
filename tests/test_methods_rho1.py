"""Rho-1 selective language modelling: the test vector of methods.md §5, its tie rule, masking,
per-document selection and the gradient of the loss."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from tokensieve.methods import rho1  # noqa: E402

LOSS = [2.0, 0.5, 3.0, 1.0, 4.0, 0.25, 2.5, 1.5, 0.75, 3.5]
REFERENCE = [1.0, 0.75, 3.25, 0.25, 1.0, 0.0, 2.0, 1.75, 0.0, 3.5]


def test_spec_vector() -> None:
    loss = torch.tensor(LOSS, requires_grad=True)
    selected = rho1.rho1_token_mask(loss, torch.tensor(REFERENCE), 0.6)
    assert selected.nonzero()[:, 0].tolist() == [0, 3, 4, 5, 6, 8]
    slm = rho1.rho1_loss(loss, torch.tensor(REFERENCE), 0.6)
    assert float(slm.detach()) == pytest.approx(1.75, abs=1e-7)
    slm.backward()
    # d L_SLM / d loss_i = 1/k on the selected tokens, 0 elsewhere
    np.testing.assert_allclose(loss.grad.numpy(), selected.numpy() / 6.0)


def test_ties_at_the_boundary_go_to_the_lower_index() -> None:
    excess = np.array([1.0, 0.5, 0.5, 0.5, 2.0])
    # k = round(0.6 * 5) = 3: 2.0 and 1.0, then the first of the three 0.5s
    selected = rho1.rho1_token_mask(excess, np.zeros(5), 0.6)
    assert selected.tolist() == [True, True, False, False, True]


def test_masked_tokens_are_neither_selected_nor_counted() -> None:
    mask = torch.tensor([True] * 8 + [False, False])
    selected = rho1.rho1_token_mask(torch.tensor(LOSS), torch.tensor(REFERENCE), 0.5, mask=mask)
    # 8 valid tokens, k = 4: excess 3, 1, 0.75, 0.5 at positions 4, 0, 3, 6
    assert selected.nonzero()[:, 0].tolist() == [0, 3, 4, 6]
    loss = rho1.rho1_loss(torch.tensor(LOSS), torch.tensor(REFERENCE), 0.5, mask=mask)
    assert float(loss) == pytest.approx((2.0 + 1.0 + 4.0 + 2.5) / 4)


def test_per_document_selection_and_nothing_selected() -> None:
    cu = torch.tensor([0, 4, 10])
    selected = rho1.rho1_token_mask(torch.tensor(LOSS), torch.tensor(REFERENCE), 0.5, cu_seqlens=cu)
    # document 0 (excess 1, -.25, -.25, .75): k = 2; document 1 (3, .25, .5, -.25, .75, 0): k = 3
    assert selected.nonzero()[:, 0].tolist() == [0, 3, 4, 6, 8]
    loss = torch.tensor(LOSS, requires_grad=True)
    zero = rho1.rho1_loss(loss, torch.tensor(REFERENCE), 0.04)  # round(0.4) = 0 tokens
    zero.backward()
    assert float(zero.detach()) == 0.0 and not loss.grad.any()
