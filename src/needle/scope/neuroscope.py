"""Neuroscope's open-problem sections of a scope site: per-distribution examples and weight-based neuron lists.

Two additions to the site of :mod:`needle.scope.site`, rendered here so that
the site module only calls in:

* a neuron-page section **By source distribution** (problem 9.58, the
  interpretability illusion): the neuron's max-activating examples within
  each source of the corpus (Python code, each language), the best automatic
  explanation of each list, and a warning when one distribution's
  explanation does not carry over to another
  (:func:`needle.neurons.distributions.top_by_distribution`). Only for a
  corpus whose sequences carry labels with at least two values;
* two list pages ranking **every** neuron of the model by
  ``cos(w_in, w_out)`` (problems 9.24–9.25): the most negative are
  memory-management candidates (they erase the direction they read), the
  most positive signal boosters. Neurons with a page are linked; every
  neuron page links to both lists and shows its own cosine and rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from needle.errors import NeedleError
from needle.scope.render import context_html, display_token
from needle.scope.tables import NeuronRef, neuron_page_name

__all__ = ["NeuroscopeData", "WEIGHT_PAGES", "weight_list_html"]

#: List pages of the site: file name → (title, ascending sort of cos(w_in, w_out)).
WEIGHT_PAGES = {
    "weights-memory-management.html": ("Most negative cos(w_in, w_out): memory-management candidates", True),
    "weights-signal-boosting.html": ("Most positive cos(w_in, w_out): signal-boosting candidates", False),
}
_PAGE_STYLE = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}"
               "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}"
               "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.hint{color:#666}")


@dataclass
class NeuroscopeData:
    """What the sections need, computed once per site.

    Attributes
    ----------
    weights : DataFrame
        :func:`needle.neurons.weights.weight_statistics` of every neuron, with ``rank_negative`` (1: the most
        negative cosine of the model) and ``rank_positive``.
    examples : DataFrame
        Per-distribution examples (:func:`~needle.neurons.distributions.top_by_distribution`), possibly empty.
    flags : DataFrame
        Their per-neuron flags, possibly empty.
    note : str
        Why a section is missing, when one is.
    """

    weights: pd.DataFrame
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)
    note: str = ""

    @classmethod
    def build(cls, model: Any, corpus: Any, neurons: Iterable[NeuronRef], *, n_top: int = 8,
              context: tuple[int, int] = (16, 4), batch_tokens: int = 8192,
              say: Callable[[str], None] | None = None) -> NeuroscopeData:
        """Weight statistics of every neuron, and per-distribution examples of ``neurons`` when the corpus allows."""
        from needle.neurons.distributions import top_by_distribution
        from needle.neurons.weights import cos_in_out_ranking

        say = say or (lambda line: None)
        weights = cos_in_out_ranking(model)
        refs = [(r.layer, r.index) for r in neurons]
        labels = getattr(corpus, "labels", None)
        n_labels = 0 if labels is None else len({v for v in labels if v is not None})
        if not refs:
            return cls(weights, note="no neuron pages.")
        if n_labels < 2:
            return cls(weights, note="the corpus has no source labels (or only one), so there are no per-distribution "
                                     "examples; build the site with a labelled corpus.")
        say(f"  max-activating examples per source distribution ({n_labels} sources) …")
        try:
            examples, flags = top_by_distribution(model, corpus, refs, n_top=n_top, context=context,
                                                  batch_tokens=batch_tokens)
        except NeedleError as exc:
            return cls(weights, note=str(exc))
        return cls(weights, examples, flags)

    # ---------------------------------------------------------------- pages
    def neuron_section(self, ref: NeuronRef, root: str, scale: float) -> Markup:
        """HTML of the neuron page's Neuroscope sections (weights line, per-distribution examples)."""
        parts = [self._weight_line(ref, root)]
        parts.append(self._distribution_section(ref, scale))
        return Markup("".join(parts))

    def write_pages(self, directory: Path, pages: set[NeuronRef], *, limit: int = 100) -> list[str]:
        """Write the two cos(w_in, w_out) list pages into the site ``directory``; returns their file names."""
        for name, (title, ascending) in WEIGHT_PAGES.items():
            html = weight_list_html(self.weights, pages, title=title, ascending=ascending, limit=limit)
            (directory / name).write_text(html, encoding="utf-8")
        return list(WEIGHT_PAGES)

    def _weight_line(self, ref: NeuronRef, root: str) -> str:
        row = self.weights[(self.weights["layer"] == ref.layer) & (self.weights["neuron"] == ref.index)]
        if not len(row):
            return ""
        r = row.iloc[0]
        n = len(self.weights)
        links = " · ".join(f'<a href="{root}{name}">{escape(title.split(":")[0])}</a>'
                           for name, (title, _) in WEIGHT_PAGES.items())
        return (f'<h2>Weights</h2><p>cos(w<sub>in</sub>, w<sub>out</sub>) = {r.cos_in_out:+.3f}: rank '
                f'{int(r.rank_negative)} of {n} from the most negative, {int(r.rank_positive)} from the most positive '
                f'(|w<sub>in</sub>| {r.w_in_norm:.3f}, |w<sub>out</sub>| {r.w_out_norm:.3f}, b<sub>in</sub> '
                f'{r.b_in:+.3f}). <span class="hint">Lists: {links}.</span></p>')

    def _distribution_section(self, ref: NeuronRef, scale: float) -> str:
        head = "<h2>By source distribution</h2>"
        if not len(self.examples):
            return f'{head}<p class="muted">{escape(self.note)}</p>' if self.note else ""
        mine = self.examples[(self.examples["layer"] == ref.layer) & (self.examples["neuron"] == ref.index)
                             & (self.examples["kind"] == "top")]
        flag = self.flags[(self.flags["layer"] == ref.layer) & (self.flags["neuron"] == ref.index)]
        parts = [head, '<p class="hint">The max-activating examples within each source of the corpus, and the '
                       "automatic explanation (the selective token test covering most of them) of each list. Looking "
                       "only at the corpus-wide top invites the interpretability illusion: a neuron may do one thing "
                       "on code and another on prose.</p>"]
        if len(flag):
            f = flag.iloc[0]
            if f.overall_test:
                carry = "" if math.isnan(f.carry_over) else (
                    f" and covers at least half of the top list of {100 * f.carry_over:.0f} % of the distributions")
                parts.append(f"<p>The corpus-wide top is explained by <code>{escape(f.overall_test)}</code> "
                             f"({100 * f.overall_coverage:.0f} % of it){carry}.</p>")
            if f.differs:
                parts.append("<p><strong>Interpretability illusion</strong>: the corpus-wide explanation does not "
                             "describe this neuron's top examples on most distributions.</p>")
            if f.overall_top_distribution:
                parts.append(f'<p class="hint">{100 * f.overall_top_share:.0f} % of the corpus-wide top examples come '
                             f"from <code>{escape(str(f.overall_top_distribution))}</code>.</p>")
            explanations = f.explanations
        else:
            explanations = {}
        for distribution, part in mine.groupby("distribution", sort=True):
            test, coverage = explanations.get(distribution, ("", 0.0))
            caption = (f"explained by <code>{escape(test)}</code> ({100 * coverage:.0f} % of the list)" if test
                       else "no selective test covers these")
            rows = "".join(
                f'<tr><td class="num">{int(r.rank) + 1}</td><td class="act">{r.activation:.3f}</td>'
                f'<td class="ctx">{context_html(list(r.context_tokens), list(r.context_activations), int(r.focus), scale)}'
                f'</td><td><code>{escape(display_token(str(r.token)))}</code></td></tr>'
                for r in part.sort_values("rank").itertuples(index=False))
            parts.append(f"<h3>{escape(str(distribution))} <small class=\"hint\">{caption}</small></h3>"
                         '<table class="data examples distribution"><thead><tr><th class="num">#</th>'
                         '<th class="num">activation</th><th>context</th><th>token</th></tr></thead>'
                         f"<tbody>{rows}</tbody></table>")
        return "".join(parts)


