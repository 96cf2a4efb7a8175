"""Locks, leftovers and checksums: one writer per destination, nothing stale left beside it, no silent corruption."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from model_zoo import build_model
from needle.errors import BusyError, FormatError, InputError
from test_extract import make_dataset


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def flip_bit(path, position: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------ locks
def test_a_held_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    from needle._locks import exclusive_lock, lock_path

    target = tmp_path / "out"
    with exclusive_lock(target, what="a test"):
        assert lock_path(target).read_text().strip() == str(os.getpid())
        with pytest.raises(BusyError, match=rf"another needle process \(pid {os.getpid()}\)"):
            with exclusive_lock(target, what="a second writer"):
                pass
    assert not lock_path(target).exists()  # released and removed
    with exclusive_lock(target, what="a third writer"):
        pass


def test_a_killed_holder_releases_its_lock(tmp_path):
    from needle._locks import exclusive_lock

    target = tmp_path / "out"
    code = ("import sys, time; from needle._locks import exclusive_lock\n"
            f"with exclusive_lock({str(target)!r}, what='x'):\n    print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"pid {holder.pid}"):
            with exclusive_lock(target, what="x"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(target, what="after kill -9"):  # the kernel dropped the lock with its holder
        pass


def test_waiting_for_a_lock_takes_it_when_the_holder_is_done(tmp_path):
    from needle._locks import exclusive_lock

    target, order = tmp_path / "out", []
    held = threading.Event()

    def holder():
        with exclusive_lock(target, what="first"):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    with exclusive_lock(target, what="second", wait=30):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


# ------------------------------------------------------------------------------------------ leftovers
def test_the_next_write_removes_what_dead_writers_left_and_keeps_live_ones(tmp_path):
    from needle._io import atomic_file

    gone = dead_pid()
    dead_tmp = tmp_path / f".r.parquet.{gone}.abcd1234.tmp"
    dead_old = tmp_path / f".r.parquet.old-{gone}"
    live_tmp = tmp_path / f".r.parquet.{os.getppid()}.efgh5678.tmp"
    other = tmp_path / f".other.parquet.{gone}.abcd1234.tmp"
    dead_tmp.write_bytes(b"half")
    dead_old.mkdir()
    for path in (live_tmp, other):
        path.write_bytes(b"x")
    with atomic_file(tmp_path / "r.parquet") as handle:
        handle.write(b"whole")
    assert (tmp_path / "r.parquet").read_bytes() == b"whole"
    assert not dead_tmp.exists() and not dead_old.exists()
    assert live_tmp.exists() and other.exists()  # a live writer's, and another file's


def test_overwrite_onto_a_file_or_foreign_folder_is_refused_and_leaves_nothing(tmp_path):
    from needle._io import atomic_directory

    target = tmp_path / "out"
    target.write_text("a file of mine")
    with pytest.raises(InputError, match="is a file"):
        with atomic_directory(target, overwrite=True, kind="needle.ProbeDataset"):
            pass
    assert target.read_text() == "a file of mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty, overwrite=True, kind="needle.ProbeDataset") as tmp:
        (tmp / "manifest.json").write_text('{"format": "needle.ProbeDataset"}')
    assert (empty / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_a_sweep_that_fails_leaves_no_splits_file(tmp_path):
    from needle.probing import ArraySource, sweep

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    X[5, 2] = np.nan  # an example with a NaN activation: refused when its task runs
    y = (rng.random(60) < 0.5).astype(int)
    source = ArraySource({0: X}, {"f": (np.arange(60), y)}, groups=np.arange(60) // 3)
    with pytest.raises(InputError, match="NaN"):
        sweep(source, out=tmp_path / "r.parquet", methods=["mean_diff"], ks=[1, 2], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ checksums
def test_table_digest_ignores_encoding_and_chunking_but_not_values():
    from needle._checksums import table_digest

    base = pa.table({"s": pa.array(["a", None, "ccc"]), "l": pa.array([[1, 2], [], None], pa.list_(pa.int64())),
                     "f": pa.array([1.5, None, np.nan])})
    same = pa.Table.from_batches([pa.RecordBatch.from_arrays(
        [pa.array(["a", None, "ccc"], pa.large_string()),
         pa.array([[1, 2], [], None], pa.large_list(pa.int64())), pa.array([1.5, None, np.nan])],
        names=["s", "l", "f"])])
    chunked = pa.concat_tables([base.slice(0, 1), base.slice(1)])
    dictionary = base.set_column(0, "s", base.column("s").dictionary_encode())
    assert table_digest(base) == table_digest(same) == table_digest(chunked) == table_digest(dictionary)
    changed = base.set_column(1, "l", pa.array([[1, 3], [], None], pa.list_(pa.int64())))
    nulled = base.set_column(0, "s", pa.array(["a", "", "ccc"]))
    assert len({table_digest(base), table_digest(changed), table_digest(nulled)}) == 3


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    from needle.probing import ArraySource, sweep

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    y = (X[:, 3] + 0.5 * rng.normal(size=120) > 0).astype(int)
    source = ArraySource({0: X, 1: X[:, ::-1].copy()}, {"f": (np.arange(120), y)}, groups=np.arange(120) // 4)
    out = tmp_path_factory.mktemp("results") / "r.parquet"
    sweep(source, out=out, methods=["mean_diff", "f_stat"], ks=[1, 2, 4], progress=False)
    return out


def test_every_bit_flip_in_a_results_file_is_caught_or_harmless(small_results, tmp_path):
    """60 single-bit flips at random positions: loading either refuses the file or gives the same table."""
    from needle.probing import load_results

    reference = load_results(small_results)
    original = small_results.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"refused": 0, "same": 0}
    for _ in range(60):
        damaged = tmp_path / "r.parquet"
        damaged.write_bytes(original)
        flip_bit(damaged, int(rng.integers(len(original))), int(rng.integers(8)))
        try:
            frame = load_results(damaged)
        except FormatError:
            outcomes["refused"] += 1
            continue
        pd.testing.assert_frame_equal(frame, reference)  # a flip in unused bytes (statistics, padding)
        outcomes["same"] += 1
    assert outcomes["refused"] >= 20, outcomes  # most bytes matter: the check is not vacuous


def test_results_verify_command(small_results, tmp_path, monkeypatch, capsys):
    from test_reliability_inputs import run_main

    code, _ = run_main(monkeypatch, capsys, "results", "verify", small_results)
    assert code == 0
    damaged = tmp_path / "r.parquet"
    damaged.write_bytes(small_results.read_bytes())
    # The coefficients' data page is near the middle of the file; find a flip that loading refuses.
    from needle.probing import load_results

    for position in range(len(damaged.read_bytes()) // 3, len(damaged.read_bytes())):
        damaged.write_bytes(small_results.read_bytes())
        flip_bit(damaged, position, 0)
        try:
            load_results(damaged)
        except FormatError:
            break
    code, err = run_main(monkeypatch, capsys, "results", "verify", damaged)
    assert code == 2 and "error:" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def cache(tmp_path_factory, bpe_tokenizer):
    from needle.activations import extract
    from needle.models import adapt

    adapter = adapt(build_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny")
    return extract(adapter, make_dataset(bpe_tokenizer), tmp_path_factory.mktemp("c") / "cache", progress=False)


def test_the_manifest_records_every_file_and_verify_finds_a_flipped_activation(cache, tmp_path, monkeypatch, capsys):
    import shutil

    from needle._checksums import sha256_file
    from needle.activations import load_cache, verify_cache
    from needle.activations.cache import layer_file
    from test_reliability_inputs import run_main

    files = cache.manifest["files"]
    assert set(files) == {"rows.parquet", "labels.parquet", *(layer_file(l) for l in cache.layers)}
    for name, record in files.items():
        assert record == {"bytes": (cache.path / name).stat().st_size, "sha256": sha256_file(cache.path / name)}
    assert verify_cache(cache.path) == []
    code, _ = run_main(monkeypatch, capsys, "cache", "verify", cache.path)
    assert code == 0
    copy = shutil.copytree(cache.path, tmp_path / "cache")
    layer = copy / layer_file(1)
    flip_bit(layer, layer.stat().st_size - 7, 3)  # inside the matrix: same size, same header
    load_cache(copy)  # opening checks only what is free
    assert verify_cache(copy) == [f"{layer_file(1)}: SHA-256 differs from the manifest's (the bytes changed "
                                  "after writing)"]
    code, err = run_main(monkeypatch, capsys, "cache", "verify", copy)
    assert code == 2 and layer_file(1) in err and "Extract the activations again" in err


def test_a_cache_with_a_file_of_another_size_or_no_checksums(cache, tmp_path):
    import json
    import shutil

    from needle.activations import load_cache, verify_cache

    copy = shutil.copytree(cache.path, tmp_path / "cache")
    with open(copy / "rows.parquet", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(FormatError, match="rows.parquet is .* bytes but its manifest records"):
        load_cache(copy)
    old = shutil.copytree(cache.path, tmp_path / "old")
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    load_cache(old)  # caches from before checksums still open
    with pytest.raises(FormatError, match="records no checksums"):
        verify_cache(old)


def test_a_table_rewritten_with_columns_dropped_is_not_taken_for_damage_but_other_edits_are(tmp_path):
    import pyarrow.parquet as pq

    from needle._checksums import checksum_state, read_parquet, write_parquet

    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]})
    write_parquet(table, tmp_path / "t.parquet")
    written = pq.read_table(tmp_path / "t.parquet")
    assert checksum_state(written) == "verified"
    assert checksum_state(written.drop(["b"])) == "stale"  # pyarrow keeps the metadata through drop
    assert checksum_state(written.filter(pa.array([True, False, True]))) == "corrupt"
    assert checksum_state(written.set_column(2, "c", pa.array([0.5, 1.5, 2.25]))) == "corrupt"
    renamed = pa.Table.from_arrays(written.columns, names=["a", "B", "c"], metadata=written.schema.metadata)
    assert checksum_state(renamed) == "corrupt"  # what a bit flip in a column name does
    assert checksum_state(table) == "absent"
    pq.write_table(written.set_column(0, "a", pa.array([1, 2, 4])), tmp_path / "edited.parquet")
    with pytest.raises(FormatError, match="damaged, or changed by another tool"):
        read_parquet(tmp_path / "edited.parquet", "table", "rewrite it")
