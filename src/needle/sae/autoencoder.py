"""A sparse autoencoder's encoder and decoder, usable as a site transform.

The three activation functions SAELens saves (its ``architecture``):

=============  ==========================================================================
``standard``   ``z = relu(pre)``
``jumprelu``   ``z = relu(pre) · [pre > threshold]`` (one threshold per latent)
``topk``       the ``k`` largest ``pre`` of each position kept (then ReLU), the rest 0
=============  ==========================================================================

with ``pre = (norm(x) - b_dec·apply_b_dec_to_input) @ W_enc + b_enc`` — for
TopK with ``rescale_acts_by_decoder_norm``, ``pre`` is further multiplied by
each latent's decoder-row norm before the selection. ``norm`` is SAELens's
``normalize_activations`` (``none``, ``layer_norm`` or ``constant_norm_rescale``;
both of the latter are per position, so they are a transform of one position's
activations like the rest). Decoding is ``z @ W_dec + b_dec`` (undoing the norm).

A :class:`SparseAutoencoder` is a :class:`needle.models.sites.Transform`:
``extract(..., site="hook_resid_post", transform=sae)`` stores latents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from needle.errors import InputError

__all__ = ["SparseAutoencoder", "ARCHITECTURES", "NORMALIZATIONS", "format_latent_id", "sae_site_and_layers"]

ARCHITECTURES = ("standard", "topk", "jumprelu")
NORMALIZATIONS = ("none", "layer_norm", "constant_norm_rescale")


def format_latent_id(layer: int, index: int) -> str:
    """A latent's id, ``L{layer}.F{index}`` (F for feature: it is no neuron)."""
    return f"L{int(layer)}.F{int(index)}"


def _tensor(value: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, np.float32)
    if array.shape != shape:
        raise InputError(f"the SAE's {what} has shape {array.shape}, expected {shape}.")
    return torch.from_numpy(array.copy())


