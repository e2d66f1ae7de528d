"""End to end on the CPU: PreSelect and perplexity correlations with tiny language models.

A usage example of the package's public APIs, and a small experiment:

1. **Data** (``../shared/data``). Every source of ``raw_pool`` is shuffled (seeded) and split: a
   *reference* part trains the tokenizer and the reference models; the rest gives the *pool*,
   a uniform sample of ``pool_docs`` documents that selection chooses from. ``benchmark``
   (gsm8k, hellaswag, llm_foundry_evals) is split per source into *dev* texts, which rank the
   reference models, and as many *test* texts, which evaluate the models trained on the
   selections; ``target`` (Wikipedia, Gutenberg, WikiText, State of the Union) is held out for
   evaluation only. Every text is cut to its first ``max_chars`` characters.
2. **Reference models.** A byte-level BPE tokenizer (:func:`tokensieve.training.train_tokenizer`)
   and N tiny LLaMA-style models (:func:`tokensieve.training.train_causal_lm`) of growing width,
   depth and step count, each on its own mixture of the pool's sources (weights drawn from a
   seeded Dirichlet). Size alone would rank the models alike on nearly every document; the
   mixtures make a model's benchmark error depend on what it read as well as on its capacity,
   as for the public models of the two papers.
3. **Benchmark error.** Tiny models answer multiple-choice questions at chance, so a model's
   benchmark error here is its **bits per byte on the benchmark dev texts** (the sum of the
   NLLs over the sum of the UTF-8 bytes, in bits), lower is better. PreSelect reads the score
   ``b_i = -bpb_i`` (higher is better); perplexity correlations reads ``y_i = bpb_i / 8`` (the
   fraction of a raw 8-bit byte code: the sign and rank estimators see only the order of ``y``,
   and the scale keeps it in the [0, 1] the reference expects of an error).
4. **Scoring.** Each reference model scores the first ``scored_docs`` documents of the pool
   with :class:`tokensieve.scoring.TokenScorer` (one table per model: ``sum_nll``,
   ``bits_per_byte``, ``tokens``, ...).
5. **PreSelect** (:mod:`tokensieve.methods.preselect`): each scored document's concordance
   between its loss ranking over the models and their benchmark ranking
   (``concordance_scores``); positives are the perfectly concordant documents, negatives as
   many of the least concordant (``preselect_labels``); a fastText classifier on them
   (``train_preselect_classifier``: ``epoch=3, lr=0.1, wordNgrams=2``) gives every pool
   document P(``__label__1``), and ``select_by_characters`` keeps the top ``fraction`` of the
   pool's characters.
6. **Perplexity correlations** (:mod:`tokensieve.methods.perplexity_correlations`, through
   :func:`tokensieve.methods.tables.select_from_tables`, which ``tokensieve select --method
   perplexity-correlations`` runs): the ``estimator`` over the models' bits-per-byte matrix and
   their errors, then the linear projection under ``tau = (tokens / sum tokens) / fraction``;
   documents of positive weight are ``include``, the others ``exclude``; a fastText classifier
   (``wordNgrams=2``, fastText's other defaults, as the reference trains it) gives every pool
   document P(``__label__include``), and the same ``select_by_characters`` cut keeps the top
   ``fraction`` (the reference fills a token budget; one rule for every arm gives subsets of
   the same size). The default estimator is ``sign``, not the reference's ``spearmanr``: with
   4 models Spearman's rho takes a handful of values, half of the documents tie at 1, and the
   projection then picks among them by document order, so the classifier's labels would be
   partly arbitrary (``--estimator spearmanr`` runs it anyway).
7. **Evaluation.** Fresh models of one size and step count train on each subset with
   ``model_seeds`` seeds: PreSelect's, perplexity correlations', ``random_subsets`` random
   subsets of the same character budget (the same cut over uniform random scores) and, with
   ``full_pool``, the whole pool (no selection, same compute). Each is scored on the held-out
   target texts and the benchmark test texts: bits per byte and mean NLL per token (nats). The
   spread over the random subsets and seeds is the noise level the selections are judged by.

Results depend on the seed and, through the rounding of the matrix products, on the torch
thread count (``--threads``, default 1: the tiny models run fastest on one thread); the same
seed and thread count give the same numbers. JSON results, with every setting and the machine,
go to ``benches/results/example_selection-<time>.json``.

Usage: python benches/example_selection.py [--seed 0] [--threads 1] [--fraction 0.1]
       [--estimator sign] [--random-subsets 2] [--model-seeds 2] [--no-full-pool] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokensieve.io import DocumentReader
from tokensieve.methods.perplexity_correlations import ESTIMATORS, Estimator

LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class ModelSize:
    """A tiny LLaMA-style model and how long it trains."""

    hidden_size: int
    num_layers: int
    steps: int


@dataclass(frozen=True)
class Settings:
    """Every setting of a run (recorded in the results)."""

    seed: int = 0
    #: read at most this many records of each file (``None``: all of them)
    read_limit: int | None = None
    #: documents (and evaluation texts) are cut to their first this many characters
    max_chars: int = 800
    #: shorter documents are left out of every part
    min_chars: int = 32
    vocab_size: int = 1024
    #: documents of the reference split the tokenizer learns from
    tokenizer_docs: int = 3000
    #: training documents of each reference model (drawn from its source mixture)
    reference_docs: int = 2000
    reference_models: tuple[ModelSize, ...] = (
        ModelSize(32, 1, 150),
        ModelSize(48, 1, 200),
        ModelSize(64, 2, 250),
        ModelSize(80, 2, 300),
    )
    #: concentration of the Dirichlet the reference models' source mixtures are drawn from
    mixture_alpha: float = 1.0
    pool_docs: int = 8000
    #: the first this many pool documents are scored by the reference models
    scored_docs: int = 800
    #: per benchmark source: dev texts and as many test texts
    benchmark_docs: int = 100
    #: held-out texts per target source
    target_docs: int = 30
    #: the share of the pool's characters every selection keeps
    fraction: float = 0.1
    estimator: Estimator = "sign"
    #: the models trained on the selections
    fresh_model: ModelSize = ModelSize(64, 2, 300)
    random_subsets: int = 2
    #: fresh models per subset, with seeds ``seed, seed + 1, ...``
    model_seeds: int = 2
    full_pool: bool = True
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 1e-2
    #: scoring windows (tokens)
    max_length: int = 128

    @classmethod
    def quick(cls) -> Settings:
        """A toy size for smoke runs and the test: seconds, not minutes."""
        return cls(
            read_limit=1000,
            max_chars=300,
            vocab_size=300,
            tokenizer_docs=300,
            reference_docs=150,
            reference_models=(ModelSize(16, 1, 20), ModelSize(24, 1, 25), ModelSize(32, 1, 30)),
            mixture_alpha=0.2,
            pool_docs=600,
            scored_docs=150,
            benchmark_docs=10,
            target_docs=4,
            fraction=0.2,
            fresh_model=ModelSize(16, 1, 10),
            random_subsets=1,
            model_seeds=1,
            full_pool=False,
            seq_len=32,
            batch_size=8,
            max_length=64,
        )


@dataclass(frozen=True)
class Doc:
    text: str
    source: str


@dataclass
class Corpora:
    """The parts of the data a run uses (module docstring, step 1)."""

    reference: dict[str, list[Doc]]  # by pool source
    pool: list[Doc]
    benchmark_dev: list[Doc]
    benchmark_test: list[Doc]
    target: list[Doc]


def read_source(path: Path, settings: Settings) -> list[Doc]:
    """The documents of one ``.jsonl.zst`` file, cut to ``max_chars``, the short ones left out."""
    source = path.name.split(".")[0]
    docs, records = [], 0
    for batch in DocumentReader(path):
        for record in batch:
            if len(record.text) >= settings.min_chars:
                docs.append(Doc(record.text[: settings.max_chars], source))
            records += 1
            if records == settings.read_limit:
                return docs
    return docs


def load_corpora(data_dir: Path, settings: Settings) -> Corpora:
    """Reads and splits the shared data (module docstring, step 1); deterministic in the seed."""
    rng = np.random.default_rng(settings.seed)

    def shuffled(path: Path) -> list[Doc]:
        docs = read_source(path, settings)
        return [docs[i] for i in rng.permutation(len(docs))]

    reference: dict[str, list[Doc]] = {}
    candidates: list[Doc] = []
    for path in sorted((data_dir / "raw_pool").glob("*.jsonl.zst")):
        docs = shuffled(path)
        # at most half of a source, and no more than the reference models can use
        cut = min(len(docs) // 2, settings.reference_docs)
        reference[docs[0].source] = docs[:cut]
        candidates += docs[cut:]
    pool = [candidates[i] for i in rng.choice(len(candidates), settings.pool_docs, replace=False)]
    dev, test = [], []
    for path in sorted((data_dir / "benchmark").glob("*.jsonl.zst")):
        docs = shuffled(path)
        dev += docs[: settings.benchmark_docs]
        test += docs[settings.benchmark_docs : 2 * settings.benchmark_docs]
    target = []
    for path in sorted((data_dir / "target").glob("*.jsonl.zst")):
        target += shuffled(path)[: settings.target_docs]
    return Corpora(reference, pool, dev, test, target)


def mixture_texts(reference: dict[str, list[Doc]], weights: np.ndarray, n_docs: int) -> list[str]:
    """About ``n_docs`` training texts, a share ``weights`` of them from each source (sorted by
    name), cycling through a source's documents when it has fewer."""
    texts = []
    for (_, docs), w in zip(sorted(reference.items()), weights, strict=True):
        texts += [docs[i % len(docs)].text for i in range(round(w * n_docs))]
    return texts