def _neuron_list_html(title: str, hint: str, headers: list[str], table: pd.DataFrame, cells, pages: set[NeuronRef],
                      root: str) -> str:
    """A standalone page listing ``table``'s neurons in order, linked where they have a page.

    ``headers`` name the columns after ``#`` and the neuron; ``cells(row)`` gives those columns' ``<td>`` HTML.
    """
    rows = []
    for i, r in enumerate(table.itertuples(index=False)):
        ref = NeuronRef(int(r.layer), int(r.neuron))
        label = escape(ref.id)
        cell = f'<a href="{root}{neuron_page_name(ref)}">{label}</a>' if ref in pages else label
        rows.append(f'<tr><td class="num">{i + 1}</td><td>{cell}</td>{cells(r)}</tr>')
    head = "".join(f'<th class="num">{escape(h)}</th>' for h in headers)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_PAGE_STYLE}</style></head><body><p><a href=\"{root}index.html\">← index</a></p>"
            f"<h1>{escape(title)}</h1><p class=\"hint\">{hint}</p>"
            f'<table><thead><tr><th class="num">#</th><th>neuron</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></body></html>")


def weight_list_html(weights: pd.DataFrame, pages: set[NeuronRef], *, title: str, ascending: bool,
                     limit: int = 100, root: str = "") -> str:
    """A standalone list page of the ``limit`` neurons with the lowest (``ascending``) or highest cos(w_in, w_out).

    Parameters
    ----------
    weights : DataFrame
        :func:`needle.neurons.weights.cos_in_out_ranking`'s table.
    pages : set of NeuronRef
        Neurons with a page (linked).
    title : str
    ascending : bool
    limit : int
    root : str
        Prefix of neuron page links (the page sits at the site's root).
    """
    table = weights.sort_values(["cos_in_out", "layer", "neuron"], ascending=[ascending, True, True],
                                kind="stable").head(limit)
    linked = sum(NeuronRef(int(r.layer), int(r.neuron)) in pages for r in table.itertuples(index=False))
    hint = (f"All {len(weights)} neurons of the model ranked by the cosine of the input weights (what a neuron reads "
            "from the normalised residual stream) and the output weights (what it writes). Near −1 a neuron erases the "
            f"direction it reads; near +1 it amplifies it. {linked} of these {len(table)} have a page here (linked).")
    return _neuron_list_html(
        title, hint, ["cos(w_in, w_out)", "|w_in|", "|w_out|", "b_in"], table,
        lambda r: (f'<td class="num">{r.cos_in_out:+.4f}</td><td class="num">{r.w_in_norm:.3f}</td>'
                   f'<td class="num">{r.w_out_norm:.3f}</td><td class="num">{r.b_in:+.3f}</td>'), pages, root)


