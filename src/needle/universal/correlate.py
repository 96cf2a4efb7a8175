"""Every neuron of a reference model against every neuron of the other models, streamed, with a rotation baseline.

For reference neuron ``i`` (model ``a``, thesis Eq. 3.2–3.3) and each other
model ``m``:

* ``max_corr`` — ``max_j ρ(v_i, v_j)`` over every neuron ``j`` of every
  compared layer of ``m``, with the partner ``j``; ``min_corr`` likewise;
* ``baseline`` — ``max_j ρ(v_i, (R_l V_l)_j)``: the same maximum against a
  random rotation ``R_l`` of each layer ``l`` of ``m`` (Haar-orthogonal by
  default; ``baseline="gaussian"`` is the thesis's Gaussian matrix, which is
  not a rotation), i.e. against a basis with no privileged directions;
* the excess correlation ``ϱ_i = mean_m (max_corr − baseline)``.

The work is tiled over layer pairs ``(layer of a, model m, layer of m)``:
each tile accumulates one (d_a, d_m) float64 state
(:class:`~needle.universal.moments.CrossMoments`). Tiles are grouped into
*passes* whose states fit ``max_tile_bytes``; each pass streams the tokens
once, then reduces its tiles to the per-neuron summaries and frees them.
Memory therefore stays at the budget however many tokens are streamed, and
the full correlation matrices exist only one pass at a time (or on disk, with
``keep_correlations``). The rotated layer's variances are streamed in the
same pass (``V_l R_lᵀ`` per batch); its covariance with ``v_i`` is exact from
the tile at the end, ``C R_lᵀ``.

With a ``work_dir`` the run checkpoints (finished passes and the current
pass's states, every ``checkpoint_seconds``) and resumes where it stopped when
called again with the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from needle.errors import InputError
from needle.universal.moments import ColumnMoments, CrossMoments, shifted

__all__ = ["BASELINES", "Tile", "UniversalCorrelations", "correlate_activations", "correlate_models",
           "plan_passes", "random_basis"]

#: Baseline bases: Haar-random orthogonal, or the thesis's Gaussian matrix.
BASELINES = ("haar", "gaussian")

#: A block of activations: (model index, layer).
Block = tuple[int, int]


@dataclass(frozen=True, order=True)
class Tile:
    """One layer pair: ``layer_a`` of the reference model against ``layer`` of model ``model`` (index >= 1)."""

    model: int
    layer: int
    layer_a: int


def plan_passes(tiles: Sequence[Tile], tile_bytes: Mapping[Tile, int], max_tile_bytes: int) -> list[list[Tile]]:
    """Group ``tiles`` in order into passes of at most ``max_tile_bytes`` (at least one tile each)."""
    passes: list[list[Tile]] = []
    used = 0
    for tile in tiles:
        size = tile_bytes[tile]
        if not passes or used + size > max_tile_bytes:
            passes.append([])
            used = 0
        passes[-1].append(tile)
        used += size
    return passes


def random_basis(width: int, kind: str, seed: int) -> np.ndarray:
    """The baseline's (width, width) matrix ``R``; rotated activations are ``V Rᵀ``.

    ``haar``: QR of a Gaussian matrix with the signs of R's diagonal moved
    into Q — uniformly (Haar) distributed on the orthogonal group (Mezzadri
    2007). ``gaussian``: i.i.d. standard normal entries, the thesis's choice.
    """
    if kind not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, not {kind!r}.")
    gaussian = np.random.default_rng(seed).standard_normal((width, width))
    if kind == "gaussian":
        return gaussian
    # torch's QR shares the GEMMs' BLAS and threads (numpy's may fight them for the cores).
    q, r = torch.linalg.qr(torch.from_numpy(gaussian))
    return (q * torch.sign(torch.diagonal(r))).numpy()


# ------------------------------------------------------------------------------------------ summaries


@dataclass
class _Summary:
    """Per reference neuron and compared model: best / worst partner, baseline max, top-k; histograms."""

    n_other: int
    layers_a: list[int]
    width_a: int
    top_k: int
    bins: int
    best: np.ndarray = field(init=False)  # (n_other, La, d) float64
    best_layer: np.ndarray = field(init=False)
    best_index: np.ndarray = field(init=False)
    worst: np.ndarray = field(init=False)
    worst_layer: np.ndarray = field(init=False)
    worst_index: np.ndarray = field(init=False)
    baseline: np.ndarray = field(init=False)
    top: np.ndarray = field(init=False)  # (n_other, La, d, k)
    top_layer: np.ndarray = field(init=False)
    top_index: np.ndarray = field(init=False)
    hist: np.ndarray = field(init=False)  # (n_other, bins) pairs of neurons
    hist_baseline: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        shape = (self.n_other, len(self.layers_a), self.width_a)
        self.best = np.full(shape, -np.inf)
        self.worst = np.full(shape, np.inf)
        self.baseline = np.full(shape, -np.inf)
        self.best_layer, self.best_index = np.full(shape, -1), np.full(shape, -1)
        self.worst_layer, self.worst_index = np.full(shape, -1), np.full(shape, -1)
        self.top = np.full((*shape, self.top_k), -np.inf)
        self.top_layer, self.top_index = np.full((*shape, self.top_k), -1), np.full((*shape, self.top_k), -1)
        self.hist = np.zeros((self.n_other, self.bins), np.int64)
        self.hist_baseline = np.zeros((self.n_other, self.bins), np.int64)

    def add(self, tile: Tile, rho: torch.Tensor, rho_base: torch.Tensor) -> None:
        """Fold one tile's (d_a, d_m) correlations into the summaries."""
        m, la = tile.model - 1, self.layers_a.index(tile.layer_a)
        has_nan = bool(torch.isnan(rho).any() or torch.isnan(rho_base).any())
        hi = rho.nan_to_num(nan=-np.inf) if has_nan else rho
        lo = rho.nan_to_num(nan=np.inf) if has_nan else rho
        value, index = hi.max(1)
        value, index = value.cpu().double().numpy(), index.cpu().numpy()
        better = value > self.best[m, la]
        self.best[m, la][better] = value[better]
        self.best_layer[m, la][better] = tile.layer
        self.best_index[m, la][better] = index[better]
        value, index = lo.min(1)
        value, index = value.cpu().double().numpy(), index.cpu().numpy()
        worse = value < self.worst[m, la]
        self.worst[m, la][worse] = value[worse]
        self.worst_layer[m, la][worse] = tile.layer
        self.worst_index[m, la][worse] = index[worse]
        base = (rho_base.nan_to_num(nan=-np.inf) if has_nan else rho_base).max(1).values.cpu().double().numpy()
        self.baseline[m, la] = np.maximum(self.baseline[m, la], base)
        k = min(self.top_k, hi.shape[1])
        value, index = torch.topk(hi, k, dim=1)
        values = np.concatenate([self.top[m, la], value.cpu().double().numpy()], axis=1)
        layers = np.concatenate([self.top_layer[m, la], np.full(index.shape, tile.layer)], axis=1)
        indices = np.concatenate([self.top_index[m, la], index.cpu().numpy()], axis=1)
        # Stable sort, descending: equal correlations keep the earlier (lower layer, lower index) partner first.
        order = np.argsort(-values, axis=1, kind="stable")[:, : self.top_k]
        self.top[m, la] = np.take_along_axis(values, order, 1)
        self.top_layer[m, la] = np.take_along_axis(layers, order, 1)
        self.top_index[m, la] = np.take_along_axis(indices, order, 1)
        edges = torch.linspace(-1, 1, self.bins + 1, dtype=torch.float64, device=rho.device)
        for target, values_ in ((self.hist, rho), (self.hist_baseline, rho_base)):
            flat = values_.reshape(-1)
            flat = (flat[~torch.isnan(flat)] if has_nan else flat).clamp(-1, 1)
            target[m] += torch.bucketize(flat, edges[1:-1], right=True).bincount(minlength=self.bins).cpu().numpy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (
            "best", "best_layer", "best_index", "worst", "worst_layer", "worst_index", "baseline", "top",
            "top_layer", "top_index", "hist", "hist_baseline")}

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            setattr(self, name, np.array(value))