class SparseAutoencoder:
    """Encoder and decoder of one SAE (float32, CPU until called on another device).

    Parameters
    ----------
    w_enc : array-like of shape (d_in, d_sae)
    b_enc : array-like of shape (d_sae,)
    w_dec : array-like of shape (d_sae, d_in)
    b_dec : array-like of shape (d_in,)
    architecture : {"standard", "topk", "jumprelu"}
    k : int, optional
        Latents kept per position (``topk`` only).
    threshold : array-like of shape (d_sae,), optional
        ``jumprelu`` only.
    apply_b_dec_to_input : bool, default True
    normalize_activations : {"none", "layer_norm", "constant_norm_rescale"}
    rescale_acts_by_decoder_norm : bool, default False
        ``topk`` only.
    metadata : mapping, optional
        Kept as given (SAELens's ``metadata``: ``hook_name``, ``model_name``…).
    name : str, optional
        Default ``sae{d_sae}-{architecture}-{first 8 hex digits of the weights' SHA-256}``.
    """

    def __init__(self, w_enc: Any, b_enc: Any, w_dec: Any, b_dec: Any, *, architecture: str = "standard",
                 k: int | None = None, threshold: Any = None, apply_b_dec_to_input: bool = True,
                 normalize_activations: str = "none", rescale_acts_by_decoder_norm: bool = False,
                 metadata: Mapping[str, Any] | None = None, name: str | None = None):
        if architecture not in ARCHITECTURES:
            raise InputError(f"SAE architecture {architecture!r} is not supported; needle reads "
                             f"{', '.join(ARCHITECTURES)}.")
        if normalize_activations not in NORMALIZATIONS:
            raise InputError(f"SAE normalize_activations={normalize_activations!r} is not supported (it needs "
                             f"dataset statistics); fold it into the weights, or use one of {', '.join(NORMALIZATIONS)}.")
        w_enc = np.asarray(w_enc.detach().cpu() if isinstance(w_enc, torch.Tensor) else w_enc, np.float32)
        if w_enc.ndim != 2:
            raise InputError(f"the SAE's W_enc must be 2-D (d_in, d_sae), got shape {w_enc.shape}.")
        d_in, d_sae = w_enc.shape
        self.w_enc = torch.from_numpy(w_enc.copy())
        self.b_enc = _tensor(b_enc, (d_sae,), "b_enc")
        self.w_dec = _tensor(w_dec, (d_sae, d_in), "W_dec")
        self.b_dec = _tensor(b_dec, (d_in,), "b_dec")
        self.architecture = architecture
        if architecture == "topk":
            if k is None or not 1 <= int(k) <= d_sae:
                raise InputError(f"a TopK SAE needs k between 1 and d_sae={d_sae}, got {k!r}.")
            k = int(k)
        self.k = k if architecture == "topk" else None
        self.threshold = _tensor(threshold, (d_sae,), "threshold") if architecture == "jumprelu" else None
        if architecture == "jumprelu" and threshold is None:
            raise InputError("a JumpReLU SAE needs its threshold (shape (d_sae,)).")
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.normalize_activations = normalize_activations
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm) and architecture == "topk"
        self.metadata = dict(metadata or {})
        digest = hashlib.sha256()
        for part in (self.w_enc, self.b_enc, self.w_dec, self.b_dec, self.threshold):
            digest.update(b"-" if part is None else part.numpy().tobytes())
        digest.update(repr((architecture, self.k, self.apply_b_dec_to_input, normalize_activations,
                            self.rescale_acts_by_decoder_norm)).encode())
        self.sha256 = digest.hexdigest()
        self.name = name or f"sae{d_sae}-{architecture}-{self.sha256[:8]}"
        self.params: dict[str, Any] = {
            "kind": "sae", "architecture": architecture, "in_width": int(d_in), "out_width": int(d_sae),
            "k": self.k, "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": normalize_activations,
            "rescale_acts_by_decoder_norm": self.rescale_acts_by_decoder_norm, "sha256": self.sha256,
            "hook_name": self.metadata.get("hook_name"), "model_name": self.metadata.get("model_name"),
        }
        self._on: dict[torch.device, dict[str, torch.Tensor | None]] = {}

    # ---------------------------------------------------------------- shape
    @property
    def d_in(self) -> int:
        return int(self.w_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.w_enc.shape[1])

    def out_width(self, width: int) -> int:
        if width != self.d_in:
            raise InputError(f"the SAE {self.name} reads {self.d_in} columns but the site has {width}; use the site "
                             f"it was trained on ({self.metadata.get('hook_name') or 'see its cfg.json'}).")
        return self.d_sae

    def _weights(self, device: torch.device) -> dict[str, torch.Tensor | None]:
        if device not in self._on:
            self._on[device] = {name: None if value is None else value.to(device) for name, value in
                                (("w_enc", self.w_enc), ("b_enc", self.b_enc), ("w_dec", self.w_dec),
                                 ("b_dec", self.b_dec), ("threshold", self.threshold))}
        return self._on[device]

    # --------------------------------------------------------------- encode
    def _normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        if self.normalize_activations == "layer_norm":
            mu = x.mean(-1, keepdim=True)
            std = (x - mu).std(-1, keepdim=True)
            return (x - mu) / (std + 1e-5), ("ln", mu, std)
        if self.normalize_activations == "constant_norm_rescale":
            coefficient = self.d_in ** 0.5 / x.norm(dim=-1, keepdim=True)
            return x * coefficient, ("scale", coefficient)
        return x, None

    def pre_activations(self, acts: torch.Tensor) -> torch.Tensor:
        """(…, d_in) to the (…, d_sae) values the activation function reads."""
        w = self._weights(acts.device)
        x, _ = self._normalise(acts.float())
        if self.apply_b_dec_to_input:
            x = x - w["b_dec"]
        pre = x @ w["w_enc"] + w["b_enc"]
        if self.rescale_acts_by_decoder_norm:
            pre = pre * w["w_dec"].norm(dim=-1)
        return pre

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        """Latents, shape (…, d_sae), float32, from activations of shape (…, d_in)."""
        pre = self.pre_activations(acts)
        if self.architecture == "standard":
            return torch.relu(pre)
        if self.architecture == "jumprelu":
            return torch.relu(pre) * (pre > self._weights(acts.device)["threshold"])
        values, indices = torch.topk(pre, self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))

    __call__ = encode

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(…, d_sae) latents to (…, d_in) in the SAE's (normalised) input space."""
        w = self._weights(latents.device)
        z = latents.float()
        if self.rescale_acts_by_decoder_norm:
            z = z / w["w_dec"].norm(dim=-1)
        return z @ w["w_dec"] + w["b_dec"]

    def reconstruct(self, acts: torch.Tensor) -> torch.Tensor:
        """``decode(encode(acts))`` mapped back through the input normalisation, shape (…, d_in)."""
        out = self.decode(self.encode(acts))
        _, undo = self._normalise(acts.float())
        if undo is None:
            return out
        if undo[0] == "ln":
            return out * undo[2] + undo[1]
        return out / undo[1]

    @property
    def hook(self) -> tuple[str, int] | None:
        """``(site name, layer)`` from the recorded ``hook_name`` (``blocks.3.hook_resid_post``), or None."""
        return _parse_hook(self.metadata.get("hook_name"))

    def decoder_directions(self) -> torch.Tensor:
        """Each latent's direction in the site's space, shape (d_sae, d_in), unit norm (what it writes)."""
        return self.w_dec / self.w_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def __repr__(self) -> str:
        return f"SparseAutoencoder({self.name!r}, d_in={self.d_in}, d_sae={self.d_sae})"


def _parse_hook(hook_name: Any) -> tuple[str, int] | None:
    if not isinstance(hook_name, str):
        return None
    parts = hook_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        return parts[2], int(parts[1])
    return None


def sae_site_and_layers(sae: SparseAutoencoder, site: str | None, layers: list[int] | None) -> tuple[str, list[int]]:
    """Where to read an SAE's input: the site and layer given, else the ones its ``hook_name`` records.

    ``site`` may carry the layer (``blocks.3.hook_resid_post``). A site or layer that contradicts the SAE's
    recorded hook is refused (its latents would be meaningless there).
    """
    from needle.models.sites import get_site

    given = _parse_hook(site) if site else None
    recorded = sae.hook
    if layers is None and given is not None:
        layers = [given[1]]
    name = site if site else (recorded[0] if recorded else None)
    if name is None:
        raise InputError(f"the SAE {sae.name} records no hook_name; pass --site (e.g. blocks.3.hook_resid_post).")
    if layers is None:
        if recorded is None:
            raise InputError("an SAE reads one layer and this one records none; pass --layers or "
                             "--site blocks.<layer>.<site>.")
        layers = [recorded[1]]
    if recorded is not None:
        if get_site(name).name != get_site(recorded[0]).name:
            raise InputError(f"the SAE was trained on {sae.metadata['hook_name']}, not on site {name}; pass "
                             f"--site {sae.metadata['hook_name']}.")
        if list(layers) != [recorded[1]]:
            raise InputError(f"the SAE was trained on {sae.metadata['hook_name']}; its latents mean nothing at "
                             f"layers {list(layers)}: pass --layers {recorded[1]}.")
    return name, list(layers)
