"""How monosemantic are a model's neurons? Several metrics per neuron, their agreement, and two models compared.

The Neuroscope post's problems 9.51–9.53 ask whether SoLU neurons are more
interpretable than GELU ones, measured without a human in the loop, and
whether the answer depends on the metric. For every neuron of a layer this
module computes:

``vr_best``
    The variance reduction (thesis Eq. 3.4, :mod:`needle.universal.explain`)
    of the neuron's best automatic explanation over all tokens: the share of
    its activation variance that one binary token test (a vocabulary
    property, a unigram, the previous token's, the source distribution) or
    the position explains. It looks at the whole distribution.
``top_share``
    Over the neuron's ``n_top`` max-activating tokens (one per sequence), the
    share covered by the binary test that covers most of them, among tests
    *selective* enough to say something: tests true on at most
    ``max_base_rate`` of all tokens (``leading_space`` covers half of all
    text and explains nothing). It looks at the top only, like a person
    reading a Neuroscope page.
``top_token_share``
    The share of the top tokens that are the single most common token: the
    narrowest explanation, a unigram neuron.

A neuron's top examples *share one explanation* when ``top_share`` is at
least ``share`` (default 0.8). The binary calls of the three metrics
(``vr_best >= vr_threshold``, ``top_share >= share``,
``top_token_share >= share``) are compared pairwise by raw agreement and
Cohen's κ, and the continuous metrics by Spearman's ρ
(:func:`metric_agreement`). :func:`compare_models` puts two models side by
side with bootstrap intervals over neurons.

Metrics read the neuron at the site ``post``: for SoLU models that is the
softmax product, before the norm (:mod:`needle.models.solu`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from needle.errors import InputError

__all__ = ["ExplanationTests", "MONOSEMANTICITY_COLUMNS", "compare_models", "explanation_tests",
           "metric_agreement", "monosemanticity", "neuron_correspondence", "sequences_corpus", "wilson_interval"]

#: Columns of :func:`monosemanticity`'s table.
MONOSEMANTICITY_COLUMNS = ["layer", "neuron", "vr_best", "vr_test", "top_share", "top_test", "top_token_share",
                           "top_token", "n_top", "shares_one_explanation"]
#: The binary call of each metric: (column, threshold parameter).
_CALLS = {"vr_best": "vr_threshold", "top_share": "share", "top_token_share": "share"}


@dataclass(frozen=True)
class ExplanationTests:
    """The binary token tests of :func:`needle.universal.explain.explain_neurons`, applicable to single positions.

    Attributes
    ----------
    names : list of str
        Test names as ``explain_neurons`` writes them: vocabulary tests, ``prev:<test>``, ``context:<source>``.
    vocabulary : ndarray of bool, shape (vocab_size, n_vocabulary_tests)
        ``vocabulary[t, j]``: token ``t`` passes vocabulary test ``j`` (``names[j]``).
    sources : list of str
        The ``context:`` tests' sources, in order.
    """

    names: list[str]
    vocabulary: np.ndarray
    sources: list[str]

    def labels(self, token_ids: np.ndarray, previous_ids: np.ndarray, sources: Sequence[str]) -> np.ndarray:
        """Bool array of shape (n, len(names)): each position's result on every test.

        Parameters
        ----------
        token_ids, previous_ids : ndarray of int, shape (n,)
            The token and the one before it.
        sources : sequence of str, length n
            Each position's source distribution.
        """
        token_ids = np.asarray(token_ids, np.int64)
        previous_ids = np.asarray(previous_ids, np.int64)
        source = np.asarray(list(sources), dtype=object)
        context = np.stack([source == s for s in self.sources], 1) if self.sources else np.zeros((len(source), 0), bool)
        return np.concatenate([self.vocabulary[token_ids], self.vocabulary[previous_ids], context], 1)


def explanation_tests(tokenizer: Any, sequences: Sequence[np.ndarray], sources: Sequence[str] | None = None, *,
                      n_unigrams: int = 200) -> ExplanationTests:
    """The tests ``explain_neurons`` runs on these sequences (the same unigrams, in the same order).

    Parameters
    ----------
    tokenizer : tokenizer
    sequences : sequence of ndarray of int
        BOS-led token sequences; the first position of each is left out of the unigram counts.
    sources : sequence of str, optional
        One per sequence; ``context:`` tests when there are at least two.
    n_unigrams : int
    """
    from needle.universal.explain import vocabulary_labels

    counts = np.bincount(np.concatenate([np.asarray(s)[1:] for s in sequences]), minlength=len(tokenizer))
    special = set(tokenizer.all_special_ids)
    # Same order as explain_neurons: descending count, ties by id (stable).
    frequent = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0 and int(i) not in special]
    names, table = vocabulary_labels(tokenizer, unigram_ids=frequent[:n_unigrams])
    contexts = sorted(set(sources)) if sources is not None else []
    if len(contexts) < 2:
        contexts = []
    return ExplanationTests(names + [f"prev:{n}" for n in names] + [f"context:{c}" for c in contexts], table,
                            contexts)


def sequences_corpus(sequences: Sequence[np.ndarray], sources: Sequence[str], tokenizer: Any) -> Any:
    """A :class:`~needle.neurons.corpus.Corpus` of packed blocks: each block its own group, labelled by its source."""
    from needle.neurons.corpus import Corpus

    if len(sources) != len(sequences):
        raise InputError(f"got {len(sources)} sources for {len(sequences)} sequences; give one per sequence.")
    return Corpus(list(sequences), np.asarray([f"{s}:{i}" for i, s in enumerate(sources)], dtype=object),
                  labels=np.asarray(list(sources), dtype=object), tokenizer=tokenizer)


def _base_rates(tests: ExplanationTests, sequences: Sequence[np.ndarray], sources: Sequence[str]) -> np.ndarray:
    """Share of all non-first positions passing each test, shape (len(names),)."""
    total = np.zeros(len(tests.names))
    n = 0
    for seq, source in zip(sequences, sources):
        seq = np.asarray(seq, np.int64)
        labels = tests.labels(seq[1:], seq[:-1], [source] * (len(seq) - 1))
        total += labels.sum(0)
        n += len(seq) - 1
    return total / max(n, 1)


def top_example_labels(top: pd.DataFrame, corpus: Any, tests: ExplanationTests) -> np.ndarray:
    """Each top example's result on every test: bool array of shape (len(top), len(tests.names)).

    ``top`` is :func:`needle.neurons.top_activations`'s table (columns ``sequence``, ``position``, ``token_id``).
    """
    seq = top["sequence"].to_numpy(int)
    pos = top["position"].to_numpy(int)
    previous = np.array([corpus.tokens[s][p - 1] if p > 0 else corpus.tokens[s][0] for s, p in zip(seq, pos)],
                        np.int64)
    labels = corpus.labels[seq] if corpus.labels is not None else np.full(len(seq), "", dtype=object)
    return tests.labels(top["token_id"].to_numpy(int), previous, labels)


def best_covering_test(labels: np.ndarray, selective: np.ndarray) -> tuple[int, float]:
    """The selective test covering most of ``labels``' rows: (index, share); (-1, 0.0) if none or no rows.

    Ties go to the lower index (the order of :class:`ExplanationTests`), so the result is deterministic.
    """
    if labels.shape[0] == 0 or not selective.any():
        return -1, 0.0
    coverage = np.where(selective, labels.mean(0), -1.0)
    j = int(np.argmax(coverage))
    return j, float(coverage[j])


def monosemanticity(
    model: Any,
    sequences: Sequence[np.ndarray],
    sources: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    n_top: int = 20,
    share: float = 0.8,
    max_base_rate: float = 0.25,
    n_unigrams: int = 200,
    batch_tokens: int = 8192,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Monosemanticity metrics of every neuron of ``layers`` (see the module docstring).

    Parameters
    ----------
    model : ModelAdapter
    sequences : sequence of ndarray of int
        BOS-led blocks of one length (:func:`needle.universal.tokens.pack_units`).
    sources : sequence of str
        Each block's source distribution (a language, ``python``).
    layers : sequence of int, optional
        Default: all.
    n_top : int
        Max-activating tokens per neuron, one per block.
    share : float
        Coverage at which a neuron's top examples share one explanation.
    max_base_rate : float
        Tests true on more than this share of all tokens do not count as explanations of the top.
    n_unigrams : int
        Unigram tests (the most frequent tokens), as in ``explain_neurons``.
    batch_tokens : int

    Returns
    -------
    table : DataFrame
        Columns :data:`MONOSEMANTICITY_COLUMNS`, one row per neuron.
    info : dict
        ``tests`` (names), ``base_rates`` (ndarray), ``n_tokens``, ``n_sequences``, the parameters.
    """
    from needle.neurons.top import top_activations
    from needle.universal.explain import explain_neurons

    if not 0 < share <= 1 or not 0 < max_base_rate <= 1:
        raise InputError(f"share and max_base_rate must be in (0, 1], got {share} and {max_base_rate}.")
    if n_top < 1:
        raise InputError(f"n_top must be at least 1, got {n_top}.")
    sequences = [np.asarray(s, np.int64) for s in sequences]
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    _, names, scores = explain_neurons(model, sequences, layers=layers, n_unigrams=n_unigrams, top=1,
                                       batch_tokens=batch_tokens, sources=list(sources), return_scores=True)
    tests = explanation_tests(model.tokenizer, sequences, sources, n_unigrams=n_unigrams)
    if names[: len(tests.names)] != tests.names:  # both must enumerate the same tests
        raise InputError("the explanation tests do not match explain_neurons'; the two have drifted apart.")
    base = _base_rates(tests, sequences, sources)
    selective = base <= max_base_rate
    corpus = sequences_corpus(sequences, sources, model.tokenizer)
    neurons = [(layer, i) for layer in layers for i in range(model.n_neurons)]
    top = top_activations(model, corpus, neurons, n_top=n_top, n_bottom=0, bands=(), context=(1, 0),
                          batch_tokens=batch_tokens)
    top = top[top["kind"] == "top"]
    all_labels = top_example_labels(top, corpus, tests)
    key = top["layer"].to_numpy(int) * model.n_neurons + top["neuron"].to_numpy(int)
    token_ids = top["token_id"].to_numpy(int)
    order = np.argsort(key, kind="stable")
    starts = np.searchsorted(key[order], np.arange(max(layers) * model.n_neurons + model.n_neurons + 1))
    rows = []
    for layer in layers:
        layer_scores = scores[layer]
        best = np.argmax(layer_scores, axis=0)
        for neuron in range(model.n_neurons):
            k = layer * model.n_neurons + neuron
            mine = order[starts[k]: starts[k + 1]]
            labels = all_labels[mine]
            j, covered = best_covering_test(labels, selective)
            tokens = token_ids[mine]
            if len(tokens):
                values, counts = np.unique(tokens, return_counts=True)
                token, token_share = int(values[np.argmax(counts)]), float(counts.max() / len(tokens))
            else:
                token, token_share = -1, 0.0
            rows.append({
                "layer": layer, "neuron": neuron,
                "vr_best": float(layer_scores[best[neuron], neuron]), "vr_test": names[best[neuron]],
                "top_share": covered, "top_test": tests.names[j] if j >= 0 else "",
                "top_token_share": token_share,
                "top_token": model.tokenizer.decode([token]) if token >= 0 else "",
                "n_top": len(mine), "shares_one_explanation": bool(covered >= share),
            })
    info = {"tests": tests.names, "base_rates": base, "n_tokens": int(sum(len(s) - 1 for s in sequences)),
            "n_sequences": len(sequences), "n_top": n_top, "share": share, "max_base_rate": max_base_rate,
            "n_selective_tests": int(selective.sum())}
    return pd.DataFrame(rows, columns=MONOSEMANTICITY_COLUMNS), info


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); (nan, nan) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's κ of two binary calls; nan when chance agreement is 1 (both constant and equal)."""
    observed = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    chance = float(pa * pb + (1 - pa) * (1 - pb))
    return float("nan") if chance == 1 else (observed - chance) / (1 - chance)