# --------------------------------------------------------------------------------------------- result


@dataclass
class UniversalCorrelations:
    """What :func:`correlate_activations` found, as tidy tables.

    Attributes
    ----------
    neurons : pandas.DataFrame
        One row per reference neuron: ``layer``, ``neuron``, ``id``,
        ``mean_max_corr``, ``mean_baseline``, ``excess`` (ϱ),
        ``max_max_corr``, ``min_max_corr``, ``max_minus_min``, and per model
        ``{name}_max_corr``, ``{name}_partner``, ``{name}_min_corr``,
        ``{name}_min_partner``, ``{name}_baseline``.
    partners : pandas.DataFrame
        Top-k partners: ``layer``, ``neuron``, ``model``, ``rank`` (0 = best),
        ``partner_layer``, ``partner_neuron``, ``partner``, ``corr``.
    histograms : pandas.DataFrame
        Pair counts by correlation: ``model``, ``kind`` (``neurons`` or
        ``baseline``), ``lo``, ``hi``, ``count``.
    layer_pairs : pandas.DataFrame
        Depth specialisation (Figure 3.2c): ``layer``, ``partner_layer``,
        ``fraction`` of the layer's neurons whose best partner is in that
        layer, averaged over the models.
    params : dict
        What made it: models, tokens, baseline, seed, passes.
    """

    neurons: Any
    partners: Any
    histograms: Any
    layer_pairs: Any
    params: dict

    def universal(self, threshold: float = 0.5) -> Any:
        """The neurons with excess correlation ϱ above ``threshold`` (the thesis uses 0.5)."""
        return self.neurons[self.neurons["excess"] > threshold]

    def by_layer(self, threshold: float = 0.5) -> Any:
        """Per layer: ``n_neurons``, ``n_universal`` (ϱ > ``threshold``), ``fraction`` and its binomial ``se``,
        the median ``excess`` and the mean ``mean_max_corr`` and ``mean_baseline``; a last row ``layer = -1`` for
        all layers together."""
        import pandas as pd

        rows = []
        groups = [(int(layer), part) for layer, part in self.neurons.groupby("layer")] + [(-1, self.neurons)]
        for layer, part in groups:
            n = len(part)
            k = int((part["excess"] > threshold).sum())
            p = k / n if n else float("nan")
            rows.append({"layer": layer, "n_neurons": n, "n_universal": k, "fraction": p,
                         "se": (p * (1 - p) / n) ** 0.5 if n else float("nan"),
                         "median_excess": float(part["excess"].median()),
                         "mean_max_corr": float(part["mean_max_corr"].mean()),
                         "mean_baseline": float(part["mean_baseline"].mean())})
        return pd.DataFrame(rows)

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the tables (Parquet) and ``manifest.json`` into the directory ``out``, atomically."""
        from needle._io import atomic_directory, write_json_atomic

        out = Path(out).expanduser()
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for name in ("neurons", "partners", "histograms", "layer_pairs"):
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            write_json_atomic(tmp / "manifest.json", {"format": "needle-universal-correlations", "format_version": 1,
                                                      **self.params})
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> UniversalCorrelations:
        """Read what :meth:`save` wrote."""
        import pandas as pd

        from needle._io import read_manifest

        path = Path(path).expanduser()
        params = read_manifest(path, "needle-universal-correlations", 1, "rerun needle universal correlate")
        tables = {name: pd.read_parquet(path / f"{name}.parquet")
                  for name in ("neurons", "partners", "histograms", "layer_pairs")}
        return cls(**tables, params=params)


def _tables(summary: _Summary, names: Sequence[str], layers: Mapping[int, list[int]], params: dict
            ) -> UniversalCorrelations:
    import pandas as pd

    from needle.neurons.ids import format_neuron_id

    def finite(a: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(a), a, np.nan)

    la_list, d = summary.layers_a, summary.width_a
    layer = np.repeat(la_list, d)
    neuron = np.tile(np.arange(d), len(la_list))
    best, worst, base = finite(summary.best), finite(summary.worst), finite(summary.baseline)
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731  (n_other, La * d)
    columns: dict[str, Any] = {"layer": layer, "neuron": neuron,
                               "id": [format_neuron_id(a, b) for a, b in zip(layer, neuron)]}
    columns["mean_max_corr"] = flat(best).mean(0)
    columns["mean_baseline"] = flat(base).mean(0)
    columns["excess"] = (flat(best) - flat(base)).mean(0)
    columns["max_max_corr"] = flat(best).max(0)
    columns["min_max_corr"] = flat(best).min(0)
    columns["max_minus_min"] = columns["max_max_corr"] - columns["min_max_corr"]
    for m, name in enumerate(names[1:]):
        columns[f"{name}_max_corr"] = flat(best)[m]
        columns[f"{name}_partner"] = [format_neuron_id(a, b) if b >= 0 else None for a, b in
                                      zip(flat(summary.best_layer)[m], flat(summary.best_index)[m])]
        columns[f"{name}_min_corr"] = flat(worst)[m]
        columns[f"{name}_min_partner"] = [format_neuron_id(a, b) if b >= 0 else None for a, b in
                                          zip(flat(summary.worst_layer)[m], flat(summary.worst_index)[m])]
        columns[f"{name}_baseline"] = flat(base)[m]
    neurons = pd.DataFrame(columns)

    k = summary.top.shape[-1]
    rows = []
    for m, name in enumerate(names[1:]):
        top = summary.top[m].reshape(-1, k)
        top_layer = summary.top_layer[m].reshape(-1, k)
        top_index = summary.top_index[m].reshape(-1, k)
        for rank in range(k):
            ok = top_index[:, rank] >= 0
            rows.append(pd.DataFrame({
                "layer": layer[ok], "neuron": neuron[ok], "model": name, "rank": rank,
                "partner_layer": top_layer[ok, rank], "partner_neuron": top_index[ok, rank],
                "partner": [format_neuron_id(a, b) for a, b in zip(top_layer[ok, rank], top_index[ok, rank])],
                "corr": finite(top[ok, rank])}))
    partners = pd.concat(rows, ignore_index=True).sort_values(["layer", "neuron", "model", "rank"],
                                                              ignore_index=True)

    edges = np.linspace(-1, 1, summary.bins + 1)
    hist_rows = []
    for m, name in enumerate(names[1:]):
        for kind, counts in (("neurons", summary.hist[m]), ("baseline", summary.hist_baseline[m])):
            hist_rows.append(pd.DataFrame({"model": name, "kind": kind, "lo": edges[:-1], "hi": edges[1:],
                                           "count": counts}))
    histograms = pd.concat(hist_rows, ignore_index=True)

    pair_rows = []
    all_partner_layers = sorted({lm for m in range(1, len(names)) for lm in layers[m]})
    for i, la in enumerate(la_list):
        for lm in all_partner_layers:
            share = (summary.best_layer[:, i, :] == lm).mean(1)  # per model
            pair_rows.append({"layer": la, "partner_layer": lm, "fraction": float(share.mean())})
    layer_pairs = pd.DataFrame(pair_rows)
    return UniversalCorrelations(neurons, partners, histograms, layer_pairs, params)


# ----------------------------------------------------------------------------------------------- engine


#: ``batches(blocks, start)`` yields one dict per batch, from batch ``start`` on: (model, layer) -> (n, width).
BatchSource = Callable[[Sequence[Block], int], Iterator[Mapping[Block, torch.Tensor]]]


def correlate_activations(
    batches: BatchSource,
    widths: Mapping[Block, int],
    *,
    names: Sequence[str],
    n_tokens: int | None = None,
    baseline: str = "haar",
    seed: int = 0,
    top_k: int = 5,
    bins: int = 200,
    max_tile_bytes: int = 1 << 30,
    device: torch.device | str = "cpu",
    work_dir: str | os.PathLike | None = None,
    fingerprint: str = "",
    checkpoint_seconds: float = 120.0,
    keep_correlations: str | os.PathLike | None = None,
    progress: bool = True,
    params: Mapping[str, Any] | None = None,
) -> UniversalCorrelations:
    """Correlate model 0's neurons with every other model's over a stream of activation batches.

    Parameters
    ----------
    batches : callable
        ``batches(blocks, start)`` yields, for each batch from index ``start``
        on, a dict from each requested ``(model, layer)`` block to its
        activations, a Tensor of shape (n_tokens_in_batch, width) — the same
        tokens for every block. It is called once per pass.
    widths : mapping of (model, layer) to int
        Every block to compare: model 0's are the reference neurons, the
        others are compared with them. All of model 0's layers must have one width.
    names : sequence of str
        A name per model (column prefixes in the tables).
    n_tokens : int, optional
        Tokens per pass, for the progress bar.
    baseline : {"haar", "gaussian"}
    seed : int
        Seeds the baseline's matrices (one per compared layer).
    top_k : int
        Partners kept per reference neuron and model.
    bins : int
        Histogram bins over [-1, 1].
    max_tile_bytes : int
        Most bytes of float64 tile states held at once (one pass).
    device : torch.device or str
        Where the states live and the GEMMs run.
    work_dir : path-like, optional
        Checkpoint directory (resumes a run with the same ``fingerprint``).
    fingerprint : str
        Identifies the inputs; a checkpoint made with another is refused.
    checkpoint_seconds : float
    keep_correlations : path-like, optional
        Also write every tile's full (d_a, d_m) correlation matrix, float32,
        as ``rho-m{model}-L{layer_a}-L{layer}.npy`` in this directory.
    progress : bool
    params : mapping, optional
        Recorded in the result's ``params``.

    Returns
    -------
    UniversalCorrelations
    """
    from tqdm.auto import tqdm

    from needle._io import atomic_file

    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}.")
    if top_k < 1 or bins < 1:
        raise InputError("top_k and bins must be at least 1.")
    n_models = len(names)
    if n_models < 2:
        raise InputError("correlating needs at least two models.")
    layers = {m: sorted(layer for (mm, layer) in widths if mm == m) for m in range(n_models)}
    if any(not layers[m] for m in range(n_models)):
        raise InputError("every model needs at least one layer to compare.")
    widths_a = {widths[(0, la)] for la in layers[0]}
    if len(widths_a) != 1:
        raise InputError(f"the reference model's layers must have one width, got {sorted(widths_a)}.")
    width_a = widths_a.pop()
    device = torch.device(device)
    tiles = [Tile(m, lm, la) for m in range(1, n_models) for lm in layers[m] for la in layers[0]]
    tile_bytes = {t: width_a * widths[(t.model, t.layer)] * 8 for t in tiles}
    passes = plan_passes(tiles, tile_bytes, max_tile_bytes)
    summary = _Summary(n_models - 1, layers[0], width_a, top_k, bins)
    rotations: dict[Block, torch.Tensor] = {}

    def rotation(block: Block) -> torch.Tensor:
        if block not in rotations:
            m, lm = block
            matrix = random_basis(widths[block], baseline, seed * 1_000_003 + m * 1009 + lm)
            rotations[block] = torch.from_numpy(matrix).float().to(device)
        return rotations[block]

    work = Path(work_dir).expanduser() if work_dir is not None else None
    checkpoint = work / "checkpoint.pt" if work is not None else None
    done_passes, resume = 0, None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved.get("fingerprint") != fingerprint or saved.get("passes") != [[tuple(vars(t).values()) for t in p]
                                                                              for p in passes]:
            raise InputError(f"{work} holds a checkpoint of a different run (other models, tokens or settings); "
                             "pass another work directory or delete it.")
        summary.load(saved["summary"])
        done_passes, resume = saved["done_passes"], saved.get("current")
    if keep_correlations is not None:
        Path(keep_correlations).expanduser().mkdir(parents=True, exist_ok=True)

    def save_checkpoint(pass_index: int, current: dict | None) -> None:
        if checkpoint is None:
            return
        work.mkdir(parents=True, exist_ok=True)
        with atomic_file(checkpoint) as handle:
            torch.save({"fingerprint": fingerprint, "passes": [[tuple(vars(t).values()) for t in p] for p in passes],
                        "summary": summary.arrays(), "done_passes": pass_index, "current": current}, handle)

    bar = tqdm(total=(n_tokens or 0) * len(passes) or None, unit="tok", unit_scale=True, disable=not progress,
               desc=f"correlate {len(tiles)} layer pairs in {len(passes)} pass(es)", smoothing=0.1)
    started = time.perf_counter()
    tokens_streamed = 0
    for pass_index in range(done_passes, len(passes)):
        pass_tiles = passes[pass_index]
        states = {t: CrossMoments(width_a, widths[(t.model, t.layer)], device) for t in pass_tiles}
        rotated = {(t.model, t.layer): ColumnMoments(widths[(t.model, t.layer)], device) for t in pass_tiles}
        shifts: dict[Block, torch.Tensor] = {}
        start = 0
        if resume is not None:
            states = {Tile(*key): CrossMoments.from_state(value) for key, value in resume["states"].items()}
            rotated = {tuple(key): ColumnMoments.from_state(value) for key, value in resume["rotated"].items()}
            shifts = {tuple(key): value for key, value in resume["shifts"].items()}
            start = resume["batch"]
            resume = None
        blocks = sorted({(0, t.layer_a) for t in pass_tiles} | {(t.model, t.layer) for t in pass_tiles})
        last_save = time.perf_counter()
        batch_index = start
        for batch in batches(blocks, start):
            n = None
            prepared = {}
            for block in blocks:
                acts = batch[block].to(device)
                if acts.ndim != 2 or acts.shape[1] != widths[block]:
                    raise InputError(f"block {block} should be (n, {widths[block]}), got {tuple(acts.shape)}.")
                n = acts.shape[0] if n is None else n
                if acts.shape[0] != n:
                    raise InputError("every block of a batch must hold the same tokens.")
                prepared[block] = shifted(acts, shifts.get(block))
                if not torch.isfinite(prepared[block].squares).all():  # a NaN or inf anywhere reaches the sums
                    raise InputError(f"activations of model {names[block[0]]} layer {block[1]} are not finite "
                                     "(NaN or inf); check the model and its dtype.")
                shifts.setdefault(block, prepared[block].shift)
            if not n:
                batch_index += 1
                continue
            for tile, state in states.items():
                state.update(prepared[(0, tile.layer_a)], prepared[(tile.model, tile.layer)])
            for block, moments in rotated.items():
                moments.update(prepared[block].rotate(rotation(block)))
            batch_index += 1
            tokens_streamed += n
            bar.update(n)
            if checkpoint is not None and time.perf_counter() - last_save > checkpoint_seconds:
                save_checkpoint(pass_index, {"batch": batch_index,
                                             "states": {tuple(vars(t).values()): s.state() for t, s in states.items()},
                                             "rotated": {k: v.state() for k, v in rotated.items()},
                                             "shifts": shifts})
                last_save = time.perf_counter()
        for tile, state in states.items():
            block = (tile.model, tile.layer)
            rho = state.correlation()
            cov_rot = state.comoment() @ rotation(block).T.double()
            scale = torch.sqrt(torch.outer(state.x.m2, rotated[block].m2))
            rho_base = torch.where(scale > 0, cov_rot / scale, torch.full_like(scale, float("nan")))
            summary.add(tile, rho, rho_base)
            if keep_correlations is not None:
                target = Path(keep_correlations).expanduser() / f"rho-m{tile.model}-L{tile.layer_a}-L{tile.layer}.npy"
                with atomic_file(target) as handle:
                    np.save(handle, rho.float().cpu().numpy())
        del states, rotated
        save_checkpoint(pass_index + 1, None)
    bar.close()
    seconds = time.perf_counter() - started
    if not np.isfinite(summary.best).any():
        raise InputError("no token was streamed (or every neuron is constant); give more text.")
    recorded = {"models": list(names), "baseline": baseline, "seed": seed, "top_k": top_k, "bins": bins,
                "layers": {names[m]: layers[m] for m in range(n_models)}, "n_passes": len(passes),
                "max_tile_bytes": max_tile_bytes, "device": str(device), "fingerprint": fingerprint,
                "seconds": round(seconds, 3), "tokens_streamed_this_run": tokens_streamed, **(params or {})}
    return _tables(summary, names, layers, recorded)


# ----------------------------------------------------------------------------------------- from models


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def correlate_models(
    models: Sequence[Any],
    sequences: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    site: str = "post",
    exclude_token_ids: Sequence[int] = (),
    skip_first: bool = True,
    pad_id: int = 0,
    batch_tokens: int = 8192,
    max_batch_size: int = 256,
    **options: Any,
) -> UniversalCorrelations:
    """Correlate the neurons of ``models[0]`` with those of the others over ``sequences``.

    Parameters
    ----------
    models : sequence of ModelAdapter
        Same tokenizer (the caller checks); the first is the reference. All on one device.
    sequences : sequence of ndarray of int
        Token ids, each a model input (starting with BOS if the models expect one).
    names : sequence of str, optional
        Default ``m0``, ``m1``…
    layers : sequence of int, optional
        Layers compared in every model (default: all of each).
    site : str
        Where the neurons are read (default the MLP neurons, ``mlp.hook_post``).
    exclude_token_ids : sequence of int
        Tokens left out of the statistics wherever they occur (padding is
        always left out; the thesis also leaves out newlines).
    skip_first : bool
        Leave out each sequence's first position (the BOS token).
    pad_id : int
    batch_tokens, max_batch_size : int
        Padded tokens and sequences per forward batch.
    **options
        Passed to :func:`correlate_activations` (``baseline``, ``seed``,
        ``top_k``, ``max_tile_bytes``, ``work_dir``, ``progress``…).

    Returns
    -------
    UniversalCorrelations
    """
    from needle.activations.stream import plan_batches, stream_batches

    if len(models) < 2:
        raise InputError("correlating needs at least two models.")
    names = list(names) if names is not None else [f"m{i}" for i in range(len(models))]
    if len(names) != len(models):
        raise InputError(f"got {len(names)} names for {len(models)} models.")
    sequences = [np.asarray(s, np.int64) for s in sequences if len(s)]
    if not sequences:
        raise InputError("no token sequences to stream; give some text.")
    device = models[0].device
    widths: dict[Block, int] = {}
    for m, model in enumerate(models):
        chosen = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
        for layer in chosen:
            if not 0 <= layer < model.n_layers:
                raise InputError(f"layer {layer} does not exist in {names[m]} (layers 0..{model.n_layers - 1}).")
            widths[(m, layer)] = model.site_width(site)
    lengths = np.array([len(s) for s in sequences])
    plan = plan_batches(lengths, np.arange(len(sequences)), batch_tokens, max_batch_size)
    excluded = torch.tensor(sorted(set(int(t) for t in exclude_token_ids)), dtype=torch.long)

    def keep_mask(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.bool()
        if skip_first:
            keep[:, 0] = False
        if len(excluded):
            keep &= ~torch.isin(ids, excluded)
        return keep

    n_tokens = 0
    for batch in stream_batches(sequences, None, plan, pad_id=pad_id):
        n_tokens += int(keep_mask(batch.input_ids, batch.attention_mask).sum())
    if n_tokens < 2:
        raise InputError(f"only {n_tokens} token(s) are left after leaving out BOS, padding and excluded tokens; "
                         "give more text.")

    def batches(blocks: Sequence[Block], start: int) -> Iterator[dict[Block, torch.Tensor]]:
        by_model: dict[int, list[int]] = {}
        for m, layer in blocks:
            by_model.setdefault(m, []).append(layer)
        for batch in stream_batches(sequences, None, plan, pad_id=pad_id, start=start):
            keep = keep_mask(batch.input_ids, batch.attention_mask).to(device)
            out: dict[Block, torch.Tensor] = {}
            for m, wanted in by_model.items():
                captured = models[m].capture(batch.input_ids, batch.attention_mask, wanted, site=site)
                for layer in wanted:
                    out[(m, layer)] = captured[layer][keep].float()
            yield out

    fingerprint = _fingerprint([model.weights_hash() for model in models], names, site, sorted(widths.items()),
                               list(exclude_token_ids), skip_first, batch_tokens, max_batch_size,
                               np.concatenate(sequences), lengths,
                               {k: v for k, v in options.items() if k not in ("progress", "work_dir")})
    params = {"site": site, "exclude_token_ids": sorted(set(int(t) for t in exclude_token_ids)),
              "skip_first": skip_first, "n_tokens": n_tokens, "n_sequences": len(sequences),
              "model_ids": [getattr(model, "model_id", "") for model in models],
              **options.pop("params", {})}
    options.setdefault("device", device)
    return correlate_activations(batches, widths, names=names, n_tokens=n_tokens, fingerprint=fingerprint,
                                 params=params, **options)
