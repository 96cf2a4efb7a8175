"""Small random-weight models of each supported family, and hand recomputation of their neurons.

The hand computations read the residual stream (``output_hidden_states``, or
the attention block's output where the MLP input depends on it) and apply the
layer norm and MLP input weights explicitly — they never call the hooked
module, so they check the adapters rather than repeat them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FAMILIES = ("gpt_neox", "gpt2", "llama", "bert")


def build_model(family: str, vocab_size: int, *, seed: int = 0, n_layers: int = 3):
    """A shrunk random-weight model of ``family`` (eval mode, float32)."""
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    if family == "gpt_neox":
        config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=128, rotary_pct=0.25,
                               bos_token_id=0, eos_token_id=0)
        model = GPTNeoXForCausalLM(config)
    elif family == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=n_layers, n_head=4, n_positions=128,
                            bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(config)
    elif family == "llama":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=48, max_position_embeddings=128,
                             bos_token_id=0, eos_token_id=0, pad_token_id=1)
        model = LlamaForCausalLM(config)
    elif family == "bert":
        config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=128, pad_token_id=1)
        model = BertModel(config, add_pooling_layer=False)
    else:
        raise ValueError(family)
    # Random init leaves biases at zero; give them values so a missing bias would show.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)
    return model.eval()


@torch.no_grad()
def hand_activations(adapter, ids: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """``pre``, ``post`` and ``resid`` of one unpadded sequence (shape (1, pos)) recomputed by hand."""
    family = adapter.family
    block = adapter.blocks[layer]
    attention_out = {}

    def keep(module, args, output):
        attention_out["value"] = output[0] if isinstance(output, tuple) else output

    attention = {"gpt_neox": "attention", "gpt2": "attn", "gated_mlp": "self_attn", "bert": "attention"}[family]
    handle = getattr(block, attention).register_forward_hook(keep)
    try:
        outputs = adapter.base(input_ids=ids, output_hidden_states=True)
    finally:
        handle.remove()
    hidden = outputs.hidden_states
    h_in = hidden[layer]
    if family == "gpt_neox":
        norm = block.post_attention_layernorm  # parallel residual: the MLP reads the layer's input
        x = F.layer_norm(h_in, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    elif family == "gpt2":
        norm = block.ln_2
        x = F.layer_norm(h_in + attention_out["value"], norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    elif family == "gated_mlp":
        norm = block.post_attention_layernorm
        mid = h_in + attention_out["value"]
        x = mid * torch.rsqrt(mid.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight
    else:  # bert: post-LN, the attention block's output (after its LayerNorm) is the MLP input
        x = attention_out["value"]
    pre = x @ adapter.w_in(layer) + adapter.b_in(layer)
    if family == "gpt_neox" or family == "bert":
        post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
    elif family == "gpt2":
        post = 0.5 * pre * (1 + torch.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre.pow(3))))
    else:
        post = pre * torch.sigmoid(pre) * (x @ adapter.w_up(layer))
    resid = hidden[layer + 1] if layer + 1 < len(adapter.blocks) or family == "bert" else None
    return {"pre": pre[0], "post": post[0], "resid": None if resid is None else resid[0]}
