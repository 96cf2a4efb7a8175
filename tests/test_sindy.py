"""needle.sindy: the certified MIOSR as a PySINDy optimiser, and on arrays without PySINDy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from needle.errors import InputError
from needle.sindy import fit_miosr

ps = pytest.importorskip("pysindy", reason="the sindy extra (pysindy) is not installed")

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


def _lorenz(t, x):
    return [SIGMA * (x[1] - x[0]), x[0] * (RHO - x[2]) - x[1], x[0] * x[1] - BETA * x[2]]


def _trajectory(x0=(-8.0, 8.0, 27.0), t_end=4.0, dt=0.002):
    t = np.arange(0.0, t_end, dt)
    x = solve_ivp(_lorenz, (0.0, t[-1]), x0, t_eval=t, rtol=1e-12, atol=1e-12).y.T
    return t, x


def _true_lorenz(names):
    """The Lorenz coefficients on a library with these feature names (x0, x1, x0 x2, ...)."""
    truth = np.zeros((3, len(names)))
    pos = {n: i for i, n in enumerate(names)}
    truth[0, pos["x0"]], truth[0, pos["x1"]] = -SIGMA, SIGMA
    truth[1, pos["x0"]], truth[1, pos["x1"]], truth[1, pos["x0 x2"]] = RHO, -1.0, -1.0
    truth[2, pos["x2"]], truth[2, pos["x0 x1"]] = -BETA, 1.0
    return truth


def test_drop_in_for_ps_miosr_recovers_lorenz_exactly_from_clean_data():
    from needle.sindy import MIOSR

    t, x = _trajectory()
    x_dot = np.array([_lorenz(0, row) for row in x])
    opt = MIOSR(target_sparsity=7, alpha=1e-6, unbias=True)
    model = ps.SINDy(optimizer=opt, feature_library=ps.PolynomialLibrary(degree=3)).fit(x, t=t, x_dot=x_dot)
    truth = _true_lorenz(model.get_feature_names())
    coef = model.coefficients()
    assert np.array_equal(coef != 0, truth != 0)
    np.testing.assert_allclose(coef, truth, rtol=1e-8, atol=1e-8)
    assert opt.status_ == ["optimal"] and opt.bound_[0] <= opt.objective_[0]
    # Finite differences of the clean trajectory: the same support, coefficients to the derivative's accuracy.
    fd = ps.SINDy(optimizer=MIOSR(target_sparsity=7), feature_library=ps.PolynomialLibrary(degree=3)).fit(x, t=t)
    assert np.array_equal(fd.coefficients() != 0, truth != 0)
    np.testing.assert_allclose(fd.coefficients(), truth, atol=2e-2)


def test_group_sparsity_fits_each_target_with_its_own_certificate():
    from needle.sindy import MIOSR

    t, x = _trajectory(t_end=2.0)
    opt = MIOSR(target_sparsity=None, group_sparsity=(2, 3, 2))
    model = ps.SINDy(optimizer=opt, feature_library=ps.PolynomialLibrary(degree=2)).fit(x, t=t)
    assert np.count_nonzero(model.coefficients(), axis=1).tolist() == [2, 3, 2]
    assert len(opt.certificates_) == 3 and opt.status_ == ["optimal"] * 3
    assert np.all(opt.bound_ <= opt.objective_)
    assert np.array_equal(model.coefficients() != 0, _true_lorenz(model.get_feature_names()) != 0)


def test_weak_form_several_trajectories_and_ensembling():
    from needle.sindy import MIOSR

    rng = np.random.default_rng(0)
    runs = [_trajectory(x0, t_end=2.0) for x0 in rng.uniform(-10, 10, (3, 3)) + [0, 0, 25]]
    t = runs[0][0]
    xs = [x + 0.01 * rng.standard_normal(x.shape) for _, x in runs]
    weak = ps.WeakPDELibrary(function_library=ps.PolynomialLibrary(degree=2), spatiotemporal_grid=t, K=100, p=4)
    model = ps.SINDy(optimizer=MIOSR(target_sparsity=7, alpha=1e-3), feature_library=weak).fit(xs, t=t)
    names = ps.PolynomialLibrary(degree=2).fit(xs[0]).get_feature_names()
    assert np.array_equal(model.coefficients() != 0, _true_lorenz(names) != 0)
    ensemble = ps.EnsembleOptimizer(opt=MIOSR(target_sparsity=7, alpha=1e-3, unbias=True), bagging=True,
                                    n_models=3)
    model = ps.SINDy(optimizer=ensemble, feature_library=ps.PolynomialLibrary(degree=2)).fit(xs, t=t)
    assert np.array_equal(model.coefficients() != 0, _true_lorenz(model.get_feature_names()) != 0)


def test_constraints_hold_and_feature_order_is_the_target_order_permuted():
    from needle.sindy import MIOSR

    t, x = _trajectory(t_end=2.0)
    lib = ps.PolynomialLibrary(degree=2)
    D = 10  # 1, x0, x1, x2, x0^2, x0 x1, x0 x2, x1^2, x1 x2, x2^2
    # Tie the x0 and x1 coefficients of the first equation: xi0[x0] + xi0[x1] = 0 (true for Lorenz).
    lhs = np.zeros((1, 3 * D))
    lhs[0, 1] = lhs[0, 2] = 1.0
    opt = MIOSR(target_sparsity=7, constraint_lhs=lhs, constraint_rhs=np.zeros(1))
    coef = ps.SINDy(optimizer=opt, feature_library=lib).fit(x, t=t).coefficients()
    assert coef[0, 1] == pytest.approx(-coef[0, 2], abs=1e-9) and coef[0, 1] != 0
    assert opt.status_ == ["optimal"]
    feature_lhs = np.zeros((1, 3 * D))
    feature_lhs[0, 1 * 3 + 0] = feature_lhs[0, 2 * 3 + 0] = 1.0  # column j * n_targets + t
    opt_f = MIOSR(target_sparsity=7, constraint_lhs=feature_lhs, constraint_rhs=np.zeros(1),
                  constraint_order="feature")
    np.testing.assert_allclose(ps.SINDy(optimizer=opt_f, feature_library=lib).fit(x, t=t).coefficients(), coef,
                               atol=1e-9)


def test_parameters_are_sklearn_params_and_bad_ones_fail_in_one_line():
    from sklearn.base import clone

    from needle.sindy import MIOSR

    opt = MIOSR(target_sparsity=4, alpha=0.5)
    assert clone(opt).get_params()["target_sparsity"] == 4
    t, x = _trajectory(t_end=1.0)
    with pytest.raises(InputError, match="group_sparsity must have one entry per target"):
        ps.SINDy(optimizer=MIOSR(target_sparsity=None, group_sparsity=(2, 2))).fit(x, t=t)
    with pytest.raises(InputError, match="alpha must be a positive"):
        ps.SINDy(optimizer=MIOSR(alpha=0.0)).fit(x, t=t)
    with pytest.raises(InputError, match="unbias"):
        ps.SINDy(optimizer=MIOSR(constraint_lhs=np.zeros((1, 30)), constraint_rhs=[0.0], unbias=True)).fit(x, t=t)


def test_fit_miosr_on_arrays_agrees_with_enumeration():
    import itertools

    rng = np.random.default_rng(3)
    Theta = rng.standard_normal((60, 7))
    Y = Theta[:, [1, 4]] @ np.array([[2.0, 0.0], [-1.0, 3.0]]) + 0.3 * rng.standard_normal((60, 2))
    fit = fit_miosr(Theta, Y, target_sparsity=None, group_sparsity=(2, 1), alpha=0.1)
    for t, k in enumerate((2, 1)):
        best = min(
            float(np.sum((Y[:, t] - Theta[:, list(S)] @ w) ** 2) + 0.1 * w @ w)
            for S in itertools.combinations(range(7), k)
            for w in [np.linalg.solve(Theta[:, list(S)].T @ Theta[:, list(S)] + 0.1 * np.eye(k),
                                      Theta[:, list(S)].T @ Y[:, t])]
        )
        assert fit.certificates[t].objective == pytest.approx(best, rel=1e-9)


def test_arrays_work_without_pysindy():
    # A fresh interpreter in which "import pysindy" fails: fit_miosr still works, MIOSR says how to install.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pysindy"] = None
        import numpy as np
        import needle.sindy
        rng = np.random.default_rng(0)
        Theta = rng.standard_normal((50, 6))
        fit = needle.sindy.fit_miosr(Theta, Theta[:, [2]] * 3.0, target_sparsity=1)
        assert np.flatnonzero(fit.coef).tolist() == [2], fit.coef
        try:
            needle.sindy.MIOSR
        except ImportError as exc:
            assert "needle[sindy]" in str(exc)
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_readme_snippet_runs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Certified sparse regression and SINDy")[1]
    code = section.split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["fit"].support.tolist() == [3, 7] and namespace["fit"].status == "optimal"
    opt = namespace["model"].optimizer
    assert opt.status_ == ["optimal"]
    assert np.count_nonzero(namespace["model"].coefficients()) == 7
