"""Adapters for the supported architecture families (see the table in DESIGN.md)."""

from __future__ import annotations

import torch
from torch import nn

from needle.models.base import ModelAdapter
from needle.models.solu import SOLU_ACTIVATION

__all__ = ["GPTNeoXAdapter", "GPT2Adapter", "GatedMLPAdapter", "BertAdapter", "ADAPTERS"]


def _inner(model: nn.Module, attribute: str) -> nn.Module:
    """The base transformer, whether ``model`` has a head (``model.<attribute>``) or is the base itself."""
    return getattr(model, attribute, model)


class GPTNeoXAdapter(ModelAdapter):
    """GPT-NeoX (Pythia): neuron = ``act(dense_h_to_4h(x))``, pre = ``dense_h_to_4h(x)``.

    With ``hidden_act="solu_ln"`` (needle's SoLU toy models, :mod:`needle.models.solu`)
    the MLP is ``dense_4h_to_h(LayerNorm(x · softmax(x)))`` and the neuron is
    ``x · softmax(x)``, read before the norm: ``mlp.hook_post`` is the output
    of ``mlp.act.solu``, not the input of ``dense_4h_to_h``. :meth:`w_out`
    then acts on the normed value, so a neuron's direct effect is only
    proportional to its activation within one position.
    """

    family = "gpt_neox"
    model_types = ("gpt_neox",)

    @property
    def base(self) -> nn.Module:
        return _inner(self.model, "gpt_neox")

    @property
    def blocks(self) -> nn.ModuleList:
        return self.base.layers

    def mlp_in(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.dense_h_to_4h

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.dense_4h_to_h

    def final_norm(self) -> nn.Module:
        return self.base.final_layer_norm

    @property
    def activation(self) -> str:
        """``config.hidden_act``: ``gelu`` (Pythia), ``relu`` or ``solu_ln``."""
        return str(getattr(self.config, "hidden_act", "gelu"))

    def neuron_point(self, layer: int) -> tuple[nn.Module, str]:
        if self.activation == SOLU_ACTIVATION:
            return self.blocks[layer].mlp.act.solu, "output"
        return super().neuron_point(layer)


class GPT2Adapter(ModelAdapter):
    """GPT-2: neuron = ``act(c_fc(x))``, pre = ``c_fc(x)`` (``Conv1D`` stores weights as (in, out))."""

    family = "gpt2"
    model_types = ("gpt2",)

    @property
    def base(self) -> nn.Module:
        return _inner(self.model, "transformer")

    @property
    def blocks(self) -> nn.ModuleList:
        return self.base.h

    def mlp_in(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.c_fc

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.c_proj

    def final_norm(self) -> nn.Module:
        return self.base.ln_f

    def _linear_weight_in_out(self, module: nn.Module) -> torch.Tensor:
        return module.weight.detach()


class GatedMLPAdapter(ModelAdapter):
    """Gated MLPs (Llama, Mistral, Gemma, Qwen): neuron = ``act(gate_proj(x)) * up_proj(x)``.

    The neuron is the input of ``down_proj``; the pre-activation is
    ``gate_proj(x)``, so :meth:`w_in` is the gate's weight and :meth:`w_up`
    the up projection's.
    """

    family = "gated_mlp"
    model_types = ("llama", "mistral", "gemma", "gemma2", "qwen2", "qwen3", "olmo", "olmo2")

    @property
    def base(self) -> nn.Module:
        return _inner(self.model, "model")

    @property
    def blocks(self) -> nn.ModuleList:
        return self.base.layers

    def mlp_in(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.gate_proj

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp.down_proj

    def w_up(self, layer: int) -> torch.Tensor:
        """Up-projection weights, shape (d_model, n_neurons)."""
        return self._linear_weight_in_out(self.blocks[layer].mlp.up_proj)

    def final_norm(self) -> nn.Module:
        return self.base.norm


class BertAdapter(ModelAdapter):
    """BERT encoders (BERT, MiniLM): neuron = ``intermediate(x)`` (dense + GELU), pre = ``intermediate.dense(x)``.

    BERT is post-LayerNorm: ``hook_resid_post`` is the layer's output after
    its final LayerNorm, which is what the next layer reads.
    """

    family = "bert"
    model_types = ("bert",)
    is_causal = False

    @property
    def base(self) -> nn.Module:
        return _inner(self.model, "bert")

    @property
    def blocks(self) -> nn.ModuleList:
        return self.base.encoder.layer

    def mlp_in(self, layer: int) -> nn.Module:
        return self.blocks[layer].intermediate.dense

    def mlp_out(self, layer: int) -> nn.Module:
        return self.blocks[layer].output.dense

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        # Encoders take no use_cache; positions count from the first real token.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


ADAPTERS: tuple[type[ModelAdapter], ...] = (GPTNeoXAdapter, GPT2Adapter, GatedMLPAdapter, BertAdapter)
