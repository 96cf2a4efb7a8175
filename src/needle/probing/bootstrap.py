"""Confidence intervals of test metrics by bootstrap over test **groups** (documents), for a batch of probes at once.

Examples of one document are not independent (the words of a sentence share its context), so resampling
examples would understate the uncertainty. :class:`GroupBootstrap` draws ``n_boot`` resamples of the test
groups with replacement (each resample draws as many groups as there are, uniformly) and evaluates every probe
on every resample through per-group tallies: a resample is a vector of group multiplicities ``c`` of shape
(n_groups,), and a count such as true positives is ``c @ tp_per_group``. Only the AUC needs more: with
``M[g, h]`` the Mann-Whitney sum over positives of group ``g`` and negatives of group ``h`` (ties ½), a
resample's AUC is ``c @ M @ c / (P_c N_c)``. Every replicate therefore equals the metric recomputed on the
concatenated examples of the drawn groups (checked by brute force in the tests), and one seed gives the same
resamples to every probe of a feature, so two probes' replicates are paired (:func:`paired_difference`).

Intervals are percentile intervals of the replicates; a replicate where a metric is undefined (AUC of a resample
without positives, R² with constant targets) is left out of that metric's quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from needle.errors import InputError

__all__ = [
    "CI_METRICS",
    "CI_COLUMNS",
    "DEFAULT_N_BOOT",
    "DEFAULT_LEVEL",
    "GroupBootstrap",
    "draw_group_indices",
    "percentile_interval",
    "paired_difference",
]

#: The metrics that get an interval, per task (the headline metric first).
CI_METRICS = {"binary": ("f1", "precision", "recall", "roc_auc"), "multiclass": ("f1_macro", "accuracy"),
              "regression": ("r2",)}
#: Result columns holding the intervals: ``{metric}_lo`` and ``{metric}_hi``.
CI_COLUMNS = tuple(f"{m}_{side}" for m in dict.fromkeys(m for ms in CI_METRICS.values() for m in ms)
                   for side in ("lo", "hi"))
#: Resamples drawn by a sweep unless told otherwise.
DEFAULT_N_BOOT = 1000
#: Coverage of the intervals.
DEFAULT_LEVEL = 0.95
# Bound on the (negatives x groups) cumulative-count block built for the AUC, in float64 entries (~64 MB).
_AUC_BLOCK = 8_000_000


def draw_group_indices(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """The groups drawn by each resample: ndarray of shape (n_boot, n_groups), int64, values in [0, n_groups).

    ``numpy.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))``: documented so that an
    independent computation can draw the very same resamples.
    """
    return np.random.default_rng(seed).integers(0, n_groups, size=(int(n_boot), int(n_groups)))


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along the last axis, NaN replicates left out.

    Parameters
    ----------
    replicates : ndarray of shape (..., n_boot)
    level : float, default 0.95

    Returns
    -------
    lo, hi : ndarray of shape (...)
        NaN where every replicate is NaN.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    alpha = (1.0 - float(level)) / 2.0
    lo = np.full(replicates.shape[:-1], np.nan)
    hi = lo.copy()
    ok = np.isfinite(replicates).any(axis=-1)
    if ok.any():
        q = np.nanquantile(replicates[ok], [alpha, 1.0 - alpha], axis=-1)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


def paired_difference(a: np.ndarray, b: np.ndarray, *, level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """Compare two probes' replicates drawn from the **same** resamples.

    Parameters
    ----------
    a, b : ndarray of shape (n_boot,)
        Replicates of one metric for probes A and B on the same group resamples.
    level : float, default 0.95

    Returns
    -------
    dict
        ``diff_lo, diff_hi``: percentile interval of ``b - a``; ``p_value``: two-sided bootstrap p-value of
        "no difference", ``min(1, 2 min(P(d <= 0), P(d >= 0)))`` over the replicates where both are defined,
        never below ``1 / n_boot`` (its resolution: 0 would claim more than the resamples show); ``n_boot``:
        those replicates.
    """
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not d.size:
        return {"diff_lo": np.nan, "diff_hi": np.nan, "p_value": np.nan, "n_boot": 0}
    lo, hi = percentile_interval(d, level)
    p = min(1.0, max(2.0 * min(np.mean(d <= 0), np.mean(d >= 0)), 1.0 / d.size))
    return {"diff_lo": float(lo), "diff_hi": float(hi), "p_value": float(p), "n_boot": int(d.size)}


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass(frozen=True)
class GroupBootstrap:
    """Resamples of a test split's groups, and the metrics of a batch of probes on each.

    Build with :meth:`draw`. Attributes: ``codes`` (ndarray of shape (n_examples,), the group of every test
    example as 0..n_groups-1), ``counts`` (ndarray of shape (n_boot, n_groups), float64: how often each group
    is drawn by each resample).
    """

    codes: np.ndarray
    counts: np.ndarray

    @classmethod
    def draw(cls, groups, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> GroupBootstrap:
        """Draw ``n_boot`` resamples of the distinct values of ``groups`` (ndarray of shape (n_examples,)).

        Groups are numbered in sorted order, so the resamples depend only on the set of groups and the seed.
        """
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
            raise InputError(f"bootstrap needs an integer number of resamples >= 1, got {n_boot!r}.")
        _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        codes = codes.ravel().astype(np.int64)
        n_groups = int(codes.max()) + 1 if codes.size else 0
        if n_groups == 0:
            raise InputError("bootstrap over groups needs at least one test example.")
        idx = draw_group_indices(n_groups, n_boot, seed)
        offsets = (np.arange(n_boot)[:, None] * n_groups + idx).ravel()
        counts = np.bincount(offsets, minlength=n_boot * n_groups).reshape(n_boot, n_groups).astype(np.float64)
        return cls(codes, counts)

    @property
    def n_groups(self) -> int:
        return self.counts.shape[1]

    @property
    def n_boot(self) -> int:
        return self.counts.shape[0]

    def _tally(self, values: np.ndarray) -> np.ndarray:
        """Per-group sums of ``values`` (shape (..., n_examples)) -> (..., n_groups)."""
        values = np.asarray(values, dtype=np.float64)
        flat = values.reshape(-1, values.shape[-1])
        G = self.n_groups
        index = (np.arange(flat.shape[0])[:, None] * G + self.codes[None, :]).ravel()
        sums = np.bincount(index, weights=flat.ravel(), minlength=flat.shape[0] * G)
        return sums.reshape(values.shape[:-1] + (G,))

    # ------------------------------------------------------------------ replicates per task
    def replicates(self, task: str, y_true: np.ndarray, scores: np.ndarray, *,
                   metrics=None) -> dict[str, np.ndarray]:
        """The metrics of :data:`CI_METRICS` ``[task]`` of every probe on every resample.

        Parameters
        ----------
        task : str
            ``binary``, ``multiclass`` or ``regression``.
        y_true : ndarray of shape (n_examples,)
        scores : ndarray of shape (n_probes, n_examples), or (n_probes, n_examples, n_classes) for multiclass
            As for :func:`needle.probing.metrics.metrics_batch`.
        metrics : sequence of str, optional
            A subset of ``CI_METRICS[task]`` (default: all of them).

        Returns
        -------
        dict of str to ndarray of shape (n_probes, n_boot)
        """
        known = CI_METRICS.get(task, ())
        wanted = tuple(known if metrics is None else metrics)
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise InputError(f"no bootstrap for {unknown} of a {task} probe; it has {', '.join(known) or 'none'}.")
        if np.shape(y_true)[0] != self.codes.size:
            raise InputError(f"{np.shape(y_true)[0]} labels but the bootstrap was drawn for {self.codes.size} "
                             "test examples.")
        if task == "binary":
            out = self._binary(y_true, scores, auc="roc_auc" in wanted)
        elif task == "multiclass":
            out = self._multiclass(y_true, scores)
        else:
            out = self._regression(y_true, scores)
        return {m: out[m] for m in wanted}

    def intervals(self, task: str, y_true: np.ndarray, scores: np.ndarray,
                  level: float = DEFAULT_LEVEL, metrics=None) -> dict[str, np.ndarray]:
        """Percentile intervals: ``{metric}_lo`` and ``{metric}_hi``, each ndarray of shape (n_probes,)."""
        out = {}
        for name, reps in self.replicates(task, y_true, scores, metrics=metrics).items():
            out[f"{name}_lo"], out[f"{name}_hi"] = percentile_interval(reps, level)
        return out

    def _binary(self, y_true, scores, auc=True) -> dict[str, np.ndarray]:
        y = np.asarray(y_true).ravel().astype(bool)
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        pred = scores > 0
        C = self.counts
        tp = self._tally(pred & y) @ C.T  # (n_probes, n_boot)
        fp = self._tally(pred & ~y) @ C.T
        pos = C @ self._tally(y)  # (n_boot,)
        fn = pos - tp
        return {"f1": _divide(2 * tp, 2 * tp + fp + fn), "precision": _divide(tp, tp + fp),
                "recall": _divide(tp, np.broadcast_to(pos, tp.shape)), "roc_auc": self._auc(y, scores, pos) if auc else None}

    def _auc(self, y: np.ndarray, scores: np.ndarray, pos: np.ndarray) -> np.ndarray:
        C = self.counts
        neg = C @ self._tally(~y)
        n_probes = scores.shape[0]
        out = np.full((n_probes, self.n_boot), np.nan)
        if not y.any() or y.all():
            return out
        pos_codes, neg_codes = self.codes[y], self.codes[~y]
        # Positives sorted by group, so that one reduceat sums their Mann-Whitney counts per group.
        pos_order = np.argsort(pos_codes, kind="stable")
        pos_groups, pos_starts = np.unique(pos_codes[pos_order], return_index=True)
        n_neg, G = neg_codes.size, self.n_groups
        step = max(1, _AUC_BLOCK // max(n_neg + 1, 1))  # groups per block of the cumulative counts
        for p in range(n_probes):
            s_pos, s_neg = scores[p, y][pos_order], scores[p, ~y]
            order = np.argsort(s_neg, kind="stable")
            s_sorted, codes_sorted = s_neg[order], neg_codes[order]
            lo = np.searchsorted(s_sorted, s_pos, side="left")  # negatives strictly below each positive
            hi = np.searchsorted(s_sorted, s_pos, side="right")  # ... or tied with it
            M = np.zeros((G, G))
            for g0 in range(0, G, step):
                g1 = min(G, g0 + step)
                block = np.zeros((n_neg + 1, g1 - g0))
                sel = (codes_sorted >= g0) & (codes_sorted < g1)
                block[1:][np.flatnonzero(sel), codes_sorted[sel] - g0] = 1.0
                np.cumsum(block, axis=0, out=block)
                wins = 0.5 * (block[lo] + block[hi])  # (n_pos, g1 - g0): Mann-Whitney counts per negative group
                M[pos_groups, g0:g1] = np.add.reduceat(wins, pos_starts, axis=0)
            num = ((C @ M) * C).sum(axis=1)
            out[p] = np.where((pos > 0) & (neg > 0), num / np.where((pos > 0) & (neg > 0), pos * neg, 1.0), np.nan)
        return out

    def _multiclass(self, y_true, scores) -> dict[str, np.ndarray]:
        y = np.asarray(y_true).ravel().astype(np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim == 2:
            scores = scores[None]
        n_classes = max(scores.shape[2], int(y.max(initial=-1)) + 1)
        pred = scores.argmax(axis=2)  # (n_probes, n)
        eye = np.eye(n_classes)
        C = self.counts
        true = np.einsum("bg,gc->bc", C, self._tally(eye[y].T).T)  # (n_boot, n_classes)
        f1_macro, accuracy = [], []
        for p in range(pred.shape[0]):
            hit = eye[y] * (pred[p] == y)[:, None]
            tp = C @ self._tally(hit.T).T  # (n_boot, n_classes)
            predicted = C @ self._tally(eye[pred[p]].T).T
            present = (true + predicted) > 0  # scikit-learn averages over labels in the truth or the predictions
            f1_class = _divide(2 * tp, true + predicted)
            f1_macro.append(_divide((f1_class * present).sum(axis=1), present.sum(axis=1)))
            accuracy.append(_divide(tp.sum(axis=1), true.sum(axis=1)))
        return {"f1_macro": np.array(f1_macro), "accuracy": np.array(accuracy)}

    def _regression(self, y_true, predictions) -> dict[str, np.ndarray]:
        y = np.asarray(y_true, dtype=np.float64).ravel()
        pred = np.atleast_2d(np.asarray(predictions, dtype=np.float64))
        C = self.counts
        yc = y - y.mean()  # centred: the resample's total sum of squares loses less to cancellation
        n = C @ self._tally(np.ones_like(y))
        sy, syy = C @ self._tally(yc), C @ self._tally(yc * yc)
        ss_tot = syy - _divide(sy * sy, n)
        ss_res = self._tally((pred - y) ** 2) @ C.T  # (n_probes, n_boot)
        scale = max(float(np.sum(yc * yc)), 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(ss_tot > 1e-12 * scale, 1.0 - ss_res / ss_tot, np.nan)
        return {"r2": r2}


# ------------------------------------------------------------------ what a sweep records
def sweep_bootstrap(groups_test, n_boot: int, seed: int, feature: str) -> GroupBootstrap | None:
    """The resamples of a feature's test groups for a sweep (None when ``n_boot`` is 0).

    Seeded by ``derive_seed(seed, "bootstrap", feature)``: every layer, method and ``k`` of a feature sees the
    same resamples, so any two of its rows can be compared pairwise later (``needle results compare``).
    """
    from needle.probing.splits import derive_seed

    if not n_boot:
        return None
    return GroupBootstrap.draw(groups_test, int(n_boot), derive_seed(seed, "bootstrap", feature))


def interval_columns(boot: GroupBootstrap | None, task: str, y_true, scores) -> dict[str, np.ndarray]:
    """The :data:`CI_COLUMNS` of a batch of probes (shape (n_probes,) each); NaN without a bootstrap or where
    the task has no such metric."""
    n_probes = np.shape(scores)[0]
    out = {name: np.full(n_probes, np.nan) for name in CI_COLUMNS}
    if boot is not None:
        out.update(boot.intervals(task, y_true, scores))
    return out
