"""The interactive viewer's computation: a neuron's, a latent's or a probe's activations on typed text.

With a transform (an SAE, :func:`needle.sae.load_sae`) the viewer reads the transform's latents: the model's
activations at the SAE's site, passed through its encoder inside the forward pass, exactly as extraction and
the site's pages read them. Only the SAE's own layer is offered then.

:class:`Viewer` holds one loaded model and answers one request at a time;
:mod:`needle.scope.server` puts it behind HTTP. Everything a user can get
wrong (empty text, text longer than the model's context, a layer or neuron
that does not exist, an unknown probe) raises :class:`~needle.errors.InputError`
with a message meant to be shown as is.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from needle.errors import InputError
from needle.models.sites import get_site, site_id
from needle.scope.tables import NeuronRef, neuron_page_name

__all__ = ["Viewer", "MAX_TEXT_CHARS"]

#: Longest text accepted before tokenizing (a guard against pasting a book; the token limit is the model's).
MAX_TEXT_CHARS = 100_000


class Viewer:
    """Per-token activations of one model on typed text.

    Parameters
    ----------
    model : ModelAdapter
        A loaded model with its tokenizer (:func:`needle.models.load_model`).
    probes : sequence of dict, optional
        Sparse probes that can be applied to text, as :func:`needle.scope.tables.probe_catalogue` returns them
        (``id, feature, layer, method, k, f1, neurons, coef, intercept``).
    site : str, optional
        Where a static site's pages are served (e.g. ``"/site/"``); neurons with a page there get a link.
    neuron_pages : set of NeuronRef, optional
        The neurons that have a page in the site.
    neuron_scales : dict of NeuronRef to float, optional
        Each neuron's largest |activation| on the site's corpus: tokens are coloured relative to it (so a neuron
        that barely fires on the text looks pale), instead of relative to the text's own largest value.
    site_name : str, default "post"
        Activation site read (``post`` or ``pre``; with ``transform``, the site the transform reads).
    transform : Transform, optional
        An SAE (or other transform) whose latents are shown instead of the site's own columns.
    layers : sequence of int, optional
        The layers offered; default all, or the SAE's recorded layer with a transform that records one.
    """

    def __init__(self, model: Any, *, probes: Sequence[dict] | None = None, site: str | None = None,
                 neuron_pages: set[NeuronRef] | None = None, neuron_scales: dict[NeuronRef, float] | None = None,
                 site_name: str = "post", transform: Any = None, layers: Sequence[int] | None = None):
        if model.tokenizer is None:
            raise InputError(f"{model.model_id} was loaded without a tokenizer; the viewer needs one.")
        self.model = model
        self.read_site = get_site(site_name, transform)
        self.transform = transform
        # what the page and the manifest comparison call the site: ``post``, or ``hook_resid_post+sae…``
        self.site_name = site_name if transform is None else self.read_site.id
        self.width = int(model.site_width(self.read_site))
        if layers is None and transform is not None and getattr(transform, "hook", None) is not None:
            layers = [transform.hook[1]]
        self.layers = list(range(model.n_layers)) if layers is None else [int(l) for l in layers]
        self.probes = {p["id"]: dict(p) for p in probes or []}
        self.site = site
        self.neuron_pages = set(neuron_pages or ())
        self.neuron_scales = dict(neuron_scales or {})
        self._lock = threading.Lock()
        self._max_tokens = model.max_positions or getattr(model.tokenizer, "model_max_length", None) or 512
        if self._max_tokens > 1_000_000:  # tokenizers without a limit report a huge sentinel
            self._max_tokens = model.max_positions or 2048

    @classmethod
    def for_site(cls, model: Any, site_dir: str | os.PathLike, *, url: str = "/site/", site_name: str = "post",
                 transform: Any = None) -> Viewer:
        """A viewer that offers the probes of a site built by :func:`needle.scope.build_site`, links its neuron
        pages (served under ``url``) and colours each neuron relative to its largest activation on the site's
        corpus. A site built for another model or basis (a site of an SAE's latents served without that SAE, or
        with another) contributes its pages but not its probes or scales (a warning says so)."""
        from needle.scope.tables import parse_neuron_id

        site_dir = Path(site_dir)
        manifest_path = site_dir / "manifest.json"
        if not manifest_path.is_file():
            raise InputError(f"{site_dir} is not a site built by `needle scope build` (no manifest.json).")
        manifest = json.loads(manifest_path.read_text())
        probes = json.loads((site_dir / "probes.json").read_text()) if (site_dir / "probes.json").is_file() else []
        pages = {parse_neuron_id(n) for n in manifest.get("neurons", [])}
        scales = {parse_neuron_id(n): float(v) for n, v in manifest.get("neuron_scales", {}).items()}
        reading = get_site(site_name, transform).id
        if manifest.get("model_id") != model.model_id or site_id(manifest.get("site")) != site_id(reading):
            hint = " (pass the SAE it was built with: --sae)" if "+" in str(manifest.get("site")) else ""
            warnings.warn(f"the site {site_dir} was built for {manifest.get('model_id')} ({manifest.get('site')}), "
                          f"not {model.model_id} ({reading}); its probes are not offered{hint}.", stacklevel=2)
            probes, scales = [], {}
        return cls(model, probes=probes, site=url, neuron_pages=pages, neuron_scales=scales, site_name=site_name,
                   transform=transform)

    @property
    def max_tokens(self) -> int:
        """Most tokens (special tokens included) one text may have."""
        return int(self._max_tokens)

    @property
    def unit(self) -> str:
        """What one column is: ``"neuron"``, or ``"latent"`` with a transform."""
        return "neuron" if self.transform is None else "latent"

    def info(self) -> dict[str, Any]:
        """What the page needs to set itself up: model, layers, units per layer (``n_neurons``: neurons, or a
        transform's latents), what a unit is, limits, probes."""
        return {
            "model_id": self.model.model_id,
            "site": self.site_name,
            "n_layers": int(self.model.n_layers),
            "layers": list(self.layers),
            "n_neurons": self.width,
            "unit": self.unit,
            "basis": self.read_site.basis if self.transform is not None else "neurons",
            "max_tokens": self.max_tokens,
            "probes": [{key: p[key] for key in ("id", "feature", "layer", "method", "k", "f1")}
                       for p in self.probes.values()],
            "site_root": self.site,
        }

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` with the model's special tokens, and each token's character span in ``text``
        (``(0, 0)`` for special tokens), refusing empty and over-long text."""
        if not isinstance(text, str):
            raise InputError("the text must be a string.")
        if not text.strip():
            raise InputError("the text is empty: type or paste some text first.")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"the text has {len(text)} characters; the viewer takes at most {MAX_TEXT_CHARS}.")
        encoded = self.model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False,
                                       return_offsets_mapping=True)
        ids = [int(i) for i in encoded["input_ids"]]
        if len(ids) > self.max_tokens:
            raise InputError(f"the text is {len(ids)} tokens long but {self.model.model_id} reads at most "
                             f"{self.max_tokens} tokens at once; shorten it.")
        return ids, [(int(a), int(b)) for a, b in encoded["offset_mapping"]]

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """How each token is shown: WordPiece continuations keep their ``##``, others are decoded."""
        tokenizer = self.model.tokenizer
        out = []
        for token_id in ids:
            piece = tokenizer.convert_ids_to_tokens(int(token_id))
            if piece is not None and piece.startswith("##"):
                out.append(piece)
            else:
                out.append(tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False))
        return out

    def _check_layer(self, layer: Any) -> int:
        layer = _index(layer, "layer")
        if not 0 <= layer < self.model.n_layers:
            raise InputError(f"layer {layer} does not exist; {self.model.model_id} has layers "
                             f"0..{self.model.n_layers - 1}.")
        if layer not in self.layers:
            if self.transform is not None:
                raise InputError(f"{self.transform.name} reads layer {', '.join(map(str, self.layers))}; its "
                                 f"latents mean nothing at layer {layer}.")
            raise InputError(f"layer {layer} is not offered; choose one of {', '.join(map(str, self.layers))}.")
        return layer

    def _check_neuron(self, neuron: Any) -> int:
        neuron = _index(neuron, self.unit)
        if not 0 <= neuron < self.width:
            where = (f"each layer of {self.model.model_id} has neurons" if self.transform is None
                     else f"{self.transform.name} has latents")
            raise InputError(f"{self.unit} {neuron} does not exist; {where} 0..{self.width - 1}.")
        return neuron

    def activations(self, text: str, *, layer: Any = None, neuron: Any = None, probe: str | None = None
                    ) -> dict[str, Any]:
        """One neuron's activation (and optionally a probe's prediction) at every token of ``text``.

        Parameters
        ----------
        text : str
        layer, neuron : int
            The neuron (or, with a transform, the latent) shown. With a ``probe`` and no neuron: the probe's layer and its neuron with the largest
            |coefficient|.
        probe : str, optional
            Id of a probe from the catalogue: its score ``a[neurons] @ coef + intercept`` and probability
            ``sigmoid(score)`` at each token are returned too, and the tokens are coloured by the score.

        Returns
        -------
        dict
            ``tokens`` (list of str, length n_tokens), ``token_ids``, ``offsets`` (character span of each
            token in ``text``; ``[0, 0]`` for special tokens), ``layer``, ``neuron``, ``activations`` (the
            neuron's, list of float, length n_tokens), ``mode`` (``"neuron"``, or ``"probe"`` with a probe),
            ``values`` (what the tokens are coloured by: the neuron's activations, or the probe's scores),
            ``max_abs`` (largest |value| on the text), ``scale`` and ``scale_source`` (what colours are relative
            to) and, with a probe, ``probe`` with ``id, feature, k, f1, neurons, scores, probabilities,
            predicted`` (the lists of length n_tokens). Also ``page``: the neuron's site page when it has one.
        """
        entry = None
        if probe:
            entry = self.probes.get(str(probe))
            if entry is None:
                raise InputError(f"unknown probe {probe!r}; choose one of the probes listed by the viewer.")
            if layer is None:
                layer = entry["layer"]
            if neuron is None and entry["neurons"]:  # the neuron with the largest |coefficient|
                neuron = max(zip(entry["neurons"], entry["coef"]), key=lambda nc: abs(nc[1]))[0]
        if layer is None or neuron is None:
            raise InputError("choose a layer and a neuron (or a probe).")
        layer, neuron = self._check_layer(layer), self._check_neuron(neuron)
        if entry is not None and entry["layer"] != layer:
            raise InputError(f"probe {entry['id']} reads layer {entry['layer']}, not layer {layer}.")
        ids, offsets = self.tokenize(text)
        input_ids = torch.tensor([ids], dtype=torch.long)
        with self._lock:
            captured = self.model.capture(input_ids, torch.ones_like(input_ids), [layer], site=self.read_site)
        layer_acts = captured[layer][0].float().cpu()
        values = layer_acts[:, neuron].tolist()
        ref = NeuronRef(layer, neuron)
        max_abs = max((abs(v) for v in values), default=0.0)
        corpus_scale = self.neuron_scales.get(ref)
        answer: dict[str, Any] = {
            "tokens": self.token_strings(ids),
            "token_ids": ids,
            "offsets": offsets,
            "layer": layer,
            "neuron": neuron,
            "activations": values,
            "mode": "neuron",
            "unit": self.unit,
            "values": values,
            "max_abs": max_abs,
            "scale": max(max_abs, corpus_scale) if corpus_scale else max_abs,
            "scale_source": f"the {self.unit}'s largest |activation| on the site's corpus" if corpus_scale
            else "the largest |activation| on this text",
        }
        if self.site is not None and ref in self.neuron_pages:
            answer["page"] = self.site + neuron_page_name(ref)
        if entry is not None:
            index = torch.tensor(entry["neurons"], dtype=torch.long)
            coef = torch.tensor(entry["coef"], dtype=torch.float64)
            scores = (layer_acts[:, index].double() @ coef + entry["intercept"]).tolist()
            answer["probe"] = {
                "id": entry["id"], "feature": entry["feature"], "k": entry["k"], "f1": entry["f1"],
                "neurons": list(entry["neurons"]),
                "scores": scores,
                "probabilities": [_sigmoid(s) for s in scores],
                "predicted": [s > 0 for s in scores],
            }
            # Probe mode shows the probe, not one of its neurons: its score has no corpus scale, so colours are
            # relative to the text's largest |score| (the sign says which side of the decision boundary).
            score_max = max((abs(v) for v in scores), default=0.0)
            answer.update(mode="probe", values=scores, max_abs=score_max, scale=score_max,
                          scale_source="the largest |probe score| on this text")
        return answer


def _index(value: Any, what: str) -> int:
    """A layer or neuron number from JSON or a query string: an integer, or text of one; never a truncated float."""
    if isinstance(value, bool):
        raise InputError(f"{what} {value!r} is not a number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    try:
        float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a number.") from None
    raise InputError(f"{what} {value!r} is not a whole number; "
                     "give an integer such as 3.")


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    z = math.exp(value)
    return z / (1.0 + z)
