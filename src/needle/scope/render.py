"""HTML pieces of the site: the Jinja environment, highlighted token contexts, neuron chips.

Highlighted contexts are built here in Python rather than in a template loop:
a site can have thousands of pages with hundreds of tokens each, and a
compact span per token (``<span class="tok" style="--a:.53" data-v="1.234">``)
keeps pages small and fast to write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from needle.scope.tables import NeuronRef, neuron_page_name, parse_neuron_id

__all__ = ["environment", "context_html", "context_text", "chips_html", "display_token", "format_number"]

#: Special tokens left out of a context's plain text (the viewer's tokenizer adds its own).
_SPECIAL = re.compile(r"^(\[(CLS|SEP|PAD|MASK|UNK)\]|<\|endoftext\|>|</?s>|<pad>|<bos>|<eos>)$")


def format_number(value, digits: int = 3) -> str:
    """``0.123`` style, ``–`` for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def format_interval(bounds, digits: int = 2) -> str:
    """A confidence interval ``(lo, hi)`` as `` [0.88–0.99]``; empty when it is missing."""
    if not bounds or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in bounds):
        return ""
    lo, hi = bounds
    return f" [{float(lo):.{digits}f}–{float(hi):.{digits}f}]"


def display_token(token: str) -> str:
    """A token as shown in a table: whitespace made visible."""
    if not token.strip():
        return repr(token)[1:-1] or "∅"
    return token.replace("\n", "↵").replace("\t", "→").replace("\r", "␍")


def _piece(token: str, raw: bool) -> tuple[str, bool]:
    """Text of a token inside a context and whether a space goes before it."""
    if raw:  # byte-level BPE: tokens carry their own spaces
        return token.replace("\n", "↵").replace("\t", "→"), False
    if token.startswith("##"):  # WordPiece continuation: glued to the previous piece
        return token[2:], False
    return token, True


def context_html(tokens: Sequence[str], activations: Sequence[float] | None, focus: int | None, scale: float,
                 *, focus_end: int | None = None) -> Markup:
    """Tokens as highlighted spans: ``--a`` = |activation| / scale (orange positive, blue negative), ``data-v``
    the value, the ``focus`` token (up to ``focus_end``, exclusive) outlined.

    Without ``activations`` the tokens are plain, with only the focus marked.
    """
    raw = any(t[:1].isspace() for t in tokens if t)
    parts = []
    end = (focus + 1) if focus is not None and focus_end is None else focus_end
    for i, token in enumerate(tokens):
        text, spaced = _piece(str(token), raw)
        if spaced and i:
            parts.append(" ")
        classes = "tok"
        attrs = ""
        if activations is not None:
            value = float(activations[i])
            alpha = 0.0 if scale <= 0 else min(1.0, abs(value) / scale)
            if value < 0:
                classes += " neg"
            # Pages hold thousands of these: no style at all where the colour would be invisible.
            style = f' style="--a:{alpha:.2f}"' if alpha >= 0.005 else ""
            attrs = f'{style} data-v="{value:.4g}"'
        if focus is not None and focus <= i < end:
            classes += " focus"
        parts.append(f'<span class="{classes}"{attrs}>{escape(text)}</span>')
    return Markup("".join(parts))


def context_text(tokens: Sequence[str]) -> str:
    """A context's tokens as plain text, joined as :func:`context_html` joins them (byte-level BPE tokens carry
    their spaces, WordPiece ``##`` pieces glue on), special tokens dropped: what "try it on your own text" puts in
    the viewer."""
    tokens = [str(t) for t in tokens if not _SPECIAL.match(str(t))]
    if any(t[:1].isspace() for t in tokens if t):
        return "".join(tokens).strip()
    parts = []
    for i, token in enumerate(tokens):
        text, spaced = _piece(token, False)
        parts.append((" " if spaced and i else "") + text)
    return "".join(parts).strip()


def chips_html(neurons: Sequence[tuple[NeuronRef, float]], root: str, pages: set[NeuronRef],
               *, limit: int = 24) -> Markup:
    """Neuron chips ``L3.N1201 (+0.42)``, links where the neuron has a page; at most ``limit`` then ``+n more``."""
    parts = []
    for ref, coef in neurons[:limit]:
        sign = "pos" if coef >= 0 else "neg"
        label = f"{escape(ref.id)} <small>{coef:+.3g}</small>"
        if ref in pages:
            parts.append(f'<a class="chip {sign}" href="{root}{neuron_page_name(ref)}">{label}</a>')
        else:
            parts.append(f'<span class="chip {sign}">{label}</span>')
    if len(neurons) > limit:
        parts.append(f'<span class="hint">+{len(neurons) - limit} more</span>')
    return Markup("".join(parts))


def environment(pages: set[NeuronRef]) -> object:
    """The Jinja environment of the site templates, with filters ``num`` and ``neuron_link``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("needle.scope", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["ci"] = format_interval

    def neuron_link(neuron_id: str, root: str) -> Markup:
        ref = parse_neuron_id(neuron_id)
        if ref in pages:
            return Markup(f'<a href="{root}{neuron_page_name(ref)}">{escape(ref.id)}</a>')
        return Markup(escape(ref.id))

    env.filters["neuron_link"] = neuron_link
    return env

