"""The demo pipeline end to end on a tiny model: every stage writes its artifact, and a rerun reuses them."""

from __future__ import annotations

import re

import pytest

from model_zoo import build_model
from needle.activations import load_cache
from needle.datasets.format import load_dataset
from needle.demo import run_demo
from needle.probing import load_results


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, bpe_tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama")
    build_model("llama", len(bpe_tokenizer)).save_pretrained(path)
    bpe_tokenizer.save_pretrained(path)
    return path


def test_demo_runs_every_stage_and_resumes(tmp_path, tiny_model_dir):
    lines: list[str] = []
    paths = run_demo(tmp_path / "demo", model=str(tiny_model_dir), max_files=6, max_sequences_per_file=1,
                     max_positives=40, methods=["mean_diff"], ks=[1, 2], n_jobs=1, echo=lines.append)
    dataset = load_dataset(paths["dataset"])
    assert max(len(t) for t in dataset.tokens) <= 128  # the tiny model's context, not 512
    cache = load_cache(paths["cache"])
    assert cache.layers == [0, 1, 2] and cache.manifest["dataset_hash"] == dataset.content_hash()
    results = load_results(paths["results"])
    assert set(results["method"]) == {"mean_diff", "dense", "random_directions"}
    assert set(results["layer"]) == {0, 1, 2}
    # Features whose positives (or negatives) all come from one file cannot be split by file: skipped, not fatal.
    for name in dataset.feature_names:
        ex = dataset.feature_examples(name)
        splittable = all(len(set(dataset.groups[ex.sequence[ex.label == c]])) > 1 for c in (0, 1))
        assert (name in set(results["feature"])) == splittable, name
    assert len(set(results["feature"])) >= 3
    assert paths["report"].read_text().count("data:image/png;base64,") == 4
    assert any(line.startswith("report: ") for line in lines)
    index = paths["site"] / "index.html"
    assert index.is_file() and all(f'data-feature="{f}"' in index.read_text() for f in set(results["feature"]))
    assert any(line.startswith("site: ") for line in lines) and any("needle scope serve" in line for line in lines)
    from needle.demo import GUIDE

    assert GUIDE in lines  # and every output the guide names exists
    for named in re.findall(r"\b(report\.html|site/index\.html)", GUIDE):
        assert (paths["report"].parent / named).is_file(), named
    lines.clear()
    run_demo(tmp_path / "demo", model=str(tiny_model_dir), max_files=6, max_sequences_per_file=1,
             max_positives=40, methods=["mean_diff"], ks=[1, 2], n_jobs=1, echo=lines.append)
    assert any("reusing the python-code dataset" in line for line in lines)
    assert any("reusing the activation cache" in line for line in lines)
    assert any("reusing the site" in line for line in lines)
    assert len(load_results(paths["results"])) == len(results)  # nothing duplicated


def test_causal_demo_trains_probes_and_ablates(tmp_path):
    """Plumbing on a toy model trained for a few steps (no finding is asserted: the model has learnt little)."""
    import sysconfig
    from pathlib import Path

    import pandas as pd

    from needle.demo import CAUSAL_GUIDE, run_causal_demo
    from needle.toy import ToySize, TrainSettings, gather_corpus

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = gather_corpus(python=[stdlib / name for name in ("bisect.py", "colorsys.py", "keyword.py", "this.py")],
                           ud=None, unit_chars=400)
    lines: list[str] = []
    paths = run_causal_demo(
        tmp_path / "causal", toy_size=ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=32,
                                              context_length=64),
        toy_settings=TrainSettings(steps=3, max_minutes=None, batch_size=4, vocab_size=300, threads=1),
        toy_corpus=corpus, ablate_neurons=2, ablation_sequences=8, max_files=6, max_sequences_per_file=1,
        max_positives=40, methods=["mean_diff"], ks=[1, 2], n_jobs=1, site_max_k=1, site_sequences=8,
        echo=lines.append)
    assert (paths["model"] / "training.json").is_file()
    table = pd.read_csv(paths["ablation"])
    assert list(table["feature"]).count("(random)") == len(table) // 2 and len(table) >= 2
    assert (table["n_sequences"] == min(8, load_dataset(paths["dataset"]).n_sequences)).all()
    # The delta is the two losses' difference, recomputed from the table.
    assert (table["loss_ablated"] - table["loss_clean"] - table["delta"]).abs().max() < 1e-6
    # Logit effects reach the neuron pages of a causal model.
    pages = list((paths["site"] / "neurons").rglob("*.html"))
    assert pages and any('class="data logits"' in page.read_text() for page in pages)
    assert CAUSAL_GUIDE in lines and any(line.startswith("causal demo done in") for line in lines)
    lines.clear()
    run_causal_demo(tmp_path / "causal", toy_corpus=corpus, ablate_neurons=2, ablation_sequences=8, max_files=6,
                    max_sequences_per_file=1, max_positives=40, methods=["mean_diff"], ks=[1, 2], n_jobs=1,
                    site_max_k=1, site_sequences=8, echo=lines.append)
    assert any("reusing the toy model" in line for line in lines)
