"""The Ray engine on a real local cluster: the local pool's rows, a killed worker, Ctrl-C, sharded extraction."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from needle.errors import InputError
from needle.probing import ArraySource, load_results, sweep
from needle.probing.results import RESULT_KEY
from test_probing_sweep import make_source

ray = pytest.importorskip("ray")

SETTINGS = dict(methods=("mean_diff", "f_stat", "adaptive"), ks=(1, 2, 4, 8), prefilter=16, bootstrap=50,
                progress=False, checkpoint_seconds=0.0)


@pytest.fixture(scope="session")
def cluster():
    """One local Ray cluster of 2 CPUs for every test here (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The sources below are defined in this module, which the workers cannot import: ship them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def exact(frame):
    """Rows in key order, timings dropped, arrays as tuples: equal only if every number is equal."""
    frame = frame.drop(columns=["fit_seconds"]).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    for col in ("neurons", "coef", "class_intercepts"):
        frame[col] = frame[col].map(lambda a: None if a is None else tuple(np.asarray(a, dtype=float).tolist()))
    return frame


@pytest.fixture(scope="module")
def pool_rows(tmp_path_factory):
    """The local process pool's results (2 workers) on the toy source."""
    return exact(sweep(make_source(), out=tmp_path_factory.mktemp("pool") / "r.parquet", n_jobs=2, **SETTINGS))


class StallingSource(ArraySource):
    """An ArraySource whose first read of ``layer`` on a worker records the worker's pid and then hangs."""

    def stall_on(self, layer: int, log) -> StallingSource:
        self.stall_layer, self.log, self.driver = layer, str(log), os.getpid()
        return self

    def layer(self, layer):
        if os.getpid() != self.driver and layer == self.stall_layer:
            with open(self.log, "a") as handle:
                handle.write(f"{os.getpid()}\n")
            with open(self.log) as handle:
                if len(handle.read().split()) == 1:  # the first attempt waits to be killed or cancelled
                    for _ in range(1200):  # short sleeps: Ray's cancel interrupts between them, as it would numpy calls
                        time.sleep(0.1)
        return super().layer(layer)


def stalling_source(log, layer=1):
    plain = make_source()
    source = StallingSource.__new__(StallingSource)
    source.__dict__.update(plain.__dict__)
    return source.stall_on(layer, log)


def pids(log):
    return [int(p) for p in log.read_text().split()] if log.exists() else []


def wait_for(condition, seconds=60.0):
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the condition did not come true in time")
        time.sleep(0.05)


def test_ray_gives_the_local_pools_rows(cluster, pool_rows, tmp_path):
    out = tmp_path / "r.parquet"
    rows = sweep(make_source(), out=out, engine="ray", **SETTINGS)
    pd.testing.assert_frame_equal(exact(rows), pool_rows)
    pd.testing.assert_frame_equal(exact(load_results(out)), pool_rows)
    assert len(pool_rows) > 40  # 2 features × 3 layers × (3 methods × 4 ks + dense + random directions)


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, pool_rows, tmp_path):
    log, out = tmp_path / "attempts", tmp_path / "r.parquet"

    def kill_first_attempt():
        wait_for(lambda: pids(log))
        os.kill(pids(log)[0], signal.SIGKILL)  # mid-task: it is stalled inside run_task's read of layer 1

    killer = threading.Thread(target=kill_first_attempt)
    killer.start()
    rows = sweep(stalling_source(log), out=out, engine="ray", **SETTINGS)
    killer.join()
    attempts = pids(log)
    # The two layer-1 tasks, one of them twice: its first worker was killed, a new one ran it again.
    assert len(attempts) == 3 and attempts[0] not in attempts[1:]
    on_disk = load_results(out)
    assert not on_disk.duplicated(list(RESULT_KEY)).any()
    pd.testing.assert_frame_equal(exact(on_disk), pool_rows)
    pd.testing.assert_frame_equal(exact(rows), pool_rows)


