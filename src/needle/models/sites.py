"""Activation sites, and the transforms that change their basis.

A :class:`Site` is a place in every layer where activations are read, named
like TransformerLens's hook (without the ``blocks.{l}.`` prefix). It knows,
for each architecture family, which module to hook and whether the value is
that module's input or output, and how wide the value is.

==================================  ==============================================  ========================
site (short name)                   read at                                         width (basis)
==================================  ==============================================  ========================
``hook_resid_pre``                  the block's input                               d_model (residual)
``attn.hook_z``                     input of attention's output projection          n_heads·d_head (heads)
``hook_attn_out``                   what attention adds to the residual stream      d_model (residual)
``hook_resid_mid``                  the stream between attention and MLP            d_model (residual)
``mlp.hook_pre`` (``pre``)          output of the MLP's input projection            n_neurons (neurons)
``mlp.hook_post`` (``post``)        input of the MLP's output projection: neurons   n_neurons (neurons)
``hook_mlp_out``                    what the MLP adds to the residual stream        d_model (residual)
``hook_resid_post`` (``resid``)     the block's output                              d_model (residual)
==================================  ==============================================  ========================

Every value has shape (batch, pos, width). ``attn.hook_z`` is TransformerLens's
(batch, pos, n_heads, d_head) flattened: head ``h`` is columns
``h·d_head … (h+1)·d_head - 1``.

Family notes:

* **GPT-NeoX** with ``use_parallel_residual=True`` (every Pythia model):
  attention and MLP both read the block's input, so there is no residual
  stream between them and ``hook_resid_mid`` is refused.
* **Gated MLP** models with sandwich norms (Gemma 2, OLMo 2) normalise each
  sublayer's output before adding it: ``hook_attn_out`` / ``hook_mlp_out``
  are the outputs of those norms, what is added to the stream.
* **BERT** is post-LayerNorm. ``hook_attn_out`` is ``attention.output.dense``'s
  output (``W_O z + b_O``, before the residual sum and LayerNorm);
  ``hook_resid_mid`` is the attention block's output,
  ``LayerNorm(resid_pre + attn_out)``, which is what the MLP reads;
  ``hook_mlp_out`` is ``output.dense``'s output; ``hook_resid_post`` is the
  layer's output, ``LayerNorm(resid_mid + mlp_out)``, which is what the next
  layer reads. So the three residual sites are the *normalised* streams —
  TransformerLens's ``hook_normalized_resid_mid`` and
  ``hook_normalized_resid_post`` — not its un-normalised sums.

A site may carry a :class:`Transform` (an SAE's encoder, a PCA, a fixed
rotation) mapping each position's (width,) activations to (width',) ones; its
:attr:`Site.id` gets the transform's name as a suffix (``mlp.hook_post+pca16-…``)
so results in different bases never share a key.

To add a site, add one entry to :data:`SITES` (with a locator per family);
to add a transform, add a constructor to :class:`LinearMap` or any class
with ``name``, ``params``, ``out_width`` and ``__call__`` — both in this file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from needle.errors import InputError

if TYPE_CHECKING:
    from needle.models.base import ModelAdapter

__all__ = ["Site", "SITES", "ALIASES", "Transform", "LinearMap", "get_site", "normalize_site", "site_hook_name",
           "site_id"]

#: A locator: ``(adapter, layer) -> (module, "input" | "output")``.
Locator = Callable[["ModelAdapter", int], tuple[nn.Module, str]]


@runtime_checkable
class Transform(Protocol):
    """Maps (…, width) activations to (…, width') ones, position by position.

    Attributes
    ----------
    name : str
        Suffix of the site id (``mlp.hook_post+<name>``): distinct for distinct maps.
    params : dict
        JSON-serialisable description recorded in the cache manifest.
    """

    name: str
    params: dict[str, Any]

    def out_width(self, width: int) -> int:
        """Width of the output for an input of ``width`` columns (an InputError if it does not fit)."""
        ...

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        """Tensor of shape (…, width) to tensor of shape (…, out_width(width))."""
        ...


class LinearMap:
    """``act((x - shift) @ matrix + bias)``: a rotation, a PCA or an SAE encoder.

    Computed in float32 on the activations' device.

    Parameters
    ----------
    matrix : array-like of shape (width, width')
    shift : array-like of shape (width,), optional
    bias : array-like of shape (width',), optional
    kind : str
        Short word naming the map (``rot``, ``pca``, ``sae``…).
    relu : bool, default False
        Apply a ReLU (SAE encoders).
    name : str, optional
        Default ``{kind}{width'}-{first 8 hex digits of the parameters' SHA-256}``.
    extra : dict, optional
        Further JSON-serialisable parameters to record (e.g. a seed).
    """

    def __init__(self, matrix: Any, shift: Any = None, bias: Any = None, *, kind: str, relu: bool = False,
                 name: str | None = None, extra: Mapping[str, Any] | None = None):
        self.matrix = torch.as_tensor(np.asarray(matrix, np.float32))
        if self.matrix.ndim != 2:
            raise InputError(f"a {kind} transform needs a 2-D matrix (width, width'), got shape {tuple(self.matrix.shape)}.")
        d_in, d_out = self.matrix.shape
        self.shift = None if shift is None else torch.as_tensor(np.asarray(shift, np.float32)).reshape(d_in)
        self.bias = None if bias is None else torch.as_tensor(np.asarray(bias, np.float32)).reshape(d_out)
        self.relu = relu
        digest = hashlib.sha256()
        for part in (self.matrix, self.shift, self.bias):
            digest.update(b"-" if part is None else part.numpy().tobytes())
        digest.update(b"relu" if relu else b"")
        self.sha256 = digest.hexdigest()
        self.name = name or f"{kind}{d_out}-{self.sha256[:8]}"
        self.params = {"kind": kind, "in_width": int(d_in), "out_width": int(d_out), "relu": relu,
                       "sha256": self.sha256, **dict(extra or {})}
        self._on: dict[torch.device, tuple] = {}

    @classmethod
    def rotation(cls, width: int, seed: int = 0, *, name: str | None = None) -> LinearMap:
        """A fixed random orthogonal (width, width) matrix (QR of a seeded Gaussian, signs fixed)."""
        gaussian = np.random.default_rng(seed).standard_normal((width, width))
        q, r = np.linalg.qr(gaussian)
        return cls(q * np.sign(np.diag(r)), kind="rot", name=name, extra={"seed": int(seed)})

    @classmethod
    def pca(cls, fitted: Any = None, *, components: Any = None, mean: Any = None, name: str | None = None) -> LinearMap:
        """Projection on principal components: a fitted ``sklearn.decomposition.PCA`` (``whiten=False``), or
        ``components`` of shape (k, width) and ``mean`` of shape (width,)."""
        if fitted is not None:
            if getattr(fitted, "whiten", False):
                raise InputError("a whitened PCA is not a projection; fit it with whiten=False.")
            components, mean = fitted.components_, fitted.mean_
        if components is None:
            raise InputError("LinearMap.pca needs a fitted sklearn PCA or components= (and mean=).")
        return cls(np.asarray(components).T, shift=mean, kind="pca", name=name)

    @classmethod
    def sae(cls, w_enc: Any, b_enc: Any, b_dec: Any = None, *, name: str | None = None) -> LinearMap:
        """A sparse autoencoder's encoder ``relu((x - b_dec) @ w_enc + b_enc)``; ``w_enc`` is (width, n_latents)."""
        return cls(w_enc, shift=b_dec, bias=b_enc, kind="sae", relu=True, name=name)

    def out_width(self, width: int) -> int:
        if width != self.matrix.shape[0]:
            raise InputError(f"the transform {self.name} takes {self.matrix.shape[0]} columns but the site has "
                             f"{width}; fit it on this site's activations.")
        return int(self.matrix.shape[1])

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        if acts.device not in self._on:
            self._on[acts.device] = tuple(None if t is None else t.to(acts.device)
                                          for t in (self.matrix, self.shift, self.bias))
        matrix, shift, bias = self._on[acts.device]
        x = acts.float()
        if shift is not None:
            x = x - shift
        y = x @ matrix
        if bias is not None:
            y = y + bias
        return torch.relu(y) if self.relu else y

    def __repr__(self) -> str:
        return f"LinearMap({self.name!r})"


_WIDTHS = ("n_neurons", "d_model", "attention")
_BASES = {"n_neurons": "neurons", "d_model": "residual dimensions", "attention": "attention head dimensions"}


@dataclasses.dataclass(frozen=True, eq=False)
class Site:
    """Where one kind of activation is read in every layer, optionally followed by a transform.

    Attributes
    ----------
    name : str
        TransformerLens hook name without ``blocks.{l}.``, e.g. ``"mlp.hook_post"``.
    locate : mapping of family to locator
        ``locate[adapter.family](adapter, layer)`` gives ``(module, side)``:
        the value is the module's first input (``"input"``) or its output
        (``"output"``, the first element when it is a tuple).
    width_of : {"n_neurons", "d_model", "attention"}
        The raw width: the MLP hidden size, the residual width, or
        ``n_heads · d_head`` (the in-features of the attention output projection).
    description : str
        What the value is, in a few words.
    transform : Transform, optional
    """

    name: str
    locate: Mapping[str, Locator]
    width_of: str
    description: str
    transform: Transform | None = None

    @property
    def id(self) -> str:
        """What artifacts record: the name, plus ``+<transform name>`` for a transformed basis."""
        return self.name if self.transform is None else f"{self.name}+{self.transform.name}"

    @property
    def basis(self) -> str:
        """What the columns are: ``neurons``, ``residual dimensions``, ``attention head dimensions`` or the transform's name."""
        return _BASES[self.width_of] if self.transform is None else self.transform.name

    @property
    def shape(self) -> str:
        """Shape of a captured value, e.g. ``(batch, pos, n_neurons)`` or ``(batch, pos, out_width(n_neurons))``."""
        width = {"attention": "n_heads·d_head"}.get(self.width_of, self.width_of)
        return f"(batch, pos, {width if self.transform is None else f'out_width({width})'})"

    def hook_name(self, layer: int) -> str:
        """TransformerLens hook name at ``layer``, e.g. ``blocks.3.mlp.hook_post``."""
        return f"blocks.{layer}.{self.name}"

    def with_transform(self, transform: Transform | None) -> Site:
        if transform is not None and not isinstance(transform, Transform):
            raise InputError(f"{transform!r} is not a transform: it needs name, params, out_width() and __call__().")
        return dataclasses.replace(self, transform=transform)

    def module(self, adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
        """The module of ``adapter`` to hook at ``layer``, and the side (``"input"`` or ``"output"``) to read."""
        custom = getattr(adapter, "locate_site", None)  # adapters with their own hook points (TransformerLens)
        if custom is not None:
            return custom(self, layer)
        locator = self.locate.get(adapter.family)
        if locator is None:
            raise InputError(f"site {self.name} is not defined for the {adapter.family} family.")
        return locator(adapter, layer)

    def raw_width(self, adapter: ModelAdapter) -> int:
        """Columns of the value before the transform."""
        if self.width_of == "n_neurons":
            return adapter.n_neurons
        if self.width_of == "d_model":
            return adapter.d_model
        if hasattr(adapter, "n_attention_columns"):
            return int(adapter.n_attention_columns)
        return int(adapter._linear_weight_in_out(self.module(adapter, 0)[0]).shape[0])

    def width(self, adapter: ModelAdapter) -> int:
        """Columns of the captured value (after the transform)."""
        width = self.raw_width(adapter)
        return width if self.transform is None else int(self.transform.out_width(width))

    def describe(self) -> dict[str, Any]:
        """What a cache manifest records about the site."""
        return {"name": self.name, "basis": self.basis,
                "transform": None if self.transform is None else {"name": self.transform.name,
                                                                  "params": self.transform.params}}

    def __repr__(self) -> str:
        return f"Site({self.id!r})"


# ------------------------------------------------------------- locators
def _at(path: str, side: str) -> Locator:
    """The submodule ``path`` of the block (``""``: the block itself)."""
    return lambda adapter, layer: (adapter.blocks[layer].get_submodule(path), side)


def _mlp_in(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    return adapter.mlp_in(layer), "output"


def _mlp_out(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    point = getattr(adapter, "neuron_point", None)  # where the family reads its neurons (SoLU: before the norm)
    return point(layer) if point is not None else (adapter.mlp_out(layer), "input")


def _neox_resid_mid(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    if getattr(adapter.config, "use_parallel_residual", True):
        raise InputError(
            f"hook_resid_mid does not exist in {adapter.model_id}: with use_parallel_residual=True (as in every "
            "Pythia model) attention and MLP both read the block's input; use hook_resid_pre or hook_resid_post."
        )
    return adapter.blocks[layer].post_attention_layernorm, "input"


def _sandwich(block: nn.Module) -> bool:
    """Gemma 2 / OLMo 2: each sublayer's output is normalised before it is added to the stream."""
    return hasattr(block, "post_feedforward_layernorm")


def _gated_resid_mid(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    block = adapter.blocks[layer]
    for name in ("pre_feedforward_layernorm", "post_attention_layernorm"):
        if hasattr(block, name) and not (name == "post_attention_layernorm" and _sandwich(block)):
            return getattr(block, name), "input"
    return block.mlp, "input"  # OLMo 2: the MLP reads the stream unnormalised


def _gated_attn_out(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    block = adapter.blocks[layer]
    return (block.post_attention_layernorm, "output") if _sandwich(block) else (block.self_attn, "output")


def _gated_mlp_out(adapter: ModelAdapter, layer: int) -> tuple[nn.Module, str]:
    block = adapter.blocks[layer]
    return (block.post_feedforward_layernorm, "output") if _sandwich(block) else (block.mlp, "output")


def _everywhere(locator: Locator) -> dict[str, Locator]:
    return {family: locator for family in ("gpt_neox", "gpt2", "gated_mlp", "bert")}


#: canonical name → Site (no transform), in the order a forward pass reaches them
SITES: dict[str, Site] = {site.name: site for site in (
    Site("hook_resid_pre", _everywhere(_at("", "input")), "d_model", "the residual stream the block reads"),
    Site("attn.hook_z", {"gpt_neox": _at("attention.dense", "input"), "gpt2": _at("attn.c_proj", "input"),
                         "gated_mlp": _at("self_attn.o_proj", "input"), "bert": _at("attention.output.dense", "input")},
         "attention", "attention heads' mixed values, concatenated, before the output projection"),
    Site("hook_attn_out", {"gpt_neox": _at("attention", "output"), "gpt2": _at("attn", "output"),
                           "gated_mlp": _gated_attn_out, "bert": _at("attention.output.dense", "output")},
         "d_model", "what attention writes"),
    Site("hook_resid_mid", {"gpt_neox": _neox_resid_mid, "gpt2": _at("ln_2", "input"),
                            "gated_mlp": _gated_resid_mid, "bert": _at("attention", "output")},
         "d_model", "the residual stream between attention and MLP"),
    Site("mlp.hook_pre", _everywhere(_mlp_in), "n_neurons", "MLP pre-activations"),
    Site("mlp.hook_post", _everywhere(_mlp_out), "n_neurons", "MLP neurons (after the nonlinearity)"),
    Site("hook_mlp_out", {"gpt_neox": _at("mlp", "output"), "gpt2": _at("mlp", "output"),
                          "gated_mlp": _gated_mlp_out, "bert": _at("output.dense", "output")},
         "d_model", "what the MLP writes"),
    Site("hook_resid_post", _everywhere(_at("", "output")), "d_model", "the residual stream the block writes"),
)}

#: short names accepted everywhere a site is
ALIASES: dict[str, str] = {"post": "mlp.hook_post", "pre": "mlp.hook_pre", "resid": "hook_resid_post"}
_SHORT = {name: short for short, name in ALIASES.items()}


def _canonical(name: str) -> str:
    if name.startswith("blocks."):
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[1].isdigit():
            name = parts[2]
    name = ALIASES.get(name, name)
    if name not in SITES:
        if "+" in name and name.split("+", 1)[0] in SITES:
            raise InputError(f"site {name!r} is a transformed basis, which cannot be rebuilt from its name; pass "
                             f"site={name.split('+', 1)[0]!r} with the transform object.")
        raise InputError(f"unknown site {name!r}; use one of {', '.join(SITES)} "
                         f"(or the short names {', '.join(ALIASES)}).")
    return name


def get_site(site: str | Site, transform: Transform | None = None) -> Site:
    """The :class:`Site` named ``site`` (canonical, short or ``blocks.{l}.…`` name), with ``transform`` if given.

    A :class:`Site` passes through; ``transform`` then replaces its own.
    """
    if isinstance(site, Site):
        return site if transform is None else site.with_transform(transform)
    if not isinstance(site, str):
        raise InputError(f"site must be a name such as 'mlp.hook_post' or a Site, not {type(site).__name__}.")
    base = SITES[_canonical(site)]
    return base if transform is None else base.with_transform(transform)


def normalize_site(site: str | Site) -> str:
    """The short name (``post``, ``pre``, ``resid``) of a site that has one, else its canonical name.

    Kept for code that compares against the short names; new code uses :func:`get_site`.
    """
    name = site.name if isinstance(site, Site) else _canonical(site)
    return _SHORT.get(name, name)


def site_hook_name(site: str | Site, layer: int) -> str:
    """TransformerLens-style hook name of ``site`` at ``layer``, e.g. ``blocks.3.mlp.hook_post``."""
    return get_site(site).hook_name(layer)


def site_id(recorded: str) -> str:
    """The canonical id of a site name as artifacts record it: ``post`` → ``mlp.hook_post``.

    Transformed ids (``mlp.hook_post+…``) and names that are no site (an
    ``ArraySource``'s ``custom``) come back unchanged, so recorded names compare
    equal exactly when they name the same basis.
    """
    if not isinstance(recorded, str):
        return recorded
    base, plus, suffix = recorded.partition("+")
    try:
        return _canonical(base) + plus + suffix
    except InputError:
        return recorded
