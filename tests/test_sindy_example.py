"""examples/sindy.py end to end on a random-weight causal model (plumbing only: random weights prove no finding)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sindy.py"


@pytest.mark.parametrize("system", ["logistic", "lorenz"])
def test_the_example_writes_its_tables_and_figures(tmp_path, bpe_tokenizer, system):
    from model_zoo import build_model

    build_model("gpt_neox", len(bpe_tokenizer), n_layers=2).save_pretrained(tmp_path / "model")
    bpe_tokenizer.save_pretrained(tmp_path / "model")
    spec = importlib.util.spec_from_file_location("sindy_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    work = example.main(["--system", system, "--model", str(tmp_path / "model"), "--work", str(tmp_path / "w"),
                         "--trajectories", "8", "--length", "14"])
    probes = pd.read_csv(work / "probes.csv")
    targets = {"logistic": {"current", "next"}, "lorenz": {"current", "next", "y", "z"}}[system]
    assert set(probes.feature) == targets and set(probes.layer) == {0, 1}
    recovery = pd.read_csv(work / "recovery.csv")
    assert set(recovery.source) == {"probe", "target"} and set(recovery.optimizer) == {"miosr", "stlsq"}
    if system == "logistic":  # one fit per test trajectory; the control on the true series recovers the map
        assert len(recovery) == 2 * 2 * 2 * 8
        truth = recovery[(recovery.source == "target") & (recovery.optimizer == "miosr")]
        assert truth.exact.mean() > 0.5
    for name in ("probe_r2.png", "trajectories.png", "recovery.png", "summary.md"):
        assert (work / name).stat().st_size > 0
