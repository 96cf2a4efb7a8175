"""Neuron families by automated tests (thesis §3.4.3, Eq. 3.4): variance reduction under binary labellings of tokens.

For a neuron's activations ``v`` over tokens and a labelling ``y ∈ {0,1}``
with positive share ``β``, the **variance reduction** is

    1 − ((1 − β) σ²(v | y=0) + β σ²(v | y=1)) / σ²(v),

the regression-tree split criterion: 1 when the label explains the neuron
completely, 0 when it explains nothing. :class:`VarianceReduction` streams
it for many neurons and labellings at once from per-label sums (two GEMMs
per batch, mergeable by addition).

The labellings (:func:`vocabulary_labels`) are properties of the token, as in
the thesis: ``is_all_caps``, ``contains_digit``, ``leading_space``,
``begins_with_<letter>`` and ``is_letter_<letter>`` (the token is that single
letter, with or without a leading space), and ``unigram:<token>`` for each
frequent token; every test also runs **shifted to the previous token**
(``prev:<name>``). Beside them, :func:`explain_neurons` runs

* **context** tests ``context:<source>`` — the token is in text of that
  source (a language of the UD treebanks, or Python code): the stand-in for
  the thesis's Pile subdistributions;
* the **position** test (:mod:`needle.universal.position`): mutual information
  with the absolute position, as a share of the activation's binned entropy;
* **syntax** tests on gold UD labels (:mod:`needle.universal.syntax`).

:func:`family_of` maps a neuron's best test to its family (unigram, alphabet,
previous-token, vocabulary, context, position, syntax). Scores of different
kinds share the [0, 1] scale but not a meaning: the position score is a share
of information, the others of variance.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from needle.errors import InputError
from needle.universal.position import PositionInformation

__all__ = ["VarianceReduction", "explain_neurons", "family_of", "variance_reduction", "vocabulary_labels"]


def variance_reduction(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Eq. 3.4 by its definition: ``values`` (n, p), ``labels`` (n, L) booleans; returns (L, p).

    A labelling with no positive or no negative token scores 0 (it splits nothing).
    """
    values = np.asarray(values, np.float64)
    labels = np.asarray(labels, bool)
    total = values.var(0)
    out = np.zeros((labels.shape[1], values.shape[1]))
    for j in range(labels.shape[1]):
        y = labels[:, j]
        beta = y.mean()
        if beta in (0.0, 1.0):
            continue
        within = (1 - beta) * values[~y].var(0) + beta * values[y].var(0)
        out[j] = np.where(total > 0, 1 - within / np.where(total > 0, total, 1), 0.0)
    return out


class VarianceReduction:
    """Streamed Eq. 3.4 for ``p`` neurons and ``L`` labellings: per-label counts, sums and sums of squares.

    Values are shifted by the first batch's mean so the float64 sums do not cancel.
    """

    def __init__(self, n_labels: int, p: int) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.count = torch.zeros(n_labels, dtype=torch.float64)
        self.s1 = torch.zeros(p, dtype=torch.float64)
        self.s2 = torch.zeros(p, dtype=torch.float64)
        self.l1 = torch.zeros(n_labels, p, dtype=torch.float64)
        self.l2 = torch.zeros(n_labels, p, dtype=torch.float64)

    def update(self, values: torch.Tensor, labels: torch.Tensor) -> None:
        """``values`` (n, p), ``labels`` (n, L) booleans."""
        values = values.double().cpu()
        if self.shift is None:
            self.shift = values.mean(0)
        x = values - self.shift
        y = labels.double().cpu()
        self.n += x.shape[0]
        self.count += y.sum(0)
        self.s1 += x.sum(0)
        self.s2 += (x * x).sum(0)
        self.l1 += y.T @ x
        self.l2 += y.T @ (x * x)

    def scores(self) -> np.ndarray:
        """Shape (L, p); 0 where a labelling has no positive or no negative token, or a neuron is constant."""
        n = self.n
        if n < 2:
            raise InputError("variance reduction needs at least two tokens.")
        total = self.s2 / n - (self.s1 / n) ** 2
        n1 = self.count[:, None]
        n0 = n - n1
        ok = (n1 > 0) & (n0 > 0)
        sse1 = self.l2 - self.l1 ** 2 / n1.clamp(min=1)
        sse0 = (self.s2 - self.l2) - (self.s1 - self.l1) ** 2 / n0.clamp(min=1)
        within = (sse0 + sse1) / n  # (1-β)σ²₀ + βσ²₁ = (SSE₀ + SSE₁) / n
        score = 1 - within / torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(ok & (total > 0), score, torch.zeros_like(score)).numpy()


