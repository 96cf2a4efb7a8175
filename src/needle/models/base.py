"""The model adapter: where the neurons of one architecture are, and how to read them.

A neuron is one coordinate of the MLP hidden layer right after the
nonlinearity — the input of the MLP's output projection — because linear
combinations of these are what the next layer reads (DESIGN.md, "Neurons, per
architecture"). The places activations can be read are the sites of
:mod:`needle.models.sites`, named like TransformerLens's hooks.

Values are exactly what the Hugging Face model computes: nothing is folded,
centred or otherwise processed (unless a site carries a transform).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from needle.errors import InputError
from needle.models.sites import SITES, Site, Transform, get_site, normalize_site, site_hook_name

__all__ = ["ModelAdapter", "SITES", "site_hook_name", "normalize_site"]


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured, to skip the rest of the model."""


class ModelAdapter:
    """Uniform access to the neurons and weights of one Hugging Face model.

    Subclasses describe one architecture family by implementing the module
    accessors (``blocks``, ``mlp_in``, ``mlp_out``…); everything else is shared.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The loaded model (with or without its language-modelling head).
    tokenizer : transformers.PreTrainedTokenizerBase, optional
    model_id : str
        What artifacts record as the model's identity (hub id, alias target or directory).
    revision : str, optional
        Hub revision or commit the weights came from.
    weights_hash : str, optional
        Fingerprint of the weights (see :func:`needle.models.weights_fingerprint`).
    """

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    is_causal: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        model_id: str = "",
        revision: str | None = None,
        weights_hash: str | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id or str(getattr(model.config, "_name_or_path", "")) or type(model).__name__
        self.revision = revision
        self._weights_hash = weights_hash

    # ------------------------------------------------------- per-family parts
    @property
    def base(self) -> nn.Module:
        """The transformer without its head (what a forward pass runs)."""
        raise NotImplementedError

    @property
    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def mlp_in(self, layer: int) -> nn.Module:
        """The projection whose output is the pre-activation (``hook_pre``)."""
        raise NotImplementedError

    def mlp_out(self, layer: int) -> nn.Module:
        """The output projection, whose input is the neuron activation (``hook_post``)."""
        raise NotImplementedError

    def final_norm(self) -> nn.Module | None:
        """The norm applied before the unembedding (causal LMs), or None."""
        return None

    def neuron_point(self, layer: int) -> tuple[nn.Module, str]:
        """Where the neurons (``mlp.hook_post``) are read: the output projection's input, unless a family says otherwise."""
        return self.mlp_out(layer), "input"

    def _linear_weight_in_out(self, module: nn.Module) -> torch.Tensor:
        """Weight of a projection as (in_features, out_features)."""
        return module.weight.detach().T

    # ------------------------------------------------------------- shape
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def n_neurons(self) -> int:
        """Neurons per layer (the MLP hidden width)."""
        return int(self.w_out(0).shape[0])

    @property
    def d_model(self) -> int:
        return int(self.w_out(0).shape[1])

    @property
    def max_positions(self) -> int | None:
        for name in ("max_position_embeddings", "n_positions"):
            value = getattr(self.config, name, None)
            if value:
                return int(value)
        return None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def site_width(self, site: str | Site, transform: Transform | None = None) -> int:
        """Columns of ``site``'s activations (after its transform)."""
        return get_site(site, transform).width(self)

    # ------------------------------------------------------------ weights
    def w_in(self, layer: int) -> torch.Tensor:
        """Input weights of the neurons, shape (d_model, n_neurons): ``pre = norm(x) @ w_in + b_in``."""
        return self._linear_weight_in_out(self.mlp_in(layer))

    def b_in(self, layer: int) -> torch.Tensor:
        """Input bias, shape (n_neurons,); zeros where the architecture has none."""
        bias = getattr(self.mlp_in(layer), "bias", None)
        if bias is None:
            return torch.zeros(self.w_in(layer).shape[1], dtype=self.dtype, device=self.device)
        return bias.detach()

    def w_out(self, layer: int) -> torch.Tensor:
        """Output weights of the neurons, shape (n_neurons, d_model): what each neuron writes."""
        return self._linear_weight_in_out(self.mlp_out(layer))

    def unembed(self) -> torch.Tensor:
        """Unembedding matrix ``W_U``, shape (d_model, vocab_size) (causal LMs only)."""
        if not self.is_causal:
            raise InputError(f"{self.model_id} is an encoder ({self.family}); it has no unembedding.")
        head = self.model.get_output_embeddings()
        if head is None:
            raise InputError(f"{self.model_id} was loaded without its language-modelling head.")
        return head.weight.detach().T

    def weights_hash(self) -> str:
        """Fingerprint of the weights: given at load time, or SHA-256 of the state dict."""
        if self._weights_hash is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    def describe(self) -> dict[str, Any]:
        """What artifacts record about the model."""
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "weights_hash": self.weights_hash(),
            "family": self.family,
            "architecture": type(self.model).__name__,
            "n_layers": self.n_layers,
            "n_neurons": self.n_neurons,
            "d_model": self.d_model,
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    # ------------------------------------------------------------- forward
    def hook_point(self, site: str | Site, layer: int) -> tuple[nn.Module, str]:
        """The module and side (``"input"`` or ``"output"``) where ``site`` of ``layer`` is read."""
        self._check_layer(layer)
        return get_site(site).module(self, layer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """Run the transformer (no head) on a padded batch.

        Position ids are computed from the attention mask, so left padding is
        correct for absolute and rotary position embeddings alike.
        """
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)

    @torch.inference_mode()
    def capture(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Sequence[int],
        site: str | Site = "post",
        reduce: Callable[[int, torch.Tensor], Any] | None = None,
        transform: Transform | None = None,
    ) -> dict[int, Any]:
        """Activations of ``site`` at ``layers`` for a padded batch.

        Only the requested layers are kept, and the forward pass stops after
        the last of them.

        Parameters
        ----------
        input_ids, attention_mask : Tensor of shape (batch, pos)
        layers : sequence of int
        site : str or Site
            A site name (``mlp.hook_post``, ``post``, ``blocks.3.hook_resid_pre``…)
            or a :class:`~needle.models.sites.Site`.
        reduce : callable, optional
            ``reduce(layer, activations)`` is called inside the hook and its
            result kept instead of the full tensor, so a caller that needs a
            few positions never holds every layer's activations at once.
        transform : Transform, optional
            Applied to each position's activations inside the hook, before
            ``reduce`` (replaces the site's own transform).

        Returns
        -------
        dict of int to Tensor of shape (batch, pos, width), or to what ``reduce`` returned
            ``width`` is ``site.width(self)``: after the transform, float32 when there is one.
        """
        site = get_site(site, transform)
        layers = sorted(set(int(layer) for layer in layers))
        if not layers:
            raise InputError("no layers requested")
        for layer in layers:
            self._check_layer(layer)
        captured: dict[int, torch.Tensor] = {}
        last = layers[-1]
        handles = []

        def make_hook(layer: int, side: str):
            def keep(value: Any) -> None:
                tensor = (value[0] if isinstance(value, (tuple, list)) else value).detach()
                if site.transform is not None:
                    tensor = site.transform(tensor)
                captured[layer] = tensor if reduce is None else reduce(layer, tensor)
                if layer == last:
                    raise _StopForward

            if side == "input":
                # Blocks may receive the residual stream as a keyword argument.
                return lambda module, args, kwargs: keep(args[0] if args else kwargs["hidden_states"])
            return lambda module, args, output: keep(output)

        try:
            for layer in layers:
                module, side = self.hook_point(site, layer)
                hook = make_hook(layer, side)
                handles.append(
                    module.register_forward_pre_hook(hook, with_kwargs=True) if side == "input"
                    else module.register_forward_hook(hook)
                )
            try:
                self.forward(input_ids.to(self.device), attention_mask.to(self.device))
            except _StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [layer for layer in layers if layer not in captured]
        if missing:
            raise RuntimeError(f"hooks for layers {missing} never fired; the adapter for {self.family} is wrong.")
        return captured

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise InputError(f"layer {layer} does not exist; {self.model_id} has layers 0..{self.n_layers - 1}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r}, layers={self.n_layers}, neurons={self.n_neurons})"
