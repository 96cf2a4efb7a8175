"""The one path from token sequences to padded model batches, shared by extraction and the neuron analyses.

Sequences are grouped longest first under a padded-token budget
(:func:`plan_batches`), padded on either side (:func:`pad_batch`) and
streamed (:func:`stream_batches`); :func:`check_model_inputs` refuses, before
any work, token ids the model cannot embed and sequences longer than its
positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from needle.errors import InputError, TokenizerMismatchError

__all__ = ["PaddedBatch", "plan_batches", "pad_batch", "stream_batches", "check_model_inputs"]


@dataclass(frozen=True)
class PaddedBatch:
    """One padded batch.

    Attributes
    ----------
    index : int
        Position of the batch in its plan.
    sequences : ndarray of int64, shape (batch,)
        Sequence ids of the rows.
    input_ids, attention_mask : Tensor of int64, shape (batch, pos)
    pad_left : ndarray of int64, shape (batch,)
        Padding positions before each row's first token (0 unless left-padded).
    """

    index: int
    sequences: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pad_left: np.ndarray


def plan_batches(lengths: np.ndarray, sequences: np.ndarray, batch_tokens: int, max_batch_size: int) -> list[np.ndarray]:
    """Group sequences into batches of at most ``batch_tokens`` padded tokens.

    Sequences are taken longest first (ties by id, for determinism), so each
    batch pads to its first sequence's length.

    Parameters
    ----------
    lengths : ndarray of int, shape (n_sequences_total,)
    sequences : ndarray of int
        The sequence ids to schedule.
    batch_tokens : int
        Padded tokens per batch (a longer sequence gets a batch of its own).
    max_batch_size : int

    Returns
    -------
    list of ndarray of int64
    """
    if batch_tokens < 1 or max_batch_size < 1:
        raise InputError("batch_tokens and max_batch_size must be positive.")
    order = sorted(np.asarray(sequences).tolist(), key=lambda s: (-int(lengths[s]), s))
    batches: list[list[int]] = []
    for seq in order:
        if batches:
            current = batches[-1]
            width = int(lengths[current[0]])
            if len(current) < max_batch_size and (len(current) + 1) * width <= batch_tokens:
                current.append(seq)
                continue
        batches.append([seq])
    return [np.asarray(batch, np.int64) for batch in batches]


def pad_batch(tokens: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, batch: np.ndarray, pad_id: int,
              side: str = "right") -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Pad the sequences ``batch`` of ``tokens`` to the longest of them.

    Parameters
    ----------
    tokens : sequence of ndarray of int, each of shape (length,)
    masks : sequence of ndarray, each of shape (length,), or None
        Attention mask of each sequence's tokens; None: every token is attended.
    batch : ndarray of int, shape (batch,)
    pad_id : int
    side : {"right", "left"}

    Returns
    -------
    input_ids, attention_mask : Tensor of int64, shape (batch, pos)
    pad_left : ndarray of int64, shape (batch,)
    """
    if side not in ("right", "left"):
        raise InputError(f"padding_side must be 'right' or 'left', not {side!r}.")
    lengths = [len(tokens[seq]) for seq in batch]
    width = max(lengths)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    pad_left = np.zeros(len(batch), np.int64)
    for i, (seq, n) in enumerate(zip(batch, lengths)):
        a = width - n if side == "left" else 0
        pad_left[i] = a
        ids[i, a : a + n] = torch.from_numpy(np.asarray(tokens[seq]).astype(np.int64))
        mask[i, a : a + n] = 1 if masks is None else torch.from_numpy(np.asarray(masks[seq]).astype(np.int64))
    return ids, mask, pad_left


def stream_batches(tokens: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, batches: Sequence[np.ndarray], *,
                   pad_id: int, side: str = "right", start: int = 0) -> Iterator[PaddedBatch]:
    """Padded batches of a plan (:func:`plan_batches`), from batch ``start`` on (to resume).

    Parameters
    ----------
    tokens, masks : as in :func:`pad_batch`
    batches : sequence of ndarray of int
    pad_id : int
    side : {"right", "left"}
    start : int, default 0

    Yields
    ------
    PaddedBatch
    """
    for index in range(start, len(batches)):
        ids, mask, pad_left = pad_batch(tokens, masks, batches[index], pad_id, side)
        yield PaddedBatch(index, batches[index], ids, mask, pad_left)


def check_model_inputs(model: Any, tokens: Sequence[np.ndarray], *, what: str, shorten: str,
                       vocab_error: type[Exception] = TokenizerMismatchError) -> None:
    """Refuse token ids ``model`` cannot embed and sequences longer than its positions.

    Parameters
    ----------
    model : ModelAdapter
    tokens : sequence of ndarray of int
    what : str
        What the sequences are, for the message (``"dataset"``, ``"corpus"``).
    shorten : str
        How to make the sequences shorter, for the message; ``{max}`` is replaced by the limit.
    vocab_error : exception class, default TokenizerMismatchError
    """
    vocab = model.model.get_input_embeddings().num_embeddings
    top = max(int(t.max()) for t in tokens)
    if top >= vocab:
        raise vocab_error(f"the {what} has token id {top} but {model.model_id} embeds only {vocab} ids; "
                          "was it tokenized with another model's tokenizer?")
    longest = max(len(t) for t in tokens)
    if model.max_positions and longest > model.max_positions:
        raise InputError(f"the {what} has a sequence of {longest} tokens but {model.model_id} takes at most "
                         f"{model.max_positions}; {shorten.format(max=model.max_positions)}.")
