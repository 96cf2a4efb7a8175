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
