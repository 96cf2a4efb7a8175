"""needle's streaming neuron correlations against the paper's procedure and numpy.corrcoef, side by side.

All three sides correlate every neuron of model 0 with every neuron of models
1..M-1 over the same activations, held in memory once (n tokens × every
layer of every model, float32), so that no model forward pass is timed:

* **needle** — :func:`needle.universal.correlate.correlate_activations`:
  shifted float32 GEMMs into float64 tiles, tiled over layer pairs under
  ``--tile-mb``, reduced to per-neuron summaries; the Haar baseline in the
  same pass (its extra GEMMs are included in needle's time);
* **paper** — the thesis's procedure (B.2.2; the universal-neurons code):
  per model pair a full float64 ``Σxyᵀ`` array of (L·d)² on the CPU plus
  ``Σx``, ``Σx²``, accumulated batch by batch from float64 copies, then
  ``(Σxy − n x̄ȳ) / (σx σy)``; no baseline;
* **numpy** — ``numpy.corrcoef`` of the stacked float64 activations per pair,
  the reference for |Δρ|.

Reported per side: tokens/s, peak resident memory above the loaded
activations (``VmHWM`` after resetting it), and max |Δρ| against numpy over
every neuron pair (needle's full matrices are written by
``keep_correlations``, outside the timed run) and over each neuron's max
correlation. needle's rate is also given in GFLOP/s of its cross-product
GEMMs, as a fraction of this machine's fp32 GEMM rate measured here at the
tile's shape.

Activations: ``--source toy`` runs random-weight GPT-NeoX models of the toy
size (4 layers × 512 neurons) over random tokens; ``--source gpt2-small``
draws correlated Gaussian activations at GPT-2 small's width (3072 per layer,
``--layers`` of them) for scale, where the paper's array is (L·3072)² × 8 bytes.

    python benchmarks/correlate.py --source toy --models 3 --tokens 16384
    python benchmarks/correlate.py --source gpt2-small --layers 2 --models 2 --tokens 8192 --skip numpy
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MiB
    return float("nan")


def gemm_rate(p: int, n: int, q: int, repeats: int = 5, dtype: str = "float32") -> tuple[float, float]:
    """Best-of GEMM rates (GFLOP per wall second, per CPU second) at (p × n) @ (n × q), the tile's shape.

    float32 through torch (needle's GEMMs), float64 through numpy (the paper's).
    """
    if dtype == "float32":
        a, b = torch.randn(p, n), torch.randn(n, q)
    else:
        a, b = np.random.default_rng(0).standard_normal((p, n)), np.random.default_rng(1).standard_normal((n, q))
    a @ b
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        a @ b
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - cpu_start)
    flops = 2 * p * n * q / 1e9
    return flops / wall, flops / max(cpu, 1e-9)


def toy_activations(n_models: int, n_tokens: int, seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    from transformers import GPTNeoXForCausalLM

    from needle.models import adapt
    from needle.toy import ToySize, gpt_neox_config

    size = ToySize()
    acts: dict[tuple[int, int], list[np.ndarray]] = {}
    ids = torch.from_numpy(np.random.default_rng(seed).integers(2, 4096, (n_tokens // 128 + 1, 128)))
    ids[:, 0] = 0
    for m in range(n_models):
        torch.manual_seed(seed + m)
        model = adapt(GPTNeoXForCausalLM(gpt_neox_config(size, 4096)).eval())
        for start in range(0, len(ids), 16):
            batch = ids[start:start + 16]
            captured = model.capture(batch, torch.ones_like(batch), list(range(size.n_layers)))
            for layer, value in captured.items():
                acts.setdefault((m, layer), []).append(value.reshape(-1, value.shape[-1]).numpy())
    return {k: np.concatenate(v)[:n_tokens] for k, v in acts.items()}


def gaussian_activations(n_models: int, n_layers: int, width: int, n_tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    latent = 64
    z = rng.standard_normal((n_tokens, latent), dtype=np.float32)
    acts = {}
    for m in range(n_models):
        for layer in range(n_layers):
            mixing = (rng.standard_normal((latent, width), dtype=np.float32) *
                      (rng.random((latent, width)) < 0.05))
            acts[(m, layer)] = z @ mixing + rng.standard_normal((n_tokens, width), dtype=np.float32) + 3.0
    return acts


def stacked(acts, m):
    layers = sorted(layer for (mm, layer) in acts if mm == m)
    return np.concatenate([acts[(m, layer)] for layer in layers], 1)


def run_needle(acts, batch, tile_bytes, keep=None):
    from needle.universal.correlate import correlate_activations

    n = len(next(iter(acts.values())))

    def batches(blocks, start):
        for first in range(start * batch, n, batch):
            yield {b: torch.from_numpy(acts[b][first:first + batch]) for b in blocks}

    widths = {b: a.shape[1] for b, a in acts.items()}
    names = [f"m{m}" for m in range(1 + max(m for m, _ in acts))]
    return correlate_activations(batches, widths, names=names, n_tokens=n, max_tile_bytes=tile_bytes,
                                 progress=False, keep_correlations=keep)


def run_paper(acts, batch):
    """The thesis's accumulation: full float64 arrays per model pair, raw sums, combined at the end."""
    a = stacked(acts, 0)
    n_models = 1 + max(m for m, _ in acts)
    out = {}
    for m in range(1, n_models):
        b = stacked(acts, m)
        sxy = np.zeros((a.shape[1], b.shape[1]))
        sx, sy = np.zeros(a.shape[1]), np.zeros(b.shape[1])
        sxx, syy = np.zeros(a.shape[1]), np.zeros(b.shape[1])
        for first in range(0, len(a), batch):
            x, y = a[first:first + batch].astype(np.float64), b[first:first + batch].astype(np.float64)
            sxy += x.T @ y
            sx += x.sum(0)
            sy += y.sum(0)
            sxx += (x * x).sum(0)
            syy += (y * y).sum(0)
        n = len(a)
        cov = sxy - np.outer(sx, sy) / n
        out[m] = cov / np.sqrt(np.outer(sxx - sx ** 2 / n, syy - sy ** 2 / n))
        del sxy, cov
    return out


