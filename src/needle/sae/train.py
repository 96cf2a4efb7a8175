"""Training a sparse autoencoder on a matrix of activations, and the numbers that say how good it is.

needle's own trainer (``trainer="needle"``, the default) is small on purpose:

* **TopK** (Gao et al. 2024): keep the ``k`` largest pre-activations; the loss
  is the reconstruction's squared error over the data's variance (normalised
  MSE), plus ``1/32`` of the AuxK loss — the ``k_aux`` largest pre-activations
  of *dead* latents (none fired in the last ``dead_steps`` steps) fitted to the
  residual — which revives them.
* **standard** (ReLU + L1, Bricken et al. 2023): normalised MSE plus
  ``l1 · Σ_j z_j·‖W_dec[j]‖``.

Inputs are scaled to unit mean squared norm per column for training (so the
learning rate and L1 coefficient do not depend on the site's scale) and the
scale is folded back into the weights, so the saved SAE reads raw activations.
Decoder rows are renormalised to unit norm after every step. ``trainer="sae-lens"``
instead hands the same scaled rows to ``sae_lens.SAETrainer`` (which trains
from any iterator of activation batches, offline) and reads back what it saves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from needle.errors import InputError
from needle.sae.autoencoder import SparseAutoencoder

__all__ = ["train_sae", "evaluate_sae", "TRAINERS"]

TRAINERS = ("needle", "sae-lens")


def evaluate_sae(sae: SparseAutoencoder, acts: np.ndarray, *, batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction and sparsity of ``sae`` on ``acts`` (n, d_in), with standard errors over rows.

    Returns
    -------
    dict
        ``mse`` (mean squared error per element) and ``mse_se``;
        ``explained_variance`` ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` and its delta-method
        ``explained_variance_se``; ``l0`` (mean active latents per row) and ``l0_se``;
        ``dead_fraction`` (latents never active on ``acts``); ``n_rows``.
    """
    acts = np.asarray(acts, np.float32)
    if acts.ndim != 2 or acts.shape[1] != sae.d_in or len(acts) < 2:
        raise InputError(f"evaluate_sae needs a matrix of at least 2 rows × {sae.d_in} columns, got {acts.shape}.")
    mean = acts.mean(0, dtype=np.float64)
    err_rows, tot_rows, l0_rows = [], [], []
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    with torch.inference_mode():
        for a in range(0, len(acts), batch_size):
            x = torch.from_numpy(acts[a:a + batch_size])
            z = sae.encode(x)
            x_hat = sae.reconstruct(x)
            err_rows.append((x - x_hat).double().pow(2).sum(-1).numpy())
            tot_rows.append((x.double() - torch.from_numpy(mean)).pow(2).sum(-1).numpy())
            active = z > 0
            l0_rows.append(active.sum(-1).double().numpy())
            fired |= active.any(0)
    err, tot, l0 = (np.concatenate(v) for v in (err_rows, tot_rows, l0_rows))
    n = len(err)
    ratio = err.sum() / tot.sum()
    return {
        "mse": float(err.mean() / sae.d_in),
        "mse_se": float(err.std(ddof=1) / math.sqrt(n) / sae.d_in),
        "explained_variance": float(1 - ratio),
        "explained_variance_se": float(np.std(err - ratio * tot, ddof=1) / math.sqrt(n) / tot.mean()),
        "l0": float(l0.mean()),
        "l0_se": float(l0.std(ddof=1) / math.sqrt(n)),
        "dead_fraction": float(1 - fired.double().mean()),
        "n_rows": int(n),
    }


