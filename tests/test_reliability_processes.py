"""Real processes against each other: two writers into one destination, Ctrl-C, and a parent killed under its workers.

Each test starts ``needle`` as a separate process, because the point is what
happens between processes (a lock, a signal, a dead parent); everything else
is tested in-process elsewhere. The data are tiny; what makes a run last long
enough to be interrupted is many small batches, not much work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import needle
from model_zoo import build_model
from needle.datasets.assembler import DatasetAssembler
from needle.datasets.tokenizer_info import tokenizer_info

psutil = pytest.importorskip("psutil", reason="psutil (in the dev extra) watches the worker processes")

SRC = Path(needle.__file__).resolve().parents[1]


def needle_process(*args, **kwargs) -> subprocess.Popen:
    """``needle ARGS`` in a new process (this checkout's source first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    # A test runner started in the background by a shell without job control (nohup, `make test &`, some CI
    # runners) ignores SIGINT, and an ignored signal stays ignored across exec: the child would never see Ctrl-C.
    return subprocess.Popen([sys.executable, "-m", "needle.cli", *map(str, args)], env=env, text=True,
                            preexec_fn=_default_sigint, **kwargs)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def many_sequences(tokenizer, n_sequences: int, seed: int = 0):
    """``n_sequences`` short random sequences, two token features and a sequence feature: many batches, little work."""
    rng = np.random.default_rng(seed)
    assembler = DatasetAssembler("test", {"seed": seed}, tokenizer_info(tokenizer))
    for name in ("tok_a", "tok_b"):
        assembler.add_feature(name)
    assembler.add_feature("seq_mean", level="sequence")
    for s in range(n_sequences):
        length = int(rng.integers(6, 16))
        assembler.add_sequence(rng.integers(2, len(tokenizer), length), group=f"doc{s // 3}")
        positions = np.arange(length)
        assembler.add_examples("tok_a", s, positions, rng.integers(0, 2, length))
        assembler.add_examples("tok_b", s, positions[::2], rng.integers(0, 2, len(positions[::2])))
        assembler.add_examples("seq_mean", s, 0, s % 2, end=length, aggregation="mean")
    return assembler.build(positive_ratio=None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, bpe_tokenizer):
    """A tiny model, a small dataset with its cache, and a long dataset (many one-sequence batches) to interrupt."""
    from needle.activations import extract
    from needle.models import load_model

    root = tmp_path_factory.mktemp("processes")
    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(root / "model")
    bpe_tokenizer.save_pretrained(root / "model")
    many_sequences(bpe_tokenizer, 60).save(root / "small")
    many_sequences(bpe_tokenizer, 6000, seed=1).save(root / "long")
    extract(load_model(root / "model"), root / "small", root / "cache", progress=False)
    return root


def test_a_second_extraction_into_the_same_out_fails_clearly_and_the_first_cache_survives(workspace, tmp_path):
    from needle.activations import extract, load_cache, verify_cache
    from needle.models import load_model

    out = tmp_path / "cache"
    second = {}

    def start_the_second(done: int, total: int) -> None:
        # After the first extraction's (this process's) batch, before its final rename, a second process
        # extracts into the same --out.
        if not second:
            run = needle_process("extract", "--model", workspace / "model", "--dataset", workspace / "small",
                                 "--out", out)
            second["code"], second["err"] = run.wait(timeout=300), run.communicate()[1]

    model = load_model(workspace / "model")
    cache = extract(model, workspace / "small", out, progress=False, callback=start_the_second)
    assert second["code"] == 2, second["err"]
    assert "being written by another needle process" in second["err"] and "Traceback" not in second["err"]
    assert verify_cache(out) == [] and load_cache(out).n_rows == cache.n_rows
    reference = load_cache(workspace / "cache")
    for layer in cache.layers:
        np.testing.assert_array_equal(cache.layer(layer), reference.layer(layer))


def test_two_sweeps_appending_to_one_results_file_lose_no_rows(workspace, tmp_path):
    from concurrent.futures import Executor, Future

    from needle.activations import load_cache
    from needle.probing import load_results, sweep

    out = tmp_path / "results.parquet"
    settings = dict(methods=["mean_diff", "f_stat"], ks=[1, 2, 4])
    other = {}

    class OtherSweepFirst(Executor):
        """Runs tasks here, but only after another process has swept tok_b into the same file."""

        def submit(self, fn, *args, **kwargs):
            if not other:
                run = needle_process("probe", "--cache", workspace / "cache", "--out", out, "--features", "tok_b",
                                     "--methods", "mean_diff,f_stat", "--k", "1,2,4")
                other["code"], other["err"] = run.wait(timeout=300), run.communicate()[1]
            future = Future()
            future.set_result(fn(*args, **kwargs))
            return future

    sweep(load_cache(workspace / "cache"), out=out, features=["tok_a"], executor=OtherSweepFirst(), progress=False,
          **settings)
    assert other["code"] == 0, other["err"]
    results = load_results(out)
    # Each sweep: 3 layers × (2 methods × 3 ks + dense + 3 random directions) rows of its feature.
    for feature in ("tok_a", "tok_b"):
        assert len(results[results["feature"] == feature]) == 3 * (2 * 3 + 1 + 3), feature
    assert not results.duplicated(["feature", "layer", "method", "k"]).any()


def test_ctrl_c_exits_130_and_says_what_was_kept(workspace, tmp_path):
    out = tmp_path / "cache"
    # One sequence per forward pass: thousands of passes (600 ended within a second on an idle machine), so the
    # run is still going when Ctrl-C comes.
    run = needle_process("extract", "--model", workspace / "model", "--dataset", workspace / "long", "--out", out,
                         "--batch-tokens", "16")
    try:
        # The partial directory's layer files exist once the batches start (state.json only at the first
        # checkpoint, 30 s in, or at the end: waiting for it let a fast machine finish before the signal).
        wait_for(lambda: any((tmp_path / ".cache.partial").glob("layer_*.npy")) or run.poll() is not None, 120,
                 "the extraction to start")
        assert run.poll() is None, "the extraction ended before Ctrl-C could interrupt it"
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and ".cache.partial" in last and "resume" in last
    assert "Traceback" not in err
    assert not out.exists() and (tmp_path / ".cache.partial").is_dir()


def test_workers_exit_when_the_sweep_is_killed(workspace, tmp_path):
    # Output to a file: a pipe would stay open for as long as any worker lives.
    log = open(tmp_path / "log.txt", "w")
    run = needle_process("probe", "--cache", workspace / "cache", "--out", tmp_path / "r.parquet", "--jobs", "2",
                         stdout=log, stderr=subprocess.STDOUT)
    parent = psutil.Process(run.pid)
    children: list = []
    try:
        def workers_started():
            children[:] = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
            return len(children) >= 2 or run.poll() is not None
        wait_for(workers_started, 120, "the worker processes")
        assert run.poll() is None, "the sweep ended before its workers could be orphaned"
        run.kill()  # SIGKILL: the parent runs no cleanup at all
        run.wait(timeout=30)
        # A worker still importing when its parent died exits once it reaches its initializer.
        gone, alive = psutil.wait_procs(children, timeout=120)
        assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        log.close()
        for child in children:
            if child.is_running():
                child.kill()
