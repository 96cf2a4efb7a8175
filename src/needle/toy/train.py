"""Train the toy causal LM: tokenizer, packed token blocks, AdamW with a cosine schedule, a wall-clock budget.

The run ends when any budget is spent: ``steps`` optimiser steps,
``max_minutes`` of wall-clock time or ``max_cpu_minutes`` of this process's CPU
time (the fair budget on a machine shared with other work). The learning rate follows a linear warm-up
then a cosine decay over the *progress* of the run, the larger of the step
fraction and the time fraction, so a time-bound run still anneals to its final
rate. A run bound by steps alone is deterministic for a given seed and thread
count; a time-bound run's number of steps depends on the machine's speed and load.

Every training and evaluation block of ``context_length`` tokens opens with
the BOS token (``<|endoftext|>``, id 0, Pythia's BOS/EOS) followed by
``context_length - 1`` tokens of the packed stream, as TransformerLens feeds
Pythia and GPT-2: an attention head always has a first token to rest on,
which the attention-deactivation analysis of Chapter 3 needs.

A tokenizer may be passed in (``tokenizer=``) instead of trained: models of a
seed family share one, so that every text is the same token stream in each
(:func:`needle.toy.seeds.train_seed_family`).

What is saved (atomically: the directory appears complete or not at all):
``config.json`` and ``model.safetensors`` (``save_pretrained``), the
tokenizer files, and ``training.json`` with the settings, the corpus sizes,
the steps and tokens seen, the loss curve, the final train and held-out loss
(overall and per source, in nats per token and bits per byte) and the times.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle.errors import InputError
from needle.toy.config import ToySize, gpt_neox_config
from needle.toy.corpus import TextUnit, ToyCorpus
from needle.toy.tokenizer import tokenizer_fingerprint, train_tokenizer

__all__ = ["DEFAULT_MAX_MINUTES", "TrainSettings", "TrainedToy", "initial_model", "train_toy_model"]

#: Default optimisation budget: with corpus gathering, tokenizer training,
#: evaluation and saving (about two minutes), a run ends within 20 minutes.
DEFAULT_MAX_MINUTES = 15.0
#: ``format`` of a toy model's training.json; ``overwrite`` replaces only a directory of this kind.
TOY_FORMAT = "needle-toy-training"


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings.

    Attributes
    ----------
    steps : int or None
        Most optimiser steps (None: bound by ``max_minutes`` only).
    max_minutes : float or None
        Most wall-clock minutes of optimisation.
    max_cpu_minutes : float or None
        Most CPU minutes of optimisation (this process, all threads). On a
        shared machine this gives the same compute as ``max_cpu_minutes / n``
        wall minutes on ``n`` idle cores, whatever the other load.
    batch_size : int
        Sequences of ``context_length`` tokens per step.
    learning_rate : float
        Peak rate, reached after ``warmup_steps``.
    min_lr_ratio : float
        Final rate as a share of the peak.
    warmup_steps : int
    weight_decay : float
        AdamW decay on matrices (not on biases, norms or embeddings).
    betas : tuple of float
    grad_clip : float
        Largest global gradient norm.
    vocab_size : int
        Tokenizer vocabulary.
    eval_blocks_per_source : int
        Blocks of ``context_length`` tokens per source in the held-out (and
        train-sample) evaluation.
    log_every : int
        Steps between loss-curve points.
    seed : int
    threads : int or None
        ``torch.set_num_threads`` (None: leave torch's default, which follows
        ``OMP_NUM_THREADS``).
    """

    steps: int | None = None
    max_minutes: float | None = DEFAULT_MAX_MINUTES
    max_cpu_minutes: float | None = None
    batch_size: int = 16
    learning_rate: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    vocab_size: int = 4096
    eval_blocks_per_source: int = 32
    log_every: int = 10
    seed: int = 0
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`InputError` for impossible settings."""
        if self.steps is None and self.max_minutes is None and self.max_cpu_minutes is None:
            raise InputError("give a budget: steps, max_minutes and/or max_cpu_minutes "
                             "(--steps / --minutes / --cpu-minutes).")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps must be at least 1, not {self.steps}.")
        for name in ("max_minutes", "max_cpu_minutes"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, not {getattr(self, name)}.")
        for name in ("batch_size", "eval_blocks_per_source", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive, not {self.learning_rate}.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise InputError(f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}.")
        if self.warmup_steps < 0 or self.weight_decay < 0 or not self.grad_clip > 0:
            raise InputError("warmup_steps and weight_decay must be >= 0 and grad_clip > 0.")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be at least 1, not {self.threads}.")


@dataclass
class TrainedToy:
    """What :func:`train_toy_model` made.

    Attributes
    ----------
    model : transformers.GPTNeoXForCausalLM
        In eval mode, on the CPU.
    tokenizer : transformers.PreTrainedTokenizerFast
    summary : dict
        The content of ``training.json``.
    path : Path
        Where it was saved.
    """

    model: Any
    tokenizer: Any
    summary: dict[str, Any]
    path: Path


def train_toy_model(
    out: str | os.PathLike,
    corpus: ToyCorpus,
    *,
    size: ToySize | None = None,
    settings: TrainSettings | None = None,
    tokenizer: Any = None,
    overwrite: bool = False,
    echo: Callable[[str], None] | None = print,
) -> TrainedToy:
    """Train a GPT-NeoX language model on ``corpus`` and save it in Hugging Face format under ``out``.

    Parameters
    ----------
    out : path-like
        Directory to write; loads with :func:`needle.models.load_model`.
    corpus : ToyCorpus
        Train and held-out units (see :func:`needle.toy.corpus.gather_corpus`).
    size : ToySize, optional
        Default ``ToySize()``.
    settings : TrainSettings, optional
        Default ``TrainSettings()`` (a 15-minute wall-clock budget).
    tokenizer : transformers.PreTrainedTokenizerFast, optional
        Use this tokenizer (with the toy's special tokens, e.g. from
        :func:`needle.toy.tokenizer.load_tokenizer_dir`) instead of training
        one on ``corpus.train``; ``settings.vocab_size`` is then ignored.
    overwrite : bool
        Replace an existing ``out``.
    echo : callable or None
        Receives progress lines (None: silent).

    Returns
    -------
    TrainedToy
        The model (eval mode), its tokenizer, the content of ``training.json``
        and the directory.

    Raises
    ------
    InputError
        ``out`` exists (without ``overwrite``) or cannot be written, the corpus
        has no training text or too little for one batch, or a bad setting.
    """
    import torch

    size = size if size is not None else ToySize()
    settings = settings if settings is not None else TrainSettings()
    size.check()
    settings.check()
    out = Path(out).expanduser()
    _check_writable(out, overwrite)
    if not corpus.train:
        raise InputError("the corpus has no training units; pass Python sources and/or UD treebanks.")
    say = echo or (lambda _: None)
    started = time.perf_counter()
    if settings.threads is not None:
        # Restored when training ends: a library call must not leave the process on fewer threads.
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
        try:
            return _train(out, corpus, size, settings, tokenizer, overwrite, say, started)
        finally:
            torch.set_num_threads(previous_threads)
    return _train(out, corpus, size, settings, tokenizer, overwrite, say, started)


def _train(out: Path, corpus: ToyCorpus, size: ToySize, settings: TrainSettings, tokenizer: Any,
           overwrite: bool, say: Callable[[str], None], started: float) -> TrainedToy:
    """The body of :func:`train_toy_model`, on checked arguments."""
    import torch

    from needle._io import atomic_directory, write_json_atomic
    from needle._version import __version__

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)

    shared_tokenizer = tokenizer is not None
    if not shared_tokenizer:
        tokenizer = train_tokenizer((u.text for u in corpus.train), settings.vocab_size)
    elif tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise InputError("the tokenizer passed in has no EOS or padding token; use one trained by needle toy train.")
    tokenizer_seconds = time.perf_counter() - started
    say(f"tokenizer: {len(tokenizer)} tokens ({'shared' if shared_tokenizer else 'trained'}, "
        f"{tokenizer_seconds:.1f} s)")
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    order = rng.permutation(len(corpus.train))
    train_ids = _token_stream([corpus.train[i] for i in order], tokenizer, eos)
    blocks = _blocks(train_ids, size.context_length, bos)
    if len(blocks) < 1:
        raise InputError(f"the training text makes {len(train_ids)} tokens, fewer than one block of "
                         f"{size.context_length} (BOS + {size.context_length - 1}); pass more text or a smaller "
                         "context_length.")
    train_eval = _eval_sets(corpus.train, tokenizer, size.context_length, settings.eval_blocks_per_source)
    heldout_eval = _eval_sets(corpus.heldout, tokenizer, size.context_length, settings.eval_blocks_per_source)
    byte_lengths = _token_byte_lengths(tokenizer)
    say(f"corpus: {len(train_ids):,} training tokens in {len(blocks):,} blocks of {size.context_length}; "
        f"held-out sources: {', '.join(heldout_eval) or 'none'}")

    model = initial_model(size, len(tokenizer), settings.seed, eos_token_id=eos,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=bos)
    n_params = sum(p.numel() for p in model.parameters())
    n_embedding = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    say(f"model: {n_params:,} parameters ({n_params - n_embedding:,} outside the embeddings), "
        f"{size.activation} MLP")
    initial_train = _evaluate(model, train_eval, byte_lengths)
    initial_heldout = _evaluate(model, heldout_eval, byte_lengths)

    optimizer = torch.optim.AdamW(_parameter_groups(model, settings.weight_decay), lr=settings.learning_rate,
                                  betas=settings.betas)
    budget_s = None if settings.max_minutes is None else settings.max_minutes * 60
    cpu_budget_s = None if settings.max_cpu_minutes is None else settings.max_cpu_minutes * 60
    curve: list[dict[str, float]] = []
    step = 0
    tokens_seen = 0
    epoch_order = rng.permutation(len(blocks))
    cursor = 0
    train_started = time.perf_counter()
    cpu_started = time.process_time()
    progress = 0.0
    model.train()
    while progress < 1:
        batch_index = []
        while len(batch_index) < settings.batch_size:
            if cursor == len(epoch_order):
                epoch_order, cursor = rng.permutation(len(blocks)), 0
            take = epoch_order[cursor: cursor + settings.batch_size - len(batch_index)]
            batch_index.extend(take.tolist())
            cursor += len(take)
        ids = torch.from_numpy(blocks[batch_index])
        lr = _learning_rate(settings, step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        step += 1
        tokens_seen += ids.numel()
        elapsed = time.perf_counter() - train_started
        cpu = time.process_time() - cpu_started
        progress = max(step / settings.steps if settings.steps else 0.0,
                       elapsed / budget_s if budget_s else 0.0,
                       cpu / cpu_budget_s if cpu_budget_s else 0.0)
        if step % settings.log_every == 0 or step == 1 or progress >= 1:
            curve.append({"step": step, "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2),
                          "loss": loss.item(), "lr": lr})
            if step % (settings.log_every * 10) == 0:
                say(f"step {step}: loss {loss.item():.3f}, {tokens_seen / elapsed:,.0f} tokens/s, "
                    f"{elapsed / 60:.1f} min ({cpu / 60:.1f} CPU min)")
    train_seconds = time.perf_counter() - train_started
    train_cpu_seconds = time.process_time() - cpu_started
    if settings.steps and step >= settings.steps:
        stopped_by = "steps"
    elif budget_s and train_seconds >= budget_s:
        stopped_by = "wall time"
    else:
        stopped_by = "cpu time"

    eval_started = time.perf_counter()
    final_train = _evaluate(model, train_eval, byte_lengths)
    final_heldout = _evaluate(model, heldout_eval, byte_lengths)
    eval_seconds = time.perf_counter() - eval_started
    say(f"trained {step} steps ({tokens_seen:,} tokens) in {train_seconds / 60:.1f} min; "
        f"train loss {final_train['all']['loss']:.3f}, held-out loss "
        f"{final_heldout['all']['loss'] if final_heldout else float('nan'):.3f}")

    tokenizer.model_max_length = size.context_length
    summary = {
        "format": TOY_FORMAT,
        "needle_version": __version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "architecture": "gpt_neox",
        "size": asdict(size),
        "settings": {**asdict(settings), "betas": list(settings.betas)},
        "n_parameters": n_params,
        "n_parameters_non_embedding": n_params - n_embedding,
        "vocab_size": len(tokenizer),
        "bos_token_id": bos,
        "tokenizer": {"sha256": tokenizer_fingerprint(tokenizer), "shared": shared_tokenizer},
        "corpus": {
            **corpus.params,
            "train_chars": corpus.chars("train"),
            "heldout_chars": corpus.chars("heldout"),
            "train_units": len(corpus.train),
            "heldout_units": {s: [u.name for u in corpus.heldout if u.source == s] for s in corpus.sources},
            "train_tokens": len(train_ids),
            "train_blocks": len(blocks),
        },
        "steps": step,
        "tokens_seen": tokens_seen,
        "epochs": tokens_seen / (len(blocks) * size.context_length),
        "stopped_by": stopped_by,
        "loss_curve": curve,
        "initial_train": initial_train,
        "initial_heldout": initial_heldout,
        "train": final_train,
        "heldout": final_heldout,
        "train_loss": final_train["all"]["loss"],
        "heldout_loss": final_heldout["all"]["loss"] if final_heldout else None,
        "seconds": {
            "tokenizer": round(tokenizer_seconds, 2),
            "training": round(train_seconds, 2),
            "training_cpu": round(train_cpu_seconds, 2),
            "evaluation": round(eval_seconds, 2),
            "total_before_saving": round(time.perf_counter() - started, 2),
        },
    }
    model.eval()
    with atomic_directory(out, overwrite=overwrite, kind=TOY_FORMAT) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(Path(tmp) / "training.json", summary)
    say(f"saved to {out}")
    return TrainedToy(model, tokenizer, summary, out)


def initial_model(size: ToySize, vocab_size: int, seed: int, *, eos_token_id: int = 0, pad_token_id: int = 1,
                  bos_token_id: int | None = None) -> Any:
    """The untrained model a run with ``seed`` starts from.

    The generator is reseeded here, right before the weights are drawn, so
    the initial weights depend on the seed and the size only: GELU, SoLU and
    ReLU models of one seed start from the same weights (problem 9.53), as
    none of the activations has parameters.

    Returns
    -------
    transformers.GPTNeoXForCausalLM
    """
    import torch
    from transformers import GPTNeoXForCausalLM

    config = gpt_neox_config(size, vocab_size, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    config.bos_token_id = eos_token_id if bos_token_id is None else bos_token_id
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config)


# ------------------------------------------------------------------------------------------ helpers


def _check_writable(out: Path, overwrite: bool) -> None:
    """Fail before training, not after it, when ``out`` cannot be written."""
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory; choose another --out.")
    if out.exists():
        from needle._io import check_replaceable

        check_replaceable(out, TOY_FORMAT)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"cannot write {out}: its directory {parent} is not writable ({exc.strerror}); "
                         "choose another --out.") from None


def _token_stream(units: list[TextUnit], tokenizer: Any, eos: int) -> np.ndarray:
    """The units' tokens, each unit followed by EOS; shape (n_tokens,), int64."""
    if not units:
        return np.zeros(0, np.int64)
    encoded = tokenizer([u.text for u in units], add_special_tokens=False, return_attention_mask=False,
                        verbose=False)["input_ids"]
    parts = []
    for ids in encoded:
        parts.append(np.asarray(ids, np.int64))
        parts.append(np.array([eos], np.int64))
    return np.concatenate(parts)


