"""Bad input on the command line gets one ``error:`` line and exit status 2, never a traceback; Ctrl-C gets 130.

Every case here gave a traceback (or was silently accepted) before: each
names what it feeds the real entry point (``needle.cli.main``, in-process).
"""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest

from model_zoo import build_model
from needle.cli import main
from test_extract import make_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory, bpe_tokenizer):
    """A tiny model on disk, a dataset, its cache and a results file of one sweep."""
    from needle.activations import extract
    from needle.models import adapt
    from needle.probing import sweep

    root = tmp_path_factory.mktemp("inputs")
    model = build_model("gpt_neox", len(bpe_tokenizer))
    model.save_pretrained(root / "model")
    bpe_tokenizer.save_pretrained(root / "model")
    make_dataset(bpe_tokenizer, n_sequences=12).save(root / "ds")
    adapter = adapt(model, bpe_tokenizer, model_id="tiny")
    extract(adapter, root / "ds", root / "cache", progress=False)
    from needle.activations import load_cache

    sweep(load_cache(root / "cache"), out=root / "results.parquet", methods=["mean_diff"], ks=[1, 2], layers=[1],
          progress=False)
    return root


def run_main(monkeypatch, capsys, *args):
    """Run the real entry point in-process; return (exit status, stderr)."""
    monkeypatch.setattr("sys.argv", ["needle", *map(str, args)])
    try:
        main()
    except SystemExit as exited:
        return exited.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def assert_one_line_error(code, err, *needles):
    lines = [line for line in err.replace("\r", "\n").strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def damaged_copy(world, tmp_path, name, damage):
    copy = tmp_path / name
    shutil.copytree(world / name.split("-")[0], copy)
    damage(copy)
    return copy


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def drop(key):
    return lambda manifest: manifest.pop(key)


CACHE_DAMAGE = {
    "truncated layer": (lambda c: truncate(c / "layer_001.npy"), "truncated"),
    "truncated labels": (lambda c: truncate(c / "labels.parquet"), "labels.parquet"),
    "manifest not UTF-8": (lambda c: (c / "manifest.json").write_bytes(b'{"format": "\xff\xfe"}'), "not UTF-8"),
    "manifest lacks model_id": (lambda c: edit_manifest(c, drop("model_id")), "lacks model_id"),
    "manifest lacks layers": (lambda c: edit_manifest(c, drop("layers")), "lacks layers"),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE), ids=list(CACHE_DAMAGE))
@pytest.mark.parametrize("command", ["cache info", "probe"])
def test_a_damaged_cache_is_one_line(world, tmp_path, monkeypatch, capsys, damage, command):
    apply, message = CACHE_DAMAGE[damage]
    cache = damaged_copy(world, tmp_path, "cache-damaged", apply)
    args = ["cache", "info", cache] if command == "cache info" else \
        ["probe", "--cache", cache, "--out", tmp_path / "r.parquet", "--methods", "mean_diff", "--k", "1"]
    assert_one_line_error(*run_main(monkeypatch, capsys, *args), message)
    assert not (tmp_path / "r.parquet").exists()


