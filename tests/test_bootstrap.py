"""Group bootstrap: every replicate equals the metric recomputed by brute force on the resampled examples, and
the intervals behave like confidence intervals (coverage, width, what they ignore)."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, r2_score, recall_score, roc_auc_score

from needle.errors import InputError
from needle.probing.bootstrap import (
    CI_COLUMNS,
    GroupBootstrap,
    draw_group_indices,
    paired_difference,
    percentile_interval,
)


def _data(rng, n_groups=12, task="binary", n_probes=3):
    sizes = rng.integers(1, 9, size=n_groups)
    groups = np.repeat([f"doc{g:02d}" for g in range(n_groups)], sizes)
    perm = rng.permutation(groups.size)  # examples of a group need not be contiguous
    groups = groups[perm]
    n = groups.size
    if task == "binary":
        y = (rng.random(n) < 0.35).astype(np.int8)
        # Rounded scores: ties between positives and negatives exercise the AUC's half counts.
        scores = np.round(rng.normal(size=(n_probes, n)) + 1.2 * y - 0.4, 1)
    elif task == "multiclass":
        y = rng.integers(0, 4, size=n)
        scores = rng.normal(size=(n_probes, n, 4)) + 1.5 * np.eye(4)[y]
    else:
        y = rng.normal(size=n)
        scores = y + rng.normal(scale=0.7, size=(n_probes, n))
    return groups, y, scores


def _brute(task, groups, y, scores, n_boot, seed):
    """A plain loop: for each resample, concatenate the drawn groups' examples and call scikit-learn."""
    names = np.unique(groups.astype(str))  # the same numbering as GroupBootstrap.draw: sorted
    members = [np.flatnonzero(groups == g) for g in names]
    idx = draw_group_indices(len(names), n_boot, seed)
    out = {}
    for b in range(n_boot):
        rows = np.concatenate([members[g] for g in idx[b]])
        yb = y[rows]
        for p in range(scores.shape[0]):
            sb = scores[p][rows]
            if task == "binary":
                pred = sb > 0
                values = {"f1": f1_score(yb, pred, zero_division=0),
                          "precision": precision_score(yb, pred, zero_division=0),
                          "recall": recall_score(yb, pred, zero_division=0),
                          "roc_auc": roc_auc_score(yb, sb) if 0 < yb.sum() < yb.size else np.nan}
            elif task == "multiclass":
                pred = sb.argmax(axis=1)
                values = {"f1_macro": f1_score(yb, pred, average="macro", zero_division=0),
                          "accuracy": accuracy_score(yb, pred)}
            else:
                values = {"r2": r2_score(yb, sb) if np.ptp(yb) > 0 else np.nan}
            for name, value in values.items():
                out.setdefault(name, np.zeros((scores.shape[0], n_boot)))[p, b] = value
    return out


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("seed", [0, 1])
def test_replicates_equal_brute_force_recomputation(task, seed):
    rng = np.random.default_rng(100 + seed)
    groups, y, scores = _data(rng, task=task)
    n_boot = 40
    boot = GroupBootstrap.draw(groups, n_boot, seed)
    fast = boot.replicates(task, y, scores)
    slow = _brute(task, groups, y, scores, n_boot, seed)
    assert set(fast) == set(slow)
    for name in slow:
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-10, atol=1e-12, err_msg=name)
    lo_hi = boot.intervals(task, y, scores)
    for name in slow:
        expected = np.nanquantile(slow[name], [0.025, 0.975], axis=1)
        np.testing.assert_allclose(lo_hi[f"{name}_lo"], expected[0], atol=1e-12)
        np.testing.assert_allclose(lo_hi[f"{name}_hi"], expected[1], atol=1e-12)
        assert f"{name}_lo" in CI_COLUMNS


def test_auc_blocks_agree_with_one_block(monkeypatch):
    """The cumulative counts are built a few groups at a time on large tests; the result must not depend on it."""
    import needle.probing.bootstrap as module

    groups, y, scores = _data(np.random.default_rng(5), n_groups=30)
    boot = GroupBootstrap.draw(groups, 40, 3)
    whole = boot.replicates("binary", y, scores)["roc_auc"]
    monkeypatch.setattr(module, "_AUC_BLOCK", 50)  # a handful of groups per block
    np.testing.assert_allclose(boot.replicates("binary", y, scores)["roc_auc"], whole, rtol=1e-12)


def test_deterministic_given_seed_and_independent_of_group_order():
    groups, y, scores = _data(np.random.default_rng(2))
    a = GroupBootstrap.draw(groups, 50, 7).intervals("binary", y, scores)
    b = GroupBootstrap.draw(groups, 50, 7).intervals("binary", y, scores)
    c = GroupBootstrap.draw(groups, 50, 8).intervals("binary", y, scores)
    perm = np.random.default_rng(0).permutation(y.size)
    d = GroupBootstrap.draw(groups[perm], 50, 7).intervals("binary", y[perm], scores[:, perm])
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_allclose(d[name], a[name], rtol=1e-12)
    assert any(not np.array_equal(a[n], c[n]) for n in a)