#: The list page of neurons that lower the correct next token on average (problem 9.50).
SUPPRESSOR_PAGE = "lowers-correct-token.html"


def suppressor_list_html(summary: pd.DataFrame, pages: set[NeuronRef], *, root: str = "") -> str | None:
    """A standalone page of the neurons whose mean direct logit attribution to the correct next token is negative.

    Parameters
    ----------
    summary : DataFrame
        :attr:`needle.neurons.LogitAttribution.summary` (``layer, neuron, n_tokens, mean_attribution,
        fraction_negative, lowers_correct_token``).
    pages : set of NeuronRef
        Neurons with a page (linked).
    root : str
        Prefix of neuron page links.

    Returns
    -------
    str or None
        None when the summary is empty.
    """
    if summary is None or not len(summary):
        return None
    table = summary[summary["mean_attribution"] < 0].sort_values(["mean_attribution", "layer", "neuron"],
                                                                  kind="stable")
    hint = (f"Of the {len(summary)} neurons with a page, the {len(table)} whose direct logit attribution to the token "
            "that really comes next (activation × W_U[:, next] · w_out through the final norm's linearisation) is "
            "negative on average over the corpus, most negative first.")
    return _neuron_list_html(
        "Neurons that lower the correct next token", hint, ["mean attribution", "fraction of tokens below 0", "tokens"],
        table, lambda r: (f'<td class="num">{r.mean_attribution:+.5f}</td><td class="num">{r.fraction_negative:.3f}</td>'
                          f'<td class="num">{int(r.n_tokens)}</td>'), pages, root)