def _blocks(ids: np.ndarray, length: int, bos: int) -> np.ndarray:
    """Consecutive non-overlapping blocks, each BOS then ``length - 1`` stream tokens; shape (n_blocks, length).

    The tail that fills no block is dropped.
    """
    n = len(ids) // (length - 1)
    body = ids[: n * (length - 1)].reshape(n, length - 1)
    return np.concatenate([np.full((n, 1), bos, np.int64), body], axis=1)


def _eval_sets(units: list[TextUnit], tokenizer: Any, length: int, per_source: int) -> dict[str, np.ndarray]:
    """Up to ``per_source`` BOS-led blocks per source, spread evenly over its text; each (n_blocks, length)."""
    sets: dict[str, np.ndarray] = {}
    for source in sorted({u.source for u in units}):
        ids = _token_stream([u for u in units if u.source == source], tokenizer, tokenizer.eos_token_id)
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        blocks = _blocks(ids, length, bos)
        if len(blocks) == 0:
            continue
        if len(blocks) > per_source:
            blocks = blocks[np.linspace(0, len(blocks) - 1, per_source).round().astype(int)]
        sets[source] = blocks
    return sets


def _token_byte_lengths(tokenizer: Any) -> np.ndarray:
    """UTF-8 bytes each token stands for (a byte-level token's characters are bytes); specials count 1."""
    lengths = np.ones(len(tokenizer), np.int64)
    special = set(tokenizer.all_special_ids)
    for token, index in tokenizer.get_vocab().items():
        if index not in special:
            lengths[index] = len(token)
    return lengths