def _clustered(rng, n_groups, size=10, effect=1.5):
    """Groups sharing a strong random offset: examples of one group are far from independent."""
    shift = np.repeat(rng.normal(scale=effect, size=n_groups), size)
    y = (rng.random(n_groups * size) < 0.4).astype(np.int8)
    score = 1.0 * y - 0.4 + shift + rng.normal(scale=0.5, size=y.size)
    return np.repeat(np.arange(n_groups), size), y, score[None, :]


def test_intervals_cover_the_population_value():
    """Recall of a fixed rule under group-level noise: the 95 % intervals cover the population recall about
    95 % of the time (percentile intervals of a cluster bootstrap run a little short with 40 groups)."""
    rng = np.random.default_rng(11)
    _, y_pop, s_pop = _clustered(rng, 20000)
    truth = float(((s_pop[0] > 0) & (y_pop == 1)).sum() / (y_pop == 1).sum())
    covered, widths, naive_widths = [], [], []
    for rep in range(150):
        groups, y, scores = _clustered(rng, 40)
        lo_hi = GroupBootstrap.draw(groups, 300, rep).intervals("binary", y, scores, metrics=["recall"])
        covered.append(lo_hi["recall_lo"][0] <= truth <= lo_hi["recall_hi"][0])
        widths.append(lo_hi["recall_hi"][0] - lo_hi["recall_lo"][0])
        # Resampling examples as if they were independent:
        naive = GroupBootstrap.draw(np.arange(y.size), 300, rep).intervals("binary", y, scores, metrics=["recall"])
        naive_widths.append(naive["recall_hi"][0] - naive["recall_lo"][0])
    coverage = float(np.mean(covered))
    assert 0.85 <= coverage <= 0.99, coverage
    # Ignoring the groups understates the uncertainty of clustered data by a wide margin.
    assert np.median(naive_widths) < 0.75 * np.median(widths)


def test_intervals_narrow_with_more_groups_and_contain_the_estimate():
    rng = np.random.default_rng(3)
    width = {}
    for n_groups in (20, 320):
        groups, y, scores = _clustered(rng, n_groups)
        lo_hi = GroupBootstrap.draw(groups, 400, 0).intervals("binary", y, scores)
        point = f1_score(y, scores[0] > 0)
        assert lo_hi["f1_lo"][0] <= point <= lo_hi["f1_hi"][0]
        width[n_groups] = lo_hi["f1_hi"][0] - lo_hi["f1_lo"][0]
    # Width scales as 1/sqrt(groups): 16x the groups, about a quarter of the width.
    assert width[320] < 0.5 * width[20]


def test_percentile_interval_skips_undefined_replicates():
    reps = np.array([[np.nan, 0.2, 0.4, 0.6, np.nan], [np.nan] * 5])
    lo, hi = percentile_interval(reps, 0.5)
    np.testing.assert_allclose([lo[0], hi[0]], np.quantile([0.2, 0.4, 0.6], [0.25, 0.75]))
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def test_paired_difference_detects_a_real_gap_and_not_a_fake_one():
    rng = np.random.default_rng(4)
    groups, y, _ = _clustered(rng, 60)
    base = y + rng.normal(scale=1.0, size=y.size)
    better = base + 0.25 * y  # the same noise, a slightly larger signal: a small gap, closely paired
    same = base + 1e-9 * rng.normal(size=y.size)
    reps = GroupBootstrap.draw(groups, 500, 0).replicates("binary", y, np.stack([base - 0.5, better - 0.6,
                                                                                  same - 0.5]))
    gap = paired_difference(reps["roc_auc"][0], reps["roc_auc"][1])
    assert gap["diff_lo"] > 0 and gap["p_value"] < 0.01
    none = paired_difference(reps["roc_auc"][0], reps["roc_auc"][2])
    assert none["diff_lo"] <= 0 <= none["diff_hi"] and none["p_value"] > 0.05
    # Pairing matters: the same two probes' intervals overlap, the paired difference does not cross 0.
    lo, hi = percentile_interval(reps["roc_auc"][:2])
    assert lo[1] < hi[0]


def test_bad_input_is_a_clear_error():
    with pytest.raises(InputError, match="resamples"):
        GroupBootstrap.draw(["a", "b"], 0, 0)
    boot = GroupBootstrap.draw(["a", "b"], 5, 0)
    with pytest.raises(InputError, match="no bootstrap for"):
        boot.replicates("regression", np.zeros(2), np.zeros((1, 2)), metrics=["f1"])
    with pytest.raises(InputError, match="3 labels"):
        boot.replicates("binary", np.zeros(3), np.zeros((1, 3)))
