"""Sharded extraction: shards tile the plan, resume, and merge into the single run's cache byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from model_zoo import build_model
from needle.activations import extract, load_cache
from needle.activations.extract import _make_plan
from needle.activations.shard import extract_sharded, load_shard, merge_shards, shard_dir, shard_plan
from needle.cli import app
from needle.errors import FormatError, InputError
from needle.models import adapt
from test_extract import make_dataset

N_SHARDS = 3
OPTIONS = dict(layers=[0, 2], batch_tokens=48, progress=False)  # 48 tokens: 10 sequences make several batches


def files_of(path):
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def setup(bpe_tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    adapter = adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny-neox")
    dataset = make_dataset(bpe_tokenizer, n_sequences=10)
    single = extract(adapter, dataset, root / "single", **OPTIONS)
    shards = [extract(adapter, dataset, root / f"s{i}", shard=(i, N_SHARDS), **OPTIONS) for i in range(N_SHARDS)]
    return adapter, dataset, single, shards, root


def test_merged_shards_equal_the_single_extraction_byte_for_byte(setup):
    adapter, dataset, single, shards, root = setup
    assert [s.count for s in shards] == [N_SHARDS] * N_SHARDS
    assert all(s.rows[1] > s.rows[0] for s in shards)  # every shard has rows
    merged = merge_shards([s.path for s in reversed(shards)], root / "merged")  # any order
    assert files_of(merged.path) == files_of(single.path)  # manifest.json, tables and layer files
    # A shard's layer block is the single run's rows [a, b), and holds nothing else.
    for shard in shards:
        a, b = shard.rows
        block = np.load(shard.path / "layer_002.npy")
        np.testing.assert_array_equal(block, single.layer(2)[a:b])


def test_shard_plan_tiles_the_batches_and_balances_tokens(setup):
    _, dataset, _, _, _ = setup
    units = dataset.units()
    lengths = np.array([len(t) for t in dataset.tokens], np.int64)
    plan = _make_plan(units, lengths, 16, 64)  # one sequence per batch: many batches to share out
    n = len(plan.batches)
    for count in (1, 2, 4, n):
        parts = [shard_plan(plan, lengths, (i, count)) for i in range(count)]
        records = [record for _, record in parts]
        assert [r["batches"][0] for r in records] == [0] + [r["batches"][1] for r in records[:-1]]
        assert records[-1]["batches"][1] == n and all(r["batches"][1] > r["batches"][0] for r in records)
        np.testing.assert_array_equal(np.concatenate([p.unit_order for p, _ in parts]), plan.unit_order)
        for part, record in parts:
            a, b = record["rows"]
            assert part.batch_row_bounds[0] == 0 and part.batch_row_bounds[-1] == b - a
        tokens = [sum(int(lengths[s].sum()) for batch in part.batches for s in batch) for part, _ in parts]
        # Contiguous cuts at the token quantiles: no shard exceeds its share by more than one batch's tokens.
        biggest = max(int(lengths[b].sum()) for b in plan.batches)
        assert max(tokens) <= sum(tokens) / count + biggest
    with pytest.raises(InputError, match="at most"):
        shard_plan(plan, lengths, (0, n + 1))
    with pytest.raises(InputError, match="index"):
        shard_plan(plan, lengths, (3, 3))


def test_an_interrupted_shard_resumes_to_the_same_bytes(setup, tmp_path):
    adapter, dataset, _, shards, _ = setup

    def stop(done, total):
        if done == 1:
            raise KeyboardInterrupt

    where = tmp_path / "s1"
    with pytest.raises(KeyboardInterrupt):
        extract(adapter, dataset, where, shard=(1, N_SHARDS), checkpoint_seconds=0, callback=stop, **OPTIONS)
    with pytest.raises(FormatError, match="resume"):
        load_shard(where)
    resumed = extract(adapter, dataset, where, shard=(1, N_SHARDS), **OPTIONS)
    assert files_of(resumed.path) == files_of(shards[1].path)


def test_merge_refuses_incomplete_mixed_or_damaged_shards(setup, tmp_path):
    adapter, dataset, _, shards, _ = setup
    with pytest.raises(InputError, match=r"missing \[1\]"):
        merge_shards([shards[0].path, shards[2].path], tmp_path / "a")
    with pytest.raises(InputError, match="given twice"):
        merge_shards([shards[0].path, shards[1].path, shards[1].path], tmp_path / "b")
    other = extract(adapter, dataset, tmp_path / "other", shard=(1, N_SHARDS), **{**OPTIONS, "layers": [0]})
    with pytest.raises(InputError, match="different extractions.*layers"):
        merge_shards([shards[0].path, other.path, shards[2].path], tmp_path / "c")
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(shards[2].path, damaged)
    data = bytearray((damaged / "layer_000.npy").read_bytes())
    data[-1] ^= 0xFF
    (damaged / "layer_000.npy").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="damaged"):
        merge_shards([shards[0].path, shards[1].path, damaged], tmp_path / "d")
    assert not (tmp_path / "d").exists() and not (tmp_path / ".d.partial").exists()
    with pytest.raises(InputError, match="already exists"):
        merge_shards([s.path for s in shards], shards[0].path.parent / "single")


def test_cli_cache_merge(setup, tmp_path):
    _, _, single, shards, _ = setup
    result = CliRunner().invoke(app, ["cache", "merge", *(str(s.path) for s in shards), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "3 shards" in result.output
    assert files_of(tmp_path / "m") == files_of(single.path)


def test_extract_sharded_locally_from_a_model_directory(setup, bpe_tokenizer, tmp_path):
    _, dataset, _, _, _ = setup
    model_dir = tmp_path / "model"
    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(model_dir)
    bpe_tokenizer.save_pretrained(model_dir)
    single = extract(str(model_dir), dataset, tmp_path / "single", **OPTIONS)
    cache = extract_sharded(str(model_dir), dataset, tmp_path / "sharded", shards=2, **OPTIONS)
    assert files_of(cache.path) == files_of(single.path)
    assert not shard_dir(tmp_path / "sharded", 0, 2).parent.exists()  # merged, then removed
    assert load_cache(cache.path).n_rows == single.n_rows
    # The same from the command line: `needle extract --shard I/N` on each part, then `needle cache merge`.
    dataset.save(tmp_path / "dataset")
    runner, parts = CliRunner(), []
    for i in range(2):
        parts.append(str(tmp_path / f"part{i}"))
        result = runner.invoke(app, ["extract", "--model", str(model_dir), "--dataset", str(tmp_path / "dataset"),
                                     "--out", parts[-1], "--layers", "0,2", "--batch-tokens", "48", "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
        assert f"shard {i}/2" in result.output
    result = runner.invoke(app, ["cache", "merge", *parts, "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    cli = load_cache(tmp_path / "cli")
    for layer in (0, 2):  # the dataset's recorded path differs (a directory, not an object), the activations not
        np.testing.assert_array_equal(np.asarray(cli.layer(layer)), np.asarray(single.layer(layer)))
    assert (tmp_path / "cli" / "rows.parquet").read_bytes() == (single.path / "rows.parquet").read_bytes()
    result = runner.invoke(app, ["extract", "--model", str(model_dir), "--dataset", str(tmp_path / "dataset"),
                                 "--out", str(tmp_path / "bad"), "--shard", "first"])
    assert "--shard 'first': give I/N" in str(result.exception)