def metric_agreement(table: pd.DataFrame, *, vr_threshold: float = 0.2, share: float = 0.8) -> pd.DataFrame:
    """Pairwise agreement of the metrics over a model's neurons.

    Parameters
    ----------
    table : DataFrame
        :func:`monosemanticity`'s table.
    vr_threshold : float
        ``vr_best`` at or above which a neuron counts as explained.
    share : float
        ``top_share`` / ``top_token_share`` at or above which it counts.

    Returns
    -------
    DataFrame
        ``metric_a``, ``metric_b``, ``spearman`` (ρ of the continuous values),
        ``agreement`` (share of neurons on which the binary calls agree),
        ``kappa`` (Cohen's κ), ``n``.
    """
    from scipy.stats import spearmanr

    thresholds = {"vr_threshold": vr_threshold, "share": share}
    calls = {m: table[m].to_numpy(float) >= thresholds[t] for m, t in _CALLS.items()}
    metrics = list(_CALLS)
    rows = []
    for i, a in enumerate(metrics):
        for b in metrics[i + 1:]:
            rho = spearmanr(table[a], table[b]).statistic if len(table) > 2 else float("nan")
            rows.append({"metric_a": a, "metric_b": b, "spearman": float(rho),
                         "agreement": float(np.mean(calls[a] == calls[b])), "kappa": _kappa(calls[a], calls[b]),
                         "n": len(table)})
    return pd.DataFrame(rows)