def run_numpy(acts):
    a = stacked(acts, 0).astype(np.float64)
    n_models = 1 + max(m for m, _ in acts)
    out = {}
    for m in range(1, n_models):
        b = stacked(acts, m).astype(np.float64)
        out[m] = np.corrcoef(a, b, rowvar=False)[: a.shape[1], a.shape[1]:]
    return out


def needle_full(keep_dir, acts):
    n_models = 1 + max(m for m, _ in acts)
    layers = sorted(layer for (mm, layer) in acts if mm == 0)
    out = {}
    for m in range(1, n_models):
        rows = []
        for la in layers:
            rows.append(np.concatenate([np.load(Path(keep_dir) / f"rho-m{m}-L{la}-L{lm}.npy") for lm in layers], 1))
        out[m] = np.concatenate(rows, 0)
    return out


def timed(label, fn):
    gc.collect()
    _rss_reset()
    before = _rss("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _rss("VmHWM") - before
    return label, result, (seconds, cpu), peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("toy", "gpt2-small"), default="toy")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="layers per model for --source gpt2-small")
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=4096, help="tokens per accumulation batch")
    parser.add_argument("--tile-mb", type=float, default=1024.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip", action="append", default=[], choices=("paper", "numpy"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.source == "toy":
        acts = toy_activations(args.models, args.tokens)
    else:
        acts = gaussian_activations(args.models, args.layers, 3072, args.tokens)
    n = len(next(iter(acts.values())))
    d = acts[(0, 0)].shape[1]
    width_a = stacked(acts, 0).shape[1]
    width_others = sum(a.shape[1] for (m, _), a in acts.items() if m > 0)
    print(f"{args.source}: {args.models} models, {width_a} neurons each, {n:,} tokens; threads "
          f"{torch.get_num_threads()}")
    print(f"paper's float64 array per model pair: {width_a * width_a * 8 / 2**20:,.0f} MiB "
          f"(GPT-2 small, 12 x 3072: {(12 * 3072) ** 2 * 8 / 2**30:.1f} GiB)")
    rate, rate_cpu = gemm_rate(d, args.batch, d)
    rate64, rate64_cpu = gemm_rate(d, args.batch, d, dtype="float64")
    print(f"GEMM at ({d} x {args.batch}) @ ({args.batch} x {d}): fp32 (torch) {rate:,.1f} GFLOP/s wall, "
          f"{rate_cpu:,.1f} per CPU-s; fp64 (numpy) {rate64:,.1f} wall, {rate64_cpu:,.1f} per CPU-s")

    rows = []
    label, result, seconds, peak = timed("needle", lambda: run_needle(acts, args.batch, int(args.tile_mb * 2**20)))
    flops = 2 * n * width_a * width_others
    rows.append((label, seconds, peak, result))
    with tempfile.TemporaryDirectory() as keep:
        run_needle(acts, args.batch, int(args.tile_mb * 2**20), keep=keep)
        full = {"needle": needle_full(keep, acts)}
    references = {}
    if "paper" not in args.skip:
        label, result, seconds, peak = timed("paper", lambda: run_paper(acts, args.batch))
        rows.append((label, seconds, peak, result))
        full["paper"] = result
    if "numpy" not in args.skip:
        label, result, seconds, peak = timed("numpy", lambda: run_numpy(acts))
        rows.append((label, seconds, peak, result))
        references = result
    if not references and "paper" in full:
        references = full["paper"]
        print("(|Δρ| against the paper's float64 procedure: numpy skipped)")

    print()
    print("| side | tokens/s (wall) | tokens per CPU-s | peak MiB above the activations | max |Δρ| all pairs "
          "| max |Δ max ρ| |")
    print("|---|---|---|---|---|---|")
    for label, (seconds, cpu), peak, _ in rows:
        if references:
            delta = max(np.nanmax(np.abs(full.get(label, references)[m] - references[m])) for m in references)
            delta_max = max(np.nanmax(np.abs(np.nanmax(full.get(label, references)[m], 1) -
                                             np.nanmax(references[m], 1))) for m in references)
            deltas = f"{delta:.2e} | {delta_max:.2e}" if label in full else "— | —"
        else:
            deltas = "— | —"
        print(f"| {label} | {n / seconds:,.0f} | {n / cpu:,.0f} | {peak:,.0f} | {deltas} |")
    needle_seconds, needle_cpu = rows[0][1]
    print()
    print(f"needle: {flops / needle_seconds / 1e9:,.1f} GFLOP/s of cross-product GEMMs wall "
          f"({flops / needle_seconds / 1e9 / rate:.0%} of the fp32 GEMM rate), {flops / needle_cpu / 1e9:,.1f} "
          f"per CPU-s ({flops / needle_cpu / 1e9 / rate_cpu:.0%}); {rows[0][3].params['n_passes']} pass(es) under "
          f"{args.tile_mb:g} MiB")
    for label, (seconds, cpu), _, _ in rows[1:]:
        print(f"{label} / needle: {seconds / needle_seconds:.2f}x wall, {cpu / rows[0][1][1]:.2f}x CPU")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
