"""The CLI is thin: it calls the API, prints, and turns needle's errors into exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from model_zoo import build_model
from needle.activations import load_cache
from needle.cli import app
from test_extract import make_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, bpe_tokenizer):
    path = tmp_path_factory.mktemp("tiny-neox")
    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(path)
    bpe_tokenizer.save_pretrained(path)
    return path


def test_extract_and_info_commands(tmp_path, tiny_model_dir, bpe_tokenizer):
    make_dataset(bpe_tokenizer).save(tmp_path / "ds")
    result = runner.invoke(app, ["dataset", "info", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "tok_a" in result.output and "distinct activation rows" in result.output
    result = runner.invoke(app, ["extract", "--model", str(tiny_model_dir), "--dataset", str(tmp_path / "ds"),
                                 "--out", str(tmp_path / "cache"), "--layers", "0,2", "--site", "pre"])
    assert result.exit_code == 0, result.output
    cache = load_cache(tmp_path / "cache")
    assert cache.layers == [0, 2] and cache.site == "mlp.hook_pre"
    result = runner.invoke(app, ["cache", "info", str(tmp_path / "cache")])
    assert result.exit_code == 0 and "blocks.0.mlp.hook_pre" in result.output


def run_main(monkeypatch, capsys, *args):
    """Run the real entry point in-process; return (exit code, stderr)."""
    from needle.cli import main

    monkeypatch.setattr("sys.argv", ["needle", *args])
    try:
        main()
    except SystemExit as exited:
        return exited.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_errors_are_one_clear_line_with_exit_code_2(tmp_path, tiny_model_dir, minilm_tokenizer, monkeypatch, capsys):
    make_dataset(minilm_tokenizer, vocab=400).save(tmp_path / "ds")
    code, err = run_main(monkeypatch, capsys, "extract", "--model", str(tiny_model_dir), "--dataset",
                         str(tmp_path / "ds"), "--out", str(tmp_path / "cache"))
    assert code == 2 and err.startswith("error:") and "Rebuild the dataset" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()
    code, err = run_main(monkeypatch, capsys, "extract", "--model", str(tiny_model_dir), "--dataset",
                         str(tmp_path / "ds"), "--out", str(tmp_path / "c"), "--layers", "x")
    assert code == 2 and "--layers" in err
    code, err = run_main(monkeypatch, capsys, "dataset", "info", str(tmp_path / "nope"))
    assert code == 2 and "not a directory" in err


def test_probe_command_passes_method_parameters(tmp_path, tiny_model_dir, bpe_tokenizer, monkeypatch, capsys):
    from needle.probing import load_results

    make_dataset(bpe_tokenizer).save(tmp_path / "ds")
    result = runner.invoke(app, ["extract", "--model", str(tiny_model_dir), "--dataset", str(tmp_path / "ds"),
                                 "--out", str(tmp_path / "cache"), "--layers", "1"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "r.parquet"
    result = runner.invoke(app, ["probe", "--cache", str(tmp_path / "cache"), "--out", str(out), "--methods",
                                 "mean_diff,osp", "--k", "1,2,8", "--no-baselines", "--method-param",
                                 "osp.prefilter=4", "--method-param", "osp.time_limit=10"])
    assert result.exit_code == 0, result.output
    results = load_results(out)
    osp = results[results["method"] == "osp"]
    assert len(osp) and set(osp["k"]) == {1, 2} and osp["status"].isin(["optimal", "time_limit"]).all()
    assert (osp["bound"] <= osp["objective"] + 1e-9).all()
    assert 8 in set(results[results["method"] == "mean_diff"]["k"])
    code, err = run_main(monkeypatch, capsys, "probe", "--cache", str(tmp_path / "cache"), "--out", str(out),
                         "--method-param", "time_limit=3")
    assert code == 2 and "METHOD.KEY=VALUE" in err


def test_dataset_list_names_every_registered_builder():
    from needle.datasets.registry import BUILDERS

    result = runner.invoke(app, ["dataset", "list"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == list(BUILDERS)


def test_help_and_usage_errors_load_no_heavy_library():
    """`needle … --help` and argument errors answer without importing numpy, pandas, torch or transformers."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from needle.cli import main\n"
        "for argv in (['needle', '--help'], ['needle', 'probe', '--help'], ['needle', 'neuron', 'top', '--bogus'],\n"
        "             ['needle', 'dataset', 'build', '--help'], ['needle', '--version']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('torch', 'transformers', 'pandas', 'numpy', 'sklearn', 'scipy', 'pyarrow')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_version_prints_the_package_version(capsys, monkeypatch):
    from needle import __version__
    from needle.cli import main

    monkeypatch.setattr("sys.argv", ["needle", "--version"])
    code = 0
    try:
        main()
    except SystemExit as exited:
        code = exited.code
    assert code in (0, None) and capsys.readouterr().out.strip() == f"needle {__version__}"
