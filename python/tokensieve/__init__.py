"""tokensieve: score and select language-model pretraining data.

The public API is organised one module per capability: :mod:`tokensieve.features` (hashed
n-gram features), :mod:`tokensieve.dsir` (importance resampling), :mod:`tokensieve.fasttext`
(fastText classifiers), :mod:`tokensieve.io` (corpus inputs and read reports),
:mod:`tokensieve.exceptions`, :mod:`tokensieve.output` (atomic writes and manifest parts of the
selection writers), and the command line in :mod:`tokensieve.cli`. Modules with
optional dependencies are imported on their own: :mod:`tokensieve.kernels` (torch, triton),
:mod:`tokensieve.scoring` (language-model scores), :mod:`tokensieve.training` (tiny models for
tests and examples) and :mod:`tokensieve.plotting` (matplotlib).
"""

from tokensieve import dsir, exceptions, fasttext, features, io
from tokensieve._core import __version__, resolve_num_threads
from tokensieve.dsir import DSIR
from tokensieve.features import HashedNgrams

__all__ = [
    "DSIR",
    "HashedNgrams",
    "__version__",
    "dsir",
    "exceptions",
    "fasttext",
    "features",
    "io",
    "resolve_num_threads",
]