DATASET_DAMAGE = {
    "manifest lacks tokenizer": (lambda d: edit_manifest(d, drop("tokenizer")), "lacks tokenizer"),
    "n_tokens disagrees with the data": (lambda d: edit_manifest(d, lambda m: m.update(n_tokens=5)), "n_tokens 5"),
    "manifest not UTF-8": (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{}"), "not UTF-8"),
    "truncated examples": (lambda d: truncate(d / "examples.parquet"), "cannot read"),
}


@pytest.mark.parametrize("damage", list(DATASET_DAMAGE), ids=list(DATASET_DAMAGE))
def test_a_damaged_dataset_is_one_line(world, tmp_path, monkeypatch, capsys, damage):
    apply, message = DATASET_DAMAGE[damage]
    dataset = damaged_copy(world, tmp_path, "ds-damaged", apply)
    assert_one_line_error(*run_main(monkeypatch, capsys, "dataset", "info", dataset), message)


def test_corrupt_splits_file_is_one_line(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.parquet"
    shutil.copy(world / "results.parquet", out)
    (tmp_path / "r.splits.parquet").write_bytes(b"garbage" * 10)
    code, err = run_main(monkeypatch, capsys, "probe", "--cache", world / "cache", "--out", out, "--methods",
                         "mean_diff", "--k", "1,2", "--layers", "0")
    assert_one_line_error(code, err, "r.splits.parquet", "splits table")


def test_device_without_cuda_jobs_zero_and_builder_params(world, tmp_path, monkeypatch, capsys):
    import torch

    if not torch.cuda.is_available():
        code, err = run_main(monkeypatch, capsys, "extract", "--model", world / "model", "--dataset", world / "ds",
                             "--out", tmp_path / "c", "--device", "cuda")
        assert_one_line_error(code, err, "--device cuda", "use --device cpu")
    code, err = run_main(monkeypatch, capsys, "probe", "--cache", world / "cache", "--out", tmp_path / "r.parquet",
                         "--jobs", "0")
    assert_one_line_error(code, err, "--jobs")
    source = tmp_path / "text.txt"
    source.write_text("Some Text with 12 numbers and CAPITALS.\n" * 20)
    build = ["dataset", "build", "text-features", "--source", source, "--out", tmp_path / "d", "--model",
             world / "model"]
    assert_one_line_error(*run_main(monkeypatch, capsys, *build, "--param", "nonsense=3"), "no parameter nonsense",
                          "min_positives")
    assert_one_line_error(*run_main(monkeypatch, capsys, *build, "--param", "min_positives=many"), "min_positives",
                          "int")
    assert not (tmp_path / "d").exists()


def test_impossible_unwritable_and_full_destinations(world, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    extract = ["extract", "--model", world / "model", "--dataset", world / "ds", "--out"]
    assert_one_line_error(*run_main(monkeypatch, capsys, *extract, blocker / "cache"), "a-file")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r.parquet"))

    monkeypatch.setattr("needle.probing.results.write_parquet", no_space)
    code, err = run_main(monkeypatch, capsys, "probe", "--cache", world / "cache", "--out", tmp_path / "r.parquet",
                         "--methods", "mean_diff", "--k", "1", "--layers", "1")
    assert_one_line_error(code, err, "No space left on device", "free some space")
    monkeypatch.undo()

    def permission(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    import sys

    monkeypatch.setattr(sys.modules["needle.activations.extract"], "exclusive_lock", permission)
    code, err = run_main(monkeypatch, capsys, *extract, tmp_path / "ro" / "cache")
    assert_one_line_error(code, err, "Permission denied", "--out you may write to")


def test_not_enough_disk_space_fails_before_extracting(world, tmp_path, monkeypatch, capsys):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    code, err = run_main(monkeypatch, capsys, "extract", "--model", world / "model", "--dataset", world / "ds",
                         "--out", tmp_path / "cache")
    assert_one_line_error(code, err, "not enough disk space", "free")
    assert not (tmp_path / "cache").exists() and not (tmp_path / ".cache.partial").exists()


def test_report_of_baselines_only_and_results_paths(world, tmp_path, monkeypatch, capsys):
    from needle.probing import load_results
    from needle.probing.results import write_results

    results = load_results(world / "results.parquet")
    write_results(tmp_path / "dense.parquet", results[results["method"] == "dense"])
    code, err = run_main(monkeypatch, capsys, "report", tmp_path / "dense.parquet", "--out", tmp_path / "r.html")
    assert_one_line_error(code, err, "no sparse probes")
    for args in (["results", "summary", tmp_path], ["report", tmp_path]):
        assert_one_line_error(*run_main(monkeypatch, capsys, *args), "is a directory")


def test_k_above_the_neurons_is_refused_and_a_prefiltered_k_is_said(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.parquet"
    probe = ["probe", "--cache", world / "cache", "--out", out, "--methods", "mean_diff", "--layers", "1"]
    assert_one_line_error(*run_main(monkeypatch, capsys, *probe, "--k", "1,5000"), "5000", "at most 64")
    code, err = run_main(monkeypatch, capsys, *probe, "--k", "1,32", "--prefilter", "16")
    assert code == 0 and "warning: --prefilter 16" in err and "k = [32]" in err
    assert_one_line_error(*run_main(monkeypatch, capsys, *probe, "--k", "1", "--method-param", "osp.time_limit=3"),
                          "['osp'], which this sweep does not run")


def test_a_feature_name_too_long_for_a_file_name_gets_a_page():
    from needle.scope.tables import feature_page_name

    name = "morph:" + "VeryLongFeatureName" * 30
    page = feature_page_name(name)
    assert len(page.split("/")[-1].encode()) < 255 and page != feature_page_name(name + "x")


@pytest.mark.slow
def test_tokenizer_mismatch_hint_names_the_alias_that_works_offline(world, tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "extract", "--model", "minilm", "--dataset", world / "ds",
                         "--out", tmp_path / "c")
    assert_one_line_error(code, err, "Rebuild the dataset with --model minilm.")


# ------------------------------------------------------------------------------------------ Ctrl-C
def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command, target, kept", [
    ("extract", "needle.activations.extract", "nothing was written"),
    ("probe", "needle.probing.sweep", "result rows of the finished tasks"),
    ("dataset build", "needle.datasets.text_features.build_text_features", "nothing was written"),
    ("scope build", "needle.scope.build_site", "left as it was"),
])
def test_ctrl_c_exits_130_with_what_was_kept(world, tmp_path, monkeypatch, capsys, command, target, kept):
    monkeypatch.setattr(target, interrupt)
    out = tmp_path / "out"
    args = {
        "extract": ["extract", "--model", world / "model", "--dataset", world / "ds", "--out", out],
        "probe": ["probe", "--cache", world / "cache", "--out", world / "results.parquet", "--methods", "mean_diff",
                  "--k", "1,2", "--layers", "1"],
        "dataset build": ["dataset", "build", "text-features", "--source", world / "model" / "config.json", "--out",
                          out, "--model", world / "model"],
        "scope build": ["scope", "build", "--results", world / "results.parquet", "--cache", world / "cache",
                        "--out", out],
    }[command]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted:") and kept in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ --overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_needle_artefact_of_the_kind(world, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    extract = ["extract", "--model", world / "model", "--dataset", world / "ds", "--overwrite", "--out"]
    assert_one_line_error(*run_main(monkeypatch, capsys, *extract, mine), "not a needle artefact")
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A dataset is a needle artefact, but not a cache.
    dataset = shutil.copytree(world / "ds", tmp_path / "ds")
    assert_one_line_error(*run_main(monkeypatch, capsys, *extract, dataset), "needle.ProbeDataset",
                          "needle.ActivationCache")
    assert (dataset / "manifest.json").is_file()
    code, err = run_main(monkeypatch, capsys, "scope", "build", "--results", world / "results.parquet", "--cache",
                         world / "cache", "--out", mine)
    assert_one_line_error(code, err, "not a needle artefact")
    # probe --overwrite deletes only a results table.
    notes = tmp_path / "notes.parquet"
    notes.write_text("my notes")
    code, err = run_main(monkeypatch, capsys, "probe", "--cache", world / "cache", "--out", notes, "--overwrite")
    assert_one_line_error(code, err, "not a needle results table")
    assert notes.read_text() == "my notes"


def test_overwrite_replaces_a_cache_and_leaves_nothing_beside_it(world, tmp_path, monkeypatch, capsys):
    from needle.activations import load_cache

    out = tmp_path / "cache"
    shutil.copytree(world / "cache", out)
    code, err = run_main(monkeypatch, capsys, "extract", "--model", world / "model", "--dataset", world / "ds",
                         "--out", out, "--overwrite", "--layers", "1")
    assert code == 0, err
    assert load_cache(out).layers == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    np.testing.assert_array_equal(load_cache(out).layer(1), load_cache(world / "cache").layer(1))
