"""The data-selection methods of the literature, over per-document score tables (one row per
document, as :class:`tokensieve.scoring.TokenScorer` writes them) and per-token statistics (as
:mod:`tokensieve.kernels` computes them). One module per method; the definitions, conventions and
reference code of each are in its docstring (and in methods.md of the project's reference notes).

=========================  =================================================================
module                     functions
=========================  =================================================================
:mod:`.preselect`          :func:`concordance_scores`, :func:`preselect_labels`,
                           :func:`train_preselect_classifier`, :func:`select_by_characters`
:mod:`.perplexity_correlations`  :func:`estimate` (``product``, ``sign``, ``sign_cdf``,
                           ``sign_sign``, ``spearmanr``), :func:`linear_projection`,
                           :func:`l2_projection`, :func:`thrush_bpb`, :func:`token_budget_tau`,
                           :func:`bpb_matrix`
:mod:`.color_filter`       :func:`color_scores`, :func:`color_select`
:mod:`.min_k`              :func:`min_k_percent`, :func:`min_k_plus_plus`, :func:`min_k_plus_plus_z`
:mod:`.rho1`               :func:`rho1_token_mask`, :func:`rho1_loss`
:mod:`.reweighting`        :func:`per_sample_loss`, :func:`normalize_losses`,
                           :func:`sample_weights`, :func:`reweighted_loss`
:mod:`.online_mixing`      :class:`OnlineDataMixing`
:mod:`.perplexity_filter`  :func:`ccnet_perplexity`, :func:`percentile_cutoffs`,
                           :func:`ccnet_buckets`, :func:`perplexity_band`
:mod:`.uncertainty`        :func:`chow_sum`, :func:`chow_average`, :func:`chow_quantile`,
                           :func:`chow_features`
:mod:`.selection`          :func:`top_k`, :func:`threshold_mask`
:mod:`.tables`             :func:`select_from_tables` (by method name; ``tokensieve select``)
=========================  =================================================================

The per-token modules (``min_k``, ``rho1``, ``reweighting``, ``uncertainty``) need torch
(``pip install tokensieve[gpu]``); the others need only numpy (and pyarrow for tables). The names
here are loaded on first use, so importing this package needs neither.

NaN policy: see :mod:`.selection`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "color_filter": ("color_scores", "color_select"),
    "min_k": ("min_k_percent", "min_k_plus_plus", "min_k_plus_plus_z"),
    "online_mixing": ("OnlineDataMixing",),
    "perplexity_correlations": (
        "bpb_matrix",
        "estimate",
        "l2_projection",
        "linear_projection",
        "thrush_bpb",
        "token_budget_tau",
    ),
    "perplexity_filter": ("ccnet_buckets", "ccnet_perplexity", "percentile_cutoffs", "perplexity_band"),
    "preselect": (
        "concordance_scores",
        "preselect_labels",
        "select_by_characters",
        "train_preselect_classifier",
    ),
    "reweighting": ("normalize_losses", "per_sample_loss", "reweighted_loss", "sample_weights"),
    "rho1": ("rho1_loss", "rho1_token_mask"),
    "selection": ("threshold_mask", "top_k"),
    "tables": ("TableSelection", "select_from_tables"),
    "uncertainty": ("chow_average", "chow_features", "chow_quantile", "chow_sum"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    if name in _EXPORTS:  # a submodule not imported yet
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_EXPORTS])
