"""The Softmax Linear Unit, registered as a Hugging Face activation so that saved toy models load as usual.

SoLU (Elhage et al., 2022, "Softmax Linear Units") is ``x · softmax(x)`` over
a position's neurons, followed by a LayerNorm over the same neurons:

    mid  = x * softmax(x, dim=-1)               # what needle calls the neuron (site ``mlp.hook_post``)
    post = LayerNorm(mid)                        # what the MLP's output projection reads

The neuron is read after the softmax product and before the norm, as the
paper reads it: the norm mixes every neuron of the position, so its output is
no longer one neuron's own value. (TransformerLens names the two points
``hook_mid`` and ``hook_post``; needle's ``mlp.hook_post`` is the former.)

The norm here has no gain or bias of its own: a learned gain ``g`` and bias
``b`` would fold exactly into the output projection (``W_out · diag(g)`` and
``b_out + W_out b``), so the model class is the same and the activation stays
parameter-free, which lets ``config.hidden_act = "solu_ln"`` rebuild it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SOLU_ACTIVATION", "SoLU", "SoLULayerNorm", "register_activations", "solu_forward"]

#: ``config.hidden_act`` of a SoLU model.
SOLU_ACTIVATION = "solu_ln"
#: The norm's epsilon (Pythia's ``layer_norm_eps``).
SOLU_LN_EPS = 1e-5


def solu_forward(x: torch.Tensor) -> torch.Tensor:
    """``x · softmax(x)`` over the last dimension, in float32 for the softmax; shape kept."""
    return x * torch.softmax(x.float(), dim=-1).to(x.dtype)


class SoLU(nn.Module):
    """``x · softmax(x)``: its output is the neuron activation (hooked as ``mlp.hook_post``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return solu_forward(x)


class SoLULayerNorm(nn.Module):
    """SoLU then an affine-free LayerNorm over the neurons: (…, n_neurons) → (…, n_neurons)."""

    def __init__(self, eps: float = SOLU_LN_EPS):
        super().__init__()
        self.solu = SoLU()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.solu(x)
        return F.layer_norm(mid, mid.shape[-1:], eps=self.eps)


def register_activations() -> None:
    """Make ``hidden_act="solu_ln"`` known to ``transformers`` (idempotent).

    ``transformers`` builds every MLP's activation by looking its name up in
    ``transformers.activations.ACT2FN``; adding the name there is what lets
    ``from_pretrained`` rebuild a saved SoLU model. A plain ``transformers``
    session without needle fails loudly on the unknown name instead of
    silently using another activation.
    """
    from transformers.activations import ACT2FN

    if SOLU_ACTIVATION not in ACT2FN:
        ACT2FN[SOLU_ACTIVATION] = SoLULayerNorm