def vocabulary_labels(tokenizer: Any, *, unigram_ids: Sequence[int] = ()) -> tuple[list[str], np.ndarray]:
    """Token-property labellings of the vocabulary.

    Returns
    -------
    names : list of str
    table : ndarray of bool, shape (vocab_size, n_labels)
        ``table[t, j]`` — whether token ``t`` has property ``names[j]``.
    """
    vocab = len(tokenizer)
    texts = [tokenizer.decode([i]) for i in range(vocab)]
    special = set(tokenizer.all_special_ids)
    columns: dict[str, np.ndarray] = {}

    def column(name, test):
        columns[name] = np.array([i not in special and bool(test(t)) for i, t in enumerate(texts)])

    column("is_all_caps", lambda t: t.strip().isalpha() and t.strip().isupper() and len(t.strip()) > 1)
    column("contains_digit", lambda t: any(c.isdigit() for c in t))
    column("leading_space", lambda t: t.startswith(" "))
    column("is_punctuation", lambda t: t.strip() != "" and all(c in string.punctuation for c in t.strip()))
    column("is_whitespace", lambda t: t != "" and t.strip() == "")
    for letter in string.ascii_lowercase:
        column(f"is_letter_{letter}", lambda t, c=letter: t.strip().lower() == c)
        column(f"begins_with_{letter}", lambda t, c=letter: t.strip().lower().startswith(c))
    for index in unigram_ids:
        columns[f"unigram:{texts[int(index)]!r}"] = np.arange(vocab) == int(index)
    names = list(columns)
    return names, np.stack([columns[n] for n in names], 1)


def family_of(test: str) -> str:
    """The neuron family a best-explaining test points to."""
    if test.startswith("prev:"):
        return "previous-token"
    if test.startswith("unigram:"):
        return "unigram"
    if test.startswith(("is_letter_", "begins_with_")):
        return "alphabet"
    if test.startswith("context:"):
        return "context"
    if test == "position":
        return "position"
    if test.startswith(("pos:", "dep:", "morph:")):
        return "syntax"
    return "vocabulary"