def train(
    texts: Sequence[str], tokenizer: Any, size: ModelSize, settings: Settings, seed: int, out_dir: Path
) -> Path:
    """Trains a tiny causal LM on ``texts`` and saves it, with the tokenizer, in ``out_dir``."""
    from tokensieve.training import train_causal_lm

    train_causal_lm(
        texts,
        tokenizer,
        hidden_size=size.hidden_size,
        num_layers=size.num_layers,
        num_heads=4,
        seq_len=settings.seq_len,
        batch_size=settings.batch_size,
        steps=size.steps,
        lr=settings.lr,
        seed=seed,
        out_dir=out_dir,
    )
    return out_dir


def score(model_dir: Path, docs: Sequence[Doc], settings: Settings) -> Any:
    """The score table of ``docs`` under the model saved in ``model_dir``; a row's id is the
    document's position in ``docs``."""
    from tokensieve.scoring import TokenScorer

    scorer = TokenScorer.from_pretrained(model_dir, device="cpu")
    records = [{"text": d.text, "id": str(i)} for i, d in enumerate(docs)]
    return scorer.score(records, max_length=settings.max_length, batch_size=settings.batch_size)


def losses(table: Any, docs: Sequence[Doc]) -> dict[str, Any]:
    """Bits per byte and mean NLL per token (nats) of a score table of ``docs``, over all of
    them and per source (sums over the documents, so longer ones weigh more)."""
    nll = table.column("sum_nll").to_numpy()
    n_bytes = table.column("bytes").to_numpy()
    tokens = table.column("tokens").to_numpy()
    sources = np.array([docs[int(i)].source for i in table.column("id").to_pylist()])

    def summary(mask: np.ndarray) -> dict[str, float]:
        return {
            "bits_per_byte": float(nll[mask].sum() / (n_bytes[mask].sum() * LN2)),
            "nll_per_token": float(nll[mask].sum() / tokens[mask].sum()),
        }

    return {
        **summary(np.ones(len(nll), dtype=bool)),
        "by_source": {s: summary(sources == s) for s in sorted(set(sources))},
    }