def compare_models(tables: Mapping[str, pd.DataFrame], *, vr_threshold: float = 0.2, share: float = 0.8,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each metric's mean and the share of neurons it calls monosemantic, per model, with 95 % intervals.

    Parameters
    ----------
    tables : mapping of model name to :func:`monosemanticity` table
    vr_threshold, share : float
        As :func:`metric_agreement`.
    n_boot : int
        Bootstrap resamples of the neurons for the mean's percentile interval.
    seed : int

    Returns
    -------
    DataFrame
        ``model``, ``metric``, ``n``, ``mean``, ``mean_low``, ``mean_high``,
        ``fraction`` (called monosemantic), ``fraction_low``, ``fraction_high`` (Wilson).
    """
    thresholds = {"vr_threshold": vr_threshold, "share": share}
    rng = np.random.default_rng(seed)
    rows = []
    for name, table in tables.items():
        for metric, threshold in _CALLS.items():
            values = table[metric].to_numpy(float)
            n = len(values)
            if n == 0:
                raise InputError(f"model {name} has no neurons in its table.")
            boots = values[rng.integers(0, n, size=(n_boot, n))].mean(1)
            called = int((values >= thresholds[threshold]).sum())
            low, high = wilson_interval(called, n)
            rows.append({"model": name, "metric": metric, "n": n, "mean": float(values.mean()),
                         "mean_low": float(np.quantile(boots, 0.025)), "mean_high": float(np.quantile(boots, 0.975)),
                         "fraction": called / n, "fraction_low": low, "fraction_high": high})
    return pd.DataFrame(rows)


def neuron_correspondence(models: Sequence[Any], names: Sequence[str], sequences: Sequence[np.ndarray],
                          tables: Mapping[str, pd.DataFrame] | None = None, *, threshold: float = 0.5,
                          seed: int = 0, batch_tokens: int = 8192) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each neuron of ``models[0]`` and its best-correlated neuron of ``models[1]`` (problems 9.53–9.54).

    Streams the Pearson correlations of :func:`needle.universal.correlate.correlate_models` (with its
    random-rotation baseline) over ``sequences``, BOS positions left out.

    Parameters
    ----------
    models : two ModelAdapters with one tokenizer
    names : two str
    sequences : sequence of ndarray of int
    tables : mapping of name to :func:`monosemanticity` table, optional
        Adds whether a neuron and its partner have the same best explanation.
    threshold : float
        Correlation at which a neuron counts as having a counterpart.
    seed : int
        Seed of the rotation baseline.
    batch_tokens : int

    Returns
    -------
    pairs : DataFrame
        ``layer``, ``neuron``, ``partner_layer``, ``partner_neuron``, ``corr``, ``baseline``
        (and ``same_vr_test``, ``same_top_test`` with ``tables``).
    summary : dict
        ``n``, ``mean_corr``, ``mean_baseline``, ``fraction_above`` with its Wilson interval, the
        baseline's ``fraction_above_baseline``, and the explanation agreement of pairs above the threshold.
    """
    from needle.universal.correlate import correlate_models

    if len(models) != 2 or len(names) != 2:
        raise InputError("neuron_correspondence compares exactly two models; pass two models and two names.")
    result = correlate_models(list(models), sequences, names=list(names), seed=seed, batch_tokens=batch_tokens,
                              top_k=1, progress=False)
    other = names[1]
    table = result.neurons
    partners = result.partners
    best = partners[(partners["model"] == other) & (partners["rank"] == 0)]
    pairs = table[["layer", "neuron"]].merge(best[["layer", "neuron", "partner_layer", "partner_neuron", "corr"]],
                                            on=["layer", "neuron"], how="left")
    pairs["baseline"] = table[f"{other}_baseline"].to_numpy()
    n = len(pairs)
    above = pairs["corr"].to_numpy(float) > threshold
    summary: dict[str, Any] = {
        "n": n, "threshold": threshold, "mean_corr": float(pairs["corr"].mean()),
        "mean_baseline": float(pairs["baseline"].mean()), "fraction_above": float(above.mean()),
        "fraction_above_interval": wilson_interval(int(above.sum()), n),
        "fraction_above_baseline": float((pairs["baseline"].to_numpy(float) > threshold).mean()),
        "n_tokens": int(sum(len(s) - 1 for s in sequences)),
    }
    if tables is not None:
        a = tables[names[0]].set_index(["layer", "neuron"])
        b = tables[names[1]].set_index(["layer", "neuron"])
        for column in ("vr_test", "top_test"):
            mine = a.loc[list(zip(pairs["layer"], pairs["neuron"])), column].to_numpy()
            theirs = b.loc[list(zip(pairs["partner_layer"], pairs["partner_neuron"])), column].to_numpy()
            pairs[f"same_{column}"] = (mine == theirs) & (mine != "")
            kept = pairs.loc[above, f"same_{column}"]
            summary[f"same_{column}_above"] = float(kept.mean()) if len(kept) else float("nan")
            summary["n_above"] = int(above.sum())
    return pairs, summary