def _evaluate(model: Any, sets: dict[str, np.ndarray], byte_lengths: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean next-token loss per source and pooled over all: nats per token and bits per byte."""
    import torch
    import torch.nn.functional as F

    if not sets:
        return {}
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    total_nats = total_tokens = total_bytes = 0.0
    with torch.no_grad():
        for source, blocks in sets.items():
            nats = n_bytes = 0.0
            for start in range(0, len(blocks), 16):
                ids = torch.from_numpy(blocks[start: start + 16])
                logits = model(input_ids=ids).logits[:, :-1].float()
                targets = ids[:, 1:]
                losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
                nats += float(losses)
                n_bytes += float(byte_lengths[targets.numpy()].sum())
            n_tokens = blocks.shape[0] * (blocks.shape[1] - 1)
            results[source] = {"loss": nats / n_tokens, "bits_per_byte": nats / math.log(2) / n_bytes,
                               "tokens": n_tokens}
            total_nats += nats
            total_tokens += n_tokens
            total_bytes += n_bytes
    results["all"] = {"loss": total_nats / total_tokens, "bits_per_byte": total_nats / math.log(2) / total_bytes,
                      "tokens": int(total_tokens)}
    model.train(was_training)
    return results


def _parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    decay, no_decay = [], []
    for parameter in model.parameters():
        matrix = parameter.ndim >= 2 and id(parameter) not in embeddings
        (decay if matrix else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _learning_rate(settings: TrainSettings, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from the peak to ``min_lr_ratio`` over the progress."""
    warm = min(1.0, (step + 1) / settings.warmup_steps) if settings.warmup_steps else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return settings.learning_rate * warm * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine)