def composition(docs: Sequence[Doc]) -> dict[str, float]:
    """The share of the characters of ``docs`` from each source."""
    chars: Counter[str] = Counter()
    for d in docs:
        chars[d.source] += len(d.text)
    total = sum(chars.values())
    return {s: round(c / total, 4) for s, c in sorted(chars.items())}


def scored_docs(tables: Sequence[Any], corpora: Corpora) -> list[Doc]:
    """The pool documents of the rows of the score tables (aligned on the first's ids)."""
    return [corpora.pool[int(i)] for i in tables[0].column("id").to_pylist()]


def top_characters(
    classifier: Any, label: str, corpora: Corpora, settings: Settings
) -> tuple[np.ndarray, dict[str, Any]]:
    """The pool's keep mask, the top ``fraction`` of its characters by P(``label``), and the cut:
    its threshold, the characters scoring above it (at most the budget) and the documents tied
    at it (all kept, so the kept characters can pass the budget by more than one document)."""
    from tokensieve.methods.preselect import select_by_characters

    probability = classifier.score([d.text for d in corpora.pool], label, newline=" ")
    chars = np.array([len(d.text) for d in corpora.pool])
    keep, threshold = select_by_characters(probability, chars, settings.fraction, nan_policy="reject")
    cut = {
        "threshold": threshold,
        "characters_above_threshold": int(chars[probability > threshold].sum()),
        "documents_at_threshold": int((probability == threshold).sum()),
    }
    return keep, cut


