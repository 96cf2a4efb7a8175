"""Every neuron plot returns a labelled figure; the ``needle neuron`` commands write tables and PNGs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from model_zoo import build_model
from needle.cli import app
from needle.models import adapt
from needle.neurons import (
    Corpus,
    ablate,
    compound_activation,
    logit_effects,
    logit_statistics,
    plot_ablation,
    plot_class_distributions,
    plot_compound_activation,
    plot_logit_effects,
    plot_logit_statistics,
    plot_probe_errors,
    plot_rotation_comparison,
    plot_token_statistics,
    plot_top_activations,
    plot_weight_statistics,
    rotation_comparison,
    save_figure,
    token_statistics,
    top_activations,
    weight_statistics,
)
from needle.probing import ArraySource

runner = CliRunner()
TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog.",
         "class Point:\n    x = 1\n", "I went to the store, and they said we're closed."]


@pytest.fixture(scope="module")
def neox(bpe_tokenizer):
    return adapt(build_model("gpt_neox", len(bpe_tokenizer), seed=5), bpe_tokenizer, model_id="tiny")


@pytest.fixture(scope="module")
def corpus(bpe_tokenizer):
    return Corpus.from_texts(TEXTS, bpe_tokenizer, 12, labels=["code", "english", "code", "english"])


def assert_labelled(fig):
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert any(ax.get_legend() is not None for ax in axes)


def test_every_plot_is_labelled(neox, corpus, tmp_path):
    rng = np.random.default_rng(0)
    figures = [
        plot_top_activations(top_activations(neox, corpus, [(1, 2)], n_top=3, n_bottom=3, per_band=2)),
        plot_token_statistics(token_statistics(neox, corpus, [(1, 2)]), min_count=1),
        plot_token_statistics(token_statistics(neox, corpus, [(1, 2)], by_label=True), min_count=1),
        plot_logit_effects(logit_effects(neox, 1, 2)),
        plot_logit_statistics(logit_statistics(neox, [0, 1])),
        plot_ablation(ablate(neox, corpus, [(1, 2)])),
        plot_weight_statistics(weight_statistics(neox), highlight=[(1, 2)]),
        plot_compound_activation(compound_activation(neox, {"a": ["the dog"], "b": ["the fox", "a dog"]}, [(1, 2)])),
    ]
    dist = pd.DataFrame({"layer": 1, "neuron": 2, "site": np.repeat(["pre", "post"], 20), "feature": "f",
                         "y": np.tile([0, 1], 20), "activation": rng.normal(size=40)})
    figures.append(plot_class_distributions(dist))
    errors = pd.DataFrame({"feature": "f", "layer": 1, "score": rng.normal(size=30),
                           "outcome": rng.choice(["true_positive", "false_positive", "false_negative",
                                                  "true_negative"], 30)})
    figures.append(plot_probe_errors(errors))
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] > 0.5).astype(np.int8)
    source = ArraySource({0: X}, {"f": (np.arange(120), y)}, groups=np.arange(120) // 4)
    figures.append(plot_rotation_comparison(rotation_comparison(source, "f", 0, n_candidates=4, n_report=4,
                                                                n_rotations=2)))
    for fig in figures:
        assert_labelled(fig)
    save_figure(figures[0], tmp_path / "top.png")
    assert (tmp_path / "top.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, bpe_tokenizer):
    path = tmp_path_factory.mktemp("tiny-neox")
    build_model("gpt_neox", len(bpe_tokenizer), seed=5).save_pretrained(path)
    bpe_tokenizer.save_pretrained(path)
    return path


def test_cli_commands_write_tables_and_plots(model_dir, tmp_path):
    for i, text in enumerate(TEXTS):
        (tmp_path / f"t{i}.{'py' if i % 2 == 0 else 'txt'}").write_text(text)
    files = [arg for i in range(len(TEXTS)) for arg in ("--file", str(next(tmp_path.glob(f"t{i}.*"))))]
    common = ["--model", str(model_dir), "--neurons", "L1N2,L2N5"]
    result = runner.invoke(app, ["neuron", "top", *common, *files, "--context-length", "12", "--n-top", "3",
                                 "--out", str(tmp_path / "top.parquet")])
    assert result.exit_code == 0, result.output
    top = pd.read_parquet(tmp_path / "top.parquet")
    assert set(top["kind"]) == {"top", "bottom", "band"} and (tmp_path / "top.png").is_file()
    result = runner.invoke(app, ["neuron", "tokens", *common, *files, "--label", "suffix", "--by-label",
                                 "--out", str(tmp_path / "tokens.csv")])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(tmp_path / "tokens.csv")["label"]) == {".py", ".txt"}
    result = runner.invoke(app, ["neuron", "ablate", *common, *files, "--label", "suffix", "--mode", "mean",
                                 "--out", str(tmp_path / "ablate.parquet")])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "ablate.parquet")["label"].tolist() == [".py", ".txt", "(all)"]
    result = runner.invoke(app, ["neuron", "logits", "--model", str(model_dir), "--neuron", "L2N5", "--top", "4",
                                 "--out", str(tmp_path / "logits.parquet"), "--no-plot"])
    assert result.exit_code == 0 and "kurtosis" in result.output, result.output
    assert len(pd.read_parquet(tmp_path / "logits.parquet")) == 8 and not (tmp_path / "logits.png").exists()
    result = runner.invoke(app, ["neuron", "attribution", *common, *files, "--n-top", "3",
                                 "--out", str(tmp_path / "attribution.parquet")])
    assert result.exit_code == 0 and "mean attribution" in result.output, result.output
    attribution = pd.read_parquet(tmp_path / "attribution.parquet")
    assert set(attribution["kind"]) == {"raises", "lowers"} and not attribution["attribution"].isna().any()
    for command in ("logits", "logit-stats", "ablate", "attribution"):  # no encoder default that they would refuse
        result = runner.invoke(app, ["neuron", command, "--help"])
        assert "causal LM" in result.output and "minilm" not in result.output.lower(), command
    result = runner.invoke(app, ["neuron", "weights", "--model", str(model_dir), "--layers", "0,2",
                                 "--out", str(tmp_path / "weights.parquet")])
    assert result.exit_code == 0 and len(pd.read_parquet(tmp_path / "weights.parquet")) == 2 * 64
    (tmp_path / "compound.json").write_text(json.dumps({"fox": ["the brown fox"], "other": ["the brown dog"]}))
    result = runner.invoke(app, ["neuron", "compound", *common, "--texts", str(tmp_path / "compound.json"),
                                 "--out", str(tmp_path / "compound.parquet")])
    assert result.exit_code == 0, result.output


def test_cli_errors_are_one_line(model_dir, tmp_path, monkeypatch, capsys):
    from needle.cli import main

    def run(*args):
        monkeypatch.setattr("sys.argv", ["needle", "neuron", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code, capsys.readouterr().err

    code, err = run("top", "--model", str(model_dir), "--neurons", "L1N2", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--dataset" in err and err.count("\n") == 1
    code, err = run("top", "--model", str(model_dir), "--neurons", "nonsense", "--file", __file__,
                    "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "L3N120" in err
    code, err = run("logits", "--neuron", "L1N2", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "Missing option '--model'" in err and err.count("\n") == 1
    assert "needle neuron logits --help" in err
    code, err = run("top", "--modle", "x")
    assert code == 2 and "--modle" in err and err.count("\n") == 1
    code, err = run("weights", "--model", str(model_dir), "--out", str(tmp_path / "x.txt"))
    assert code == 2 and ".parquet or .csv" in err
