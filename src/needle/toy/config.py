"""The toy model's architecture: Pythia's (GPT-NeoX), shrunk to train on two CPU cores."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from needle.errors import InputError

__all__ = ["ACTIVATIONS", "ToySize", "gpt_neox_config"]

#: ``--activation`` choice → ``config.hidden_act``. SoLU is ``x · softmax(x)`` then a LayerNorm
#: (:mod:`needle.models.solu`); its neurons are read before the norm.
ACTIVATIONS = {"gelu": "gelu", "solu": "solu_ln", "relu": "relu"}


@dataclass(frozen=True)
class ToySize:
    """How big the toy model is.

    The defaults (4 layers, width 128, 512 neurons per layer, 4 heads, 128
    positions; about 1.8 M parameters with a 4096-token vocabulary) train to a
    useful loss in about 15 minutes on two shared CPU cores.

    Attributes
    ----------
    hidden_size : int
        Residual stream width ``d_model``.
    n_layers : int
    n_heads : int
        Must divide ``hidden_size``.
    intermediate_size : int
        MLP neurons per layer (Pythia: ``4 * hidden_size``).
    context_length : int
        Training sequence length and ``max_position_embeddings``.
    activation : {"gelu", "solu", "relu"}
        The MLP nonlinearity (Pythia: GELU). The parameters are created in the
        same order whatever it is (SoLU's norm has none), so one seed gives
        every activation the same initial weights.
    """

    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 4
    intermediate_size: int = 512
    context_length: int = 128
    activation: str = "gelu"

    def check(self) -> None:
        """Raise :class:`InputError` for impossible sizes."""
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}.")
        for name, value in asdict(self).items():
            if name == "activation":
                continue
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, not {value!r}.")
        if self.hidden_size % self.n_heads:
            raise InputError(f"n_heads ({self.n_heads}) must divide hidden_size ({self.hidden_size}).")
        if self.context_length < 2:
            raise InputError("context_length must be at least 2 (a token and the next one).")


def gpt_neox_config(size: ToySize, vocab_size: int, *, eos_token_id: int = 0, pad_token_id: int = 1):
    """A ``GPTNeoXConfig`` with Pythia's choices at the toy's size.

    Pythia's choices: GELU MLP (or ``size.activation``), rotary embeddings on a quarter of each head's
    dimensions (base 10000), parallel attention and MLP residual
    (``use_parallel_residual``), untied input and output embeddings, biases
    everywhere, layer norm epsilon 1e-5, no dropout.

    Parameters
    ----------
    size : ToySize
    vocab_size : int
        Rows of the embedding and unembedding (the tokenizer's vocabulary).
    eos_token_id, pad_token_id : int
        Pythia's: 0 (``<|endoftext|>``, also BOS) and 1 (``<|padding|>``).

    Returns
    -------
    transformers.GPTNeoXConfig
    """
    from transformers import GPTNeoXConfig

    from needle.models.solu import register_activations

    size.check()
    register_activations()
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden_size,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        intermediate_size=size.intermediate_size,
        max_position_embeddings=size.context_length,
        hidden_act=ACTIVATIONS[size.activation],
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