def explain_neurons(model: Any, sequences: Sequence[np.ndarray], *, layers: Sequence[int] | None = None,
                    n_unigrams: int = 200, top: int = 3, batch_tokens: int = 8192,
                    sources: Sequence[str] | None = None, position: bool = True,
                    ud: Any = None, return_scores: bool = False) -> Any:
    """Score every neuron against every vocabulary labelling and its previous-token shift, and context,
    position and syntax tests.

    Parameters
    ----------
    model : ModelAdapter
    sequences : sequence of ndarray of int
        BOS-led token sequences (:func:`needle.universal.tokens.pack_texts`); the BOS positions are left out.
    layers : sequence of int, optional
    n_unigrams : int
        The most frequent tokens of ``sequences`` each get a unigram test.
    top : int
        Best explanations kept per neuron.
    sources : sequence of str, optional
        The source of each sequence (:func:`needle.universal.tokens.pack_units`): one ``context:<source>``
        test per source when there are at least two.
    position : bool
        Run the position test (sequences of equal length).
    ud : path-like or iterable of path-like, optional
        CoNLL-U files for the syntax tests.
    return_scores : bool
        Also return every score: ``(table, names, {layer: (n_tests, p)})``.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``neuron``, ``rank``, ``test``, ``score``, ``family``.
    """
    import pandas as pd

    from needle.activations.stream import plan_batches, stream_batches

    sequences = [np.asarray(s, np.int64) for s in sequences if len(s) > 1]
    if not sequences:
        raise InputError("no token sequences to explain neurons on; give some text.")
    layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    counts = np.bincount(np.concatenate([s[1:] for s in sequences]), minlength=len(model.tokenizer))
    special = set(model.tokenizer.all_special_ids)
    frequent = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0 and int(i) not in special]
    names, table = vocabulary_labels(model.tokenizer, unigram_ids=frequent[:n_unigrams])
    names = names + [f"prev:{n}" for n in names]
    table_t = torch.from_numpy(table)
    context_names: list[str] = []
    if sources is not None:
        if len(sources) != len(sequences):
            raise InputError(f"got {len(sources)} sources for {len(sequences)} sequences; give one per sequence.")
        context_names = sorted(set(sources))
        if len(context_names) < 2:
            context_names = []  # one source splits nothing
    source_code = torch.tensor([context_names.index(s) for s in sources] if context_names else
                               [0] * len(sequences))
    names = names + [f"context:{c}" for c in context_names]
    lengths = np.array([len(s) for s in sequences])
    if position and len(set(lengths.tolist())) != 1:
        raise InputError("the position test needs sequences of one length (pack_texts makes them).")
    accumulators = {layer: VarianceReduction(len(names), model.n_neurons) for layer in layers}
    positional = {layer: PositionInformation(model.n_neurons, int(lengths[0])) for layer in layers} if position \
        else {}
    plan = plan_batches(lengths, np.arange(len(sequences)), batch_tokens, 256)
    for batch in stream_batches(sequences, None, plan, pad_id=0):
        ids = batch.input_ids
        keep = batch.attention_mask.bool()
        keep[:, 0] = False  # the BOS, which has no previous token either
        previous = torch.cat([ids[:, :1], ids[:, :-1]], 1)
        parts = [table_t[ids[keep]], table_t[previous[keep]]]
        if context_names:
            code = source_code[torch.as_tensor(batch.sequences)][:, None].expand_as(ids)[keep]
            parts.append(code[:, None] == torch.arange(len(context_names))[None, :])
        labels = torch.cat(parts, 1)
        where = torch.arange(ids.shape[1])[None, :].expand_as(ids)[keep]
        captured = model.capture(ids, batch.attention_mask, layers, site="post")
        for layer in layers:
            values = captured[layer][keep.to(model.device)]
            accumulators[layer].update(values, labels)
            if position:
                positional[layer].update(values, where)
    all_names = names + (["position"] if position else [])
    all_scores = {layer: accumulators[layer].scores() for layer in layers}
    if position:
        for layer in layers:
            all_scores[layer] = np.concatenate([all_scores[layer], positional[layer].result()["score"][None]])
    if ud is not None:
        from needle.universal.syntax import ud_variance_reduction

        ud_names, ud_scores, _ = ud_variance_reduction(model, ud, layers=layers, context_length=int(lengths.max()))
        all_names += ud_names
        for layer in layers:
            all_scores[layer] = np.concatenate([all_scores[layer], ud_scores[layer]])
    names = all_names
    rows = []
    for layer in layers:
        scores = all_scores[layer]  # (L, p)
        best = np.argsort(-scores, axis=0, kind="stable")[:top]
        for neuron in range(scores.shape[1]):
            for rank, j in enumerate(best[:, neuron]):
                rows.append({"layer": layer, "neuron": neuron, "rank": rank, "test": names[j],
                             "score": float(scores[j, neuron]), "family": family_of(names[j])})
    table = pd.DataFrame(rows)
    return (table, names, all_scores) if return_scores else table
