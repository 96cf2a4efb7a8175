"""Models from the interpretability ecosystem: TransformerLens's ``HookedTransformer`` and nnsight's models.

:func:`foreign_adapter` is what :func:`needle.models.adapt` (and so every
function that takes a model) calls first:

* an **nnsight** ``LanguageModel`` / ``TransformersModel`` wraps a Hugging Face
  model (its ``_module``); needle adapts that model, so values are exactly the
  Hugging Face path's, and nnsight's module paths
  (``model.transformer.h[3].mlp.c_proj.input``) read the same tensors;
* a **TransformerLens** ``HookedTransformer`` is read at its own hook points:
  each site's TransformerLens name (``blocks.3.mlp.hook_post``) is the
  ``HookPoint`` hooked, so the value is what ``run_with_cache`` stores under
  that name (``attn.hook_z`` flattened to (batch, pos, n_heads·d_head)).

Neither library is imported here: objects are recognised by their class's module.

Hugging Face vs TransformerLens: with weights converted and loaded without
processing (``fold_ln=False, center_writing_weights=False, …``) every site
agrees to float32 rounding. TransformerLens's default processing folds each
LayerNorm's weights into the next matrices and centres the writing weights:
MLP neurons (``mlp.hook_pre``/``hook_post``) are unchanged (to rounding), but
the residual-stream sites differ by a per-position constant (their mean over
``d_model``, which TransformerLens removes) — the next LayerNorm removes it too,
so the model computes the same function, but ``hook_resid_*`` values are not
the Hugging Face ones. BERT-style post-LN residual sites are also not the same
tensors: see :mod:`needle.models.sites` (needle reads the normalised streams).
Padding: TransformerLens derives positions from ``attention_mask`` only for
left padding when told so; needle runs it with right padding (extraction's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from needle.errors import InputError
from needle.models.base import ModelAdapter
from needle.models.sites import Site, Transform, get_site

__all__ = ["HookedTransformerAdapter", "foreign_adapter", "is_transformer_lens", "is_nnsight"]


def _module_of(obj: Any) -> str:
    return type(obj).__module__ or ""


def is_transformer_lens(model: Any) -> bool:
    return _module_of(model).startswith("transformer_lens") and hasattr(model, "hook_dict") and hasattr(model, "cfg")


def is_nnsight(model: Any) -> bool:
    return _module_of(model).startswith("nnsight")


def foreign_adapter(model: Any, tokenizer: Any = None, *, model_id: str = "",
                    revision: str | None = None) -> ModelAdapter | None:
    """An adapter for a TransformerLens or nnsight model, or None when ``model`` is neither."""
    if is_transformer_lens(model):
        return HookedTransformerAdapter(model, tokenizer, model_id=model_id, revision=revision)
    if is_nnsight(model):
        inner = getattr(model, "_module", None)
        if not isinstance(inner, nn.Module):
            raise InputError(f"the nnsight object {type(model).__name__} wraps no PyTorch module needle can read.")
        from needle.models.loading import adapt

        return adapt(inner, tokenizer if tokenizer is not None else getattr(model, "tokenizer", None),
                     model_id=model_id, revision=revision)
    return None


class _FlattenHeads:
    """(…, n_heads, d_head) → (…, n_heads·d_head), then the site's own transform."""

    def __init__(self, then: Transform | None):
        self.then = then
        self.name = "flat" if then is None else then.name
        self.params = {} if then is None else then.params

    def out_width(self, width: int) -> int:
        return width if self.then is None else self.then.out_width(width)

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        flat = acts.flatten(-2)
        return flat if self.then is None else self.then(flat)


class _Hooked(nn.Module):
    """The HookedTransformer behind the parts of the Hugging Face interface that needle's code calls."""

    def __init__(self, hooked: nn.Module):
        super().__init__()
        self.hooked = hooked

    def get_input_embeddings(self) -> nn.Embedding:
        return nn.Embedding.from_pretrained(self.hooked.embed.W_E.detach(), freeze=True)  # shares the storage

    def get_output_embeddings(self) -> None:
        return None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.hooked(*args, **kwargs)


class HookedTransformerAdapter(ModelAdapter):
    """A TransformerLens ``HookedTransformer`` read at its hook points (see the module docstring).

    ``adapter.hooked`` is the HookedTransformer; ``adapter.model`` wraps it for needle's code.
    """

    family = "transformer_lens"

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, model_id: str = "", revision: str | None = None,
                 weights_hash: str | None = None):
        if getattr(model.cfg, "original_architecture", None) in ("BertForMaskedLM",):
            raise InputError("TransformerLens's HookedEncoder is not supported; adapt the Hugging Face BERT instead.")
        self.hooked = model
        super().__init__(_Hooked(model), tokenizer if tokenizer is not None else getattr(model, "tokenizer", None),
                         model_id=model_id or f"transformer_lens:{getattr(model.cfg, 'model_name', 'model')}",
                         revision=revision, weights_hash=weights_hash)

    # -------------------------------------------------------- structure
    @property
    def config(self) -> Any:
        return self.hooked.cfg

    @property
    def base(self) -> nn.Module:
        return self.hooked

    @property
    def blocks(self) -> nn.ModuleList:
        return self.hooked.blocks

    @property
    def n_neurons(self) -> int:
        return int(self.hooked.cfg.d_mlp)

    @property
    def d_model(self) -> int:
        return int(self.hooked.cfg.d_model)

    @property
    def max_positions(self) -> int | None:
        return int(self.hooked.cfg.n_ctx)

    @property
    def n_attention_columns(self) -> int:
        return int(self.hooked.cfg.n_heads * self.hooked.cfg.d_head)

    def locate_site(self, site: Site, layer: int) -> tuple[nn.Module, str]:
        name = site.hook_name(layer)
        hook = self.hooked.hook_dict.get(name)
        if hook is None:
            raise InputError(f"{self.model_id} has no TransformerLens hook {name}.")
        return hook, "output"

    def final_norm(self) -> nn.Module | None:
        return getattr(self.hooked, "ln_final", None)

    # ----------------------------------------------------------- weights
    def w_in(self, layer: int) -> torch.Tensor:
        return self.hooked.blocks[layer].mlp.W_in.detach()

    def b_in(self, layer: int) -> torch.Tensor:
        return self.hooked.blocks[layer].mlp.b_in.detach()

    def w_out(self, layer: int) -> torch.Tensor:
        return self.hooked.blocks[layer].mlp.W_out.detach()

    def unembed(self) -> torch.Tensor:
        return self.hooked.W_U.detach()

    def weights_hash(self) -> str:
        """SHA-256 of the state dict (TransformerLens keeps 0-d buffers, which the base hash cannot view as bytes)."""
        if self._weights_hash is None:
            import hashlib

            digest = hashlib.sha256()
            for name, tensor in sorted(self.hooked.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description["architecture"] = f"HookedTransformer({getattr(self.hooked.cfg, 'original_architecture', None)})"
        return description

    # ----------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.hooked(input_ids, return_type=None, attention_mask=attention_mask)

    def capture(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int],
                site: str | Site = "post", reduce: Callable[[int, torch.Tensor], Any] | None = None,
                transform: Transform | None = None) -> dict[int, Any]:
        site = get_site(site, transform)
        if site.name == "attn.hook_z":
            site = site.with_transform(_FlattenHeads(site.transform))
        return super().capture(input_ids, attention_mask, layers, site, reduce)