def test_ctrl_c_cancels_the_cluster_work_and_keeps_finished_tasks(cluster, pool_rows, tmp_path):
    log, out = tmp_path / "attempts", tmp_path / "r.parquet"

    def interrupt():
        wait_for(lambda: pids(log))
        wait_for(lambda: out.exists())  # some other task has finished and been written
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        sweep(stalling_source(log), out=out, engine="ray", **SETTINGS)
    kept = exact(load_results(out))
    tasks = kept.groupby(["feature", "layer"]).size()
    assert 0 < len(tasks) < 6  # the stalled task's rows never came: nothing of it is in the file
    # Whole tasks only, each exactly as the pool computed it.
    expected = pool_rows.groupby(["feature", "layer"]).size()
    assert (tasks == expected[tasks.index]).all()
    merged = kept.merge(pool_rows, how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert ray.cluster_resources().get("CPU") == 2
    # The stalled task was cancelled (interrupted in its sleep): nothing of this sweep runs on the cluster.
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 2, seconds=30)


def _without_layer_checksums(manifest):
    if isinstance(manifest, dict):
        return {k: _without_layer_checksums(v) for k, v in manifest.items() if not str(k).startswith("layer_")}
    if isinstance(manifest, list):
        return [_without_layer_checksums(v) for v in manifest]
    return manifest


def test_sharded_extraction_on_ray_equals_the_single_one_and_is_probed_by_path(cluster, tmp_path, bpe_tokenizer):
    from model_zoo import build_model
    from needle.activations import extract
    from needle.activations.shard import extract_sharded
    from needle.probing.engines import _CacheByPath, _open_by_path
    from test_extract import make_dataset

    model_dir = tmp_path / "model"
    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(model_dir)
    bpe_tokenizer.save_pretrained(model_dir)
    dataset = make_dataset(bpe_tokenizer, n_sequences=12)
    options = dict(layers=[0, 2], batch_tokens=48, progress=False)
    single = extract(str(model_dir), dataset, tmp_path / "single", **options)
    cache = extract_sharded(str(model_dir), dataset, tmp_path / "sharded", shards=2, engine="ray", **options)
    for name in sorted(os.listdir(single.path)):
        if name.startswith("layer_") and name.endswith(".npy"):
            # A Ray worker's torch may run other thread counts, so the float16 activations can differ by one
            # rounding step (summation order); everything else, rows and labels included, must be identical.
            ours, theirs = np.load(cache.path / name), np.load(single.path / name)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
            np.testing.assert_allclose(ours.astype(np.float32), theirs.astype(np.float32), rtol=2e-3, atol=1e-3)
            continue
        if name == "manifest.json":
            # The same manifest but for the layer files' checksums (which follow from the bytes above).
            ours, theirs = (json.loads((p / name).read_text()) for p in (cache.path, single.path))
            assert _without_layer_checksums(ours) == _without_layer_checksums(theirs)
            continue
        assert (cache.path / name).read_bytes() == (single.path / name).read_bytes(), name
    # The workers open the cache by its path (this machine is every node) and give the local rows.
    settings = {**SETTINGS, "features": ["tok_a", "tok_b"], "ks": (1, 2), "methods": ("mean_diff",)}
    local = sweep(cache, out=None, **settings)  # the same bytes: the engine, not the extraction, is compared
    remote = sweep(cache, out=None, engine="ray", **settings)
    pd.testing.assert_frame_equal(exact(remote), exact(local))
    # A worker that finds another cache at the path refuses instead of probing other data.
    with pytest.raises(InputError, match="not the one the sweep was planned on"):
        _open_by_path(_CacheByPath(str(cache.path), {**cache.manifest, "n_rows": 1}))


def test_bad_engine_settings_fail_before_any_work():
    source = make_source()
    with pytest.raises(InputError, match="engine must be one of local, ray"):
        sweep(source, out=None, engine="spark")
    with pytest.raises(InputError, match="--engine ray"):
        sweep(source, out=None, address="auto")