def train_sae(acts: np.ndarray, *, expansion: int = 8, width: int | None = None, architecture: str = "topk",
              k: int = 32, l1: float = 5.0, steps: int = 2000, batch_size: int = 1024, lr: float = 1e-3,
              eval_fraction: float = 0.1, seed: int = 0, dead_steps: int = 200, trainer: str = "needle",
              metadata: Mapping[str, Any] | None = None,
              callback: Callable[[int, float], None] | None = None) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Train an SAE on the rows of ``acts``; report its metrics on held-out rows.

    Parameters
    ----------
    acts : ndarray of shape (n_rows, d_in)
        One row per token position (see :mod:`needle.sae.stream`).
    expansion : int, default 8
        Latents per input dimension (ignored when ``width`` is given).
    width : int, optional
        Number of latents ``d_sae``.
    architecture : {"topk", "standard"}
    k : int, default 32
        Active latents per row (TopK).
    l1 : float, default 5.0
        Sparsity coefficient (standard).
    steps, batch_size, lr : int, int, float
        Adam steps over random minibatches; the learning rate decays linearly to 0 over the last 20 %.
    eval_fraction : float, default 0.1
        Rows held out (chosen with ``seed``) for the reported metrics.
    seed : int, default 0
    dead_steps : int, default 200
        A latent that fired in none of the last ``dead_steps`` steps is dead (AuxK).
    trainer : {"needle", "sae-lens"}
    metadata : mapping, optional
        Stored in the SAE (``hook_name``, ``model_name``…; SAELens's ``metadata``).
    callback : callable, optional
        ``callback(step, loss)`` every 50 steps.

    Returns
    -------
    (SparseAutoencoder, dict)
        The SAE (reading raw activations) and ``{"eval": evaluate_sae(held out), "train": evaluate_sae(train rows),
        "params": …, "seconds": …}``.
    """
    acts = np.asarray(acts, np.float32)
    if acts.ndim != 2:
        raise InputError(f"train_sae needs a (n_rows, d_in) matrix, got shape {acts.shape}.")
    if architecture not in ("topk", "standard"):
        raise InputError(f"architecture must be 'topk' or 'standard' (ReLU + L1), not {architecture!r}.")
    if trainer not in TRAINERS:
        raise InputError(f"trainer must be one of {', '.join(TRAINERS)}, not {trainer!r}.")
    n, d_in = acts.shape
    d_sae = int(width) if width is not None else int(expansion) * d_in
    if d_sae < 1 or steps < 1 or batch_size < 1 or not 0 < eval_fraction < 1:
        raise InputError("width/expansion, steps and batch_size must be positive and eval_fraction in (0, 1).")
    if architecture == "topk" and not 1 <= k <= d_sae:
        raise InputError(f"k must be between 1 and the width {d_sae}, got {k}.")
    n_eval = max(2, int(round(n * eval_fraction)))
    if n - n_eval < 2:
        raise InputError(f"{n} rows are too few to train and hold out {eval_fraction:.0%}; give more text.")
    order = np.random.default_rng(seed).permutation(n)
    train, held = acts[order[n_eval:]], acts[order[:n_eval]]
    # Unit mean squared entry: the learning rate and l1 mean the same at every site.
    scale = float(1.0 / math.sqrt(np.mean(np.square(train - train.mean(0)), dtype=np.float64)))
    params = {"architecture": architecture, "d_in": d_in, "d_sae": d_sae, "k": k if architecture == "topk" else None,
              "l1": l1 if architecture == "standard" else None, "steps": steps, "batch_size": batch_size, "lr": lr,
              "seed": seed, "dead_steps": dead_steps, "trainer": trainer, "n_train": len(train), "n_eval": len(held),
              "input_scale": scale}
    started = time.perf_counter()
    fit = _fit_needle if trainer == "needle" else _fit_sae_lens
    w_enc, b_enc, w_dec, b_dec = fit(train * scale, d_sae, architecture, k, l1, steps, batch_size, lr, seed,
                                     dead_steps, callback)
    # (x·s − b)·W = (x − b/s)·(s·W): the same latents from raw activations.
    meta = {**dict(metadata or {}), "trained_by": f"needle ({trainer} trainer)", "training": params}
    sae = SparseAutoencoder(w_enc * scale, b_enc, w_dec / scale, b_dec / scale, architecture=architecture,
                            k=k if architecture == "topk" else None, metadata=meta)
    seconds = time.perf_counter() - started
    return sae, {"eval": evaluate_sae(sae, held), "train": evaluate_sae(sae, train), "params": params,
                 "seconds": seconds}


def _schedule(lr: float, steps: int) -> Callable[[int], float]:
    decay_from = int(steps * 0.8)
    return lambda step: lr if step < decay_from else lr * (steps - step) / max(1, steps - decay_from)


def _fit_needle(x: np.ndarray, d_sae: int, architecture: str, k: int, l1: float, steps: int, batch_size: int,
                lr: float, seed: int, dead_steps: int, callback) -> tuple[np.ndarray, ...]:
    generator = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(np.ascontiguousarray(x))
    n, d_in = data.shape
    w_dec = torch.randn(d_sae, d_in, generator=generator)
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    w_enc = w_dec.T.clone().mul_(0.1 if architecture == "standard" else 1.0).requires_grad_(True)
    w_dec.requires_grad_(True)
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = data.mean(0).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=lr, betas=(0.9, 0.999))
    lr_at = _schedule(lr, steps)
    variance = float(data.var(0).sum())
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    k_aux = min(d_in // 2, d_sae)
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step)
        xb = data[torch.randint(n, (min(batch_size, n),), generator=generator)]
        pre = (xb - b_dec) @ w_enc + b_enc
        if architecture == "topk":
            values, indices = torch.topk(pre, k, dim=-1, sorted=False)
            values = torch.relu(values)
            x_hat = F.embedding_bag(indices, w_dec, per_sample_weights=values, mode="sum") + b_dec
            fired = torch.zeros(d_sae, dtype=torch.bool)
            fired[indices[values > 0]] = True
            err = xb - x_hat
            loss = err.pow(2).sum(-1).mean() / variance
            dead = since_fired >= dead_steps
            if bool(dead.any()):
                masked = pre.masked_fill(~dead, float("-inf"))
                a_values, a_indices = torch.topk(masked, min(k_aux, int(dead.sum())), dim=-1, sorted=False)
                e_hat = F.embedding_bag(a_indices, w_dec, per_sample_weights=torch.relu(a_values), mode="sum")
                residual = err.detach()
                aux = (residual - e_hat).pow(2).sum(-1).mean() / residual.pow(2).sum(-1).mean().clamp_min(1e-12)
                loss = loss + aux / 32
        else:
            z = torch.relu(pre)
            x_hat = z @ w_dec + b_dec
            fired = (z > 0).any(0)
            loss = (xb - x_hat).pow(2).sum(-1).mean() / variance + l1 * (z * w_dec.norm(dim=-1)).sum(-1).mean() / d_in
        since_fired = torch.where(fired, 0, since_fired + 1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if callback is not None and (step % 50 == 0 or step == steps - 1):
            callback(step, float(loss))
    return tuple(t.detach().numpy().copy() for t in (w_enc, b_enc, w_dec, b_dec))


def _fit_sae_lens(x: np.ndarray, d_sae: int, architecture: str, k: int, l1: float, steps: int, batch_size: int,
                  lr: float, seed: int, dead_steps: int, callback) -> tuple[np.ndarray, ...]:
    try:
        import sae_lens
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer
    except ImportError:
        raise InputError("trainer='sae-lens' needs sae-lens (pip install sae-lens); or use trainer='needle'.") from None
    torch.manual_seed(seed)
    d_in = x.shape[1]
    if architecture == "topk":
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    else:
        sae = sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae,
                                                                              l1_coefficient=l1))
    data = torch.from_numpy(np.ascontiguousarray(x))
    generator = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            yield data[torch.randint(len(data), (batch_size,), generator=generator)]

    config = SAETrainerConfig(total_training_samples=steps * batch_size, train_batch_size_samples=batch_size, lr=lr,
                              lr_end=0.0, lr_scheduler_name="constant", lr_decay_steps=int(steps * 0.2),
                              dead_feature_window=dead_steps, n_checkpoints=0, save_final_checkpoint=False,
                              device="cpu")
    trained = SAETrainer(config, sae, batches()).fit()
    import tempfile

    from needle.sae.saelens_format import load_sae

    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        loaded = load_sae(tmp)
    return tuple(t.numpy().copy() for t in (loaded.w_enc, loaded.b_enc, loaded.w_dec, loaded.b_dec))