def preselect(
    tables: Sequence[Any], benchmark_bpb: np.ndarray, corpora: Corpora, settings: Settings
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """PreSelect (module docstring, step 5): the pool's keep mask (``None`` when the labels
    hold a single class: no classifier to train) and what it found."""
    from tokensieve.methods.preselect import (
        POSITIVE_LABEL,
        concordance_scores,
        preselect_labels,
        train_preselect_classifier,
    )

    scored = scored_docs(tables, corpora)
    concordance = concordance_scores(tables, -benchmark_bpb, column="sum_nll")
    labels = preselect_labels(concordance, len(tables))
    pairs = len(tables) * (len(tables) - 1) // 2
    details: dict[str, Any] = {
        "concordance_histogram": {str(k): int((concordance == k).sum()) for k in range(pairs + 1)},
        "positives": int((labels == 1).sum()),
        "negatives": int((labels == 0).sum()),
        "positives_composition": composition([d for d, y in zip(scored, labels, strict=True) if y == 1]),
        "negatives_composition": composition([d for d, y in zip(scored, labels, strict=True) if y == 0]),
    }
    if not details["positives"] or not details["negatives"]:
        details["skipped"] = "every scored document has the same label: no classifier to train"
        return None, details
    classifier = train_preselect_classifier([d.text for d in scored], labels, seed=settings.seed)
    keep, details["cut"] = top_characters(classifier, POSITIVE_LABEL, corpora, settings)
    return keep, details


def perplexity_correlations(
    tables: Sequence[Any], benchmark_bpb: np.ndarray, corpora: Corpora, settings: Settings
) -> tuple[np.ndarray, dict[str, Any]]:
    """Perplexity correlations (module docstring, step 6): the pool's keep mask and what it found."""
    from tokensieve.fasttext import train_supervised
    from tokensieve.methods.tables import select_from_tables

    scored = scored_docs(tables, corpora)
    included = select_from_tables(
        "perplexity-correlations",
        tables,
        benchmark_errors=list(benchmark_bpb / 8),
        fraction=settings.fraction,
        estimator=settings.estimator,
    ).selected
    labels = ["include" if s else "exclude" for s in included]
    classifier = train_supervised(
        ([d.text for d in scored], labels), wordNgrams=2, thread=1, seed=settings.seed
    )
    keep, cut = top_characters(classifier, "__label__include", corpora, settings)
    details = {
        "included": int(included.sum()),
        "included_composition": composition([d for d, s in zip(scored, included, strict=True) if s]),
        "cut": cut,
    }
    return keep, details


def random_selection(corpora: Corpora, settings: Settings, seed: int) -> np.ndarray:
    """The methods' cut over uniform random scores: a random subset of the same character budget."""
    from tokensieve.methods.preselect import select_by_characters

    noise = np.random.default_rng(seed).random(len(corpora.pool))
    return select_by_characters(noise, [len(d.text) for d in corpora.pool], settings.fraction)[0]


def run(data_dir: Path, settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole pipeline (module docstring); returns what the results file records."""
    from tokensieve.training import train_tokenizer

    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now
        log(f"[{sum(seconds.values()):7.1f} s] {stage} ({seconds[stage]:.1f} s)")

    corpora = load_corpora(data_dir, settings)
    lap("read and split the data")
    rng = np.random.default_rng(settings.seed)
    sources = sorted(corpora.reference)
    reference_texts = [d.text for s in sources for d in corpora.reference[s]]
    sample = rng.permutation(len(reference_texts))[: settings.tokenizer_docs]
    tokenizer = train_tokenizer([reference_texts[i] for i in sample], vocab_size=settings.vocab_size)
    lap("tokenizer")

    with tempfile.TemporaryDirectory(prefix="example-selection-") as tmp:
        root = Path(tmp)
        mixtures = rng.dirichlet(
            np.full(len(sources), settings.mixture_alpha), len(settings.reference_models)
        )
        references, tables = [], []
        for i, (size, weights) in enumerate(zip(settings.reference_models, mixtures, strict=True)):
            texts = mixture_texts(corpora.reference, weights, settings.reference_docs)
            model_dir = train(texts, tokenizer, size, settings, settings.seed, root / f"reference-{i}")
            tables.append(score(model_dir, corpora.pool[: settings.scored_docs], settings))
            references.append(
                {
                    **dataclasses.asdict(size),
                    "mixture": dict(zip(sources, weights.round(4).tolist(), strict=True)),
                    "benchmark_dev": losses(
                        score(model_dir, corpora.benchmark_dev, settings), corpora.benchmark_dev
                    ),
                    "scored_pool": losses(tables[-1], corpora.pool),
                }
            )
            lap(f"reference model {i}: train, score the benchmark dev texts and {len(tables[-1])} documents")
        benchmark_bpb = np.array([r["benchmark_dev"]["bits_per_byte"] for r in references])

        keep_preselect, preselect_details = preselect(tables, benchmark_bpb, corpora, settings)
        lap("PreSelect")
        keep_pc, pc_details = perplexity_correlations(tables, benchmark_bpb, corpora, settings)
        lap("perplexity correlations")

        arms = {"preselect": keep_preselect, "perplexity_correlations": keep_pc}
        for r in range(settings.random_subsets):
            arms[f"random_{r}"] = random_selection(corpora, settings, settings.seed + 1 + r)
        if settings.full_pool:
            arms["full_pool"] = np.ones(len(corpora.pool), dtype=bool)
        chosen = {name: keep for name, keep in arms.items() if keep is not None}
        results = {}
        for name, keep in chosen.items():
            subset = [d for d, k in zip(corpora.pool, keep, strict=True) if k]
            runs = []
            for seed in range(settings.seed, settings.seed + settings.model_seeds):
                model_dir = train(
                    [d.text for d in subset],
                    tokenizer,
                    settings.fresh_model,
                    settings,
                    seed,
                    root / f"{name}-{seed}",
                )
                runs.append(
                    {
                        "seed": seed,
                        "target": losses(score(model_dir, corpora.target, settings), corpora.target),
                        "benchmark_test": losses(
                            score(model_dir, corpora.benchmark_test, settings), corpora.benchmark_test
                        ),
                    }
                )
                lap(f"fresh model on {name}, seed {seed}: train, evaluate")
            results[name] = {
                "documents": len(subset),
                "characters": sum(len(d.text) for d in subset),
                "composition": composition(subset),
                "runs": runs,
                "mean": {
                    split: {
                        metric: statistics.fmean(r[split][metric] for r in runs)
                        for metric in ("bits_per_byte", "nll_per_token")
                    }
                    for split in ("target", "benchmark_test")
                },
            }

    selections = [name for name in chosen if name != "full_pool"]
    return {
        "settings": dataclasses.asdict(settings),
        "data": {
            "reference_documents": {s: len(d) for s, d in sorted(corpora.reference.items())},
            "pool_documents": len(corpora.pool),
            "pool_characters": sum(len(d.text) for d in corpora.pool),
            "pool_composition": composition(corpora.pool),
            "benchmark_dev_documents": len(corpora.benchmark_dev),
            "benchmark_test_documents": len(corpora.benchmark_test),
            "target_documents": len(corpora.target),
        },
        "benchmark_error": "bits per byte on the benchmark dev texts; PreSelect reads -bpb, "
        "perplexity correlations bpb / 8",
        "reference_models": references,
        "preselect": preselect_details,
        "perplexity_correlations": pc_details,
        "arms": results,
        "noise": noise_level(results),
        "selection_overlap_jaccard": {
            f"{a}|{b}": _jaccard(chosen[a], chosen[b])
            for i, a in enumerate(selections)
            for b in selections[i + 1 :]
        },
        "seconds": seconds,
    }


def noise_level(arms: dict[str, Any]) -> dict[str, Any]:
    """The mean, range and standard deviation of the random subsets' losses over all their
    fresh models (every subset, every seed)."""
    runs = [r for name, arm in arms.items() if name.startswith("random_") for r in arm["runs"]]
    out: dict[str, Any] = {"runs": len(runs)}
    for split in ("target", "benchmark_test"):
        values = [r[split]["bits_per_byte"] for r in runs]
        out[f"{split}_bits_per_byte"] = {
            "mean": statistics.fmean(values) if values else None,
            "min": min(values, default=None),
            "max": max(values, default=None),
            "stdev": statistics.stdev(values) if len(values) > 1 else None,
        }
    return out


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return round(float((a & b).sum() / max(1, (a | b).sum())), 4)


def report(results: dict[str, Any]) -> str:
    """The results as text: the reference models, what the methods found, and the held-out
    losses of the fresh models (bits per byte, the mean over seeds and each seed's)."""
    lines = ["reference models (benchmark error: bits per byte on the benchmark dev texts):"]
    lines.append(
        f"  {'#':>2} {'hidden':>6} {'layers':>6} {'steps':>5} {'bench bpb':>9} {'pool bpb':>8}  mixture"
    )
    for i, r in enumerate(results["reference_models"]):
        top = sorted(r["mixture"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(
            f"  {i:>2} {r['hidden_size']:>6} {r['num_layers']:>6} {r['steps']:>5} "
            f"{r['benchmark_dev']['bits_per_byte']:>9.4f} {r['scored_pool']['bits_per_byte']:>8.4f}  "
            + ", ".join(f"{s} {w:.2f}" for s, w in top)
        )
    p = results["preselect"]
    lines.append(
        f"PreSelect: concordance histogram {p['concordance_histogram']}; "
        f"{p['positives']} positives, {p['negatives']} negatives"
        + (f"; {p['skipped']}" if "skipped" in p else "")
    )
    lines.append(
        f"perplexity correlations: {results['perplexity_correlations']['included']} scored documents included"
    )
    lines.append("fresh models trained on each subset (same size and steps), bits per byte on held-out text:")
    lines.append(
        f"  {'trained on':<24} {'docs':>5} {'chars':>9} {'target':>7} {'bench':>7}  per seed (target / bench)"
    )
    for name, arm in results["arms"].items():
        seeds = ", ".join(
            f"{r['target']['bits_per_byte']:.4f} / {r['benchmark_test']['bits_per_byte']:.4f}"
            for r in arm["runs"]
        )
        mean = arm["mean"]
        lines.append(
            f"  {name:<24} {arm['documents']:>5} {arm['characters']:>9,} "
            f"{mean['target']['bits_per_byte']:>7.4f} {mean['benchmark_test']['bits_per_byte']:>7.4f}"
            f"  {seeds}"
        )
    noise = results["noise"]
    if noise["runs"] > 1:
        t, b = noise["target_bits_per_byte"], noise["benchmark_test_bits_per_byte"]
        lines.append(
            f"noise: {noise['runs']} random-subset models, stdev {t['stdev']:.4f} (target) "
            f"{b['stdev']:.4f} (bench); range {t['min']:.4f}-{t['max']:.4f} / {b['min']:.4f}-{b['max']:.4f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="toy sizes, seconds; nothing written")
    # these default to the Settings' (or the quick settings') values
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fraction", type=float)
    parser.add_argument("--estimator", choices=ESTIMATORS)
    parser.add_argument("--random-subsets", type=int)
    parser.add_argument("--model-seeds", type=int)
    parser.add_argument("--no-full-pool", dest="full_pool", action="store_false", default=None)
    args = parser.parse_args()

    import torch
    import transformers
    from common import SHARED_DATA, write_result

    if not SHARED_DATA.is_dir():
        print(f"the shared data is not at {SHARED_DATA}; nothing run")
        return 0
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    given = {
        name: value
        for name, value in vars(args).items()
        if name not in ("threads", "quick") and value is not None
    }
    settings = dataclasses.replace(Settings.quick() if args.quick else Settings(), **given)
    start = time.perf_counter()
    results = run(SHARED_DATA, settings)
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["torch_threads"] = torch.get_num_threads()
    results["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    print(report(results))
    print(f"total {results['total_seconds']:.0f} s")
    if not args.quick:
        print(f"written: {write_result('example_selection', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
