"""The toy causal LM: corpus gathering and split, tokenizer, a tiny training run, saving and reloading, the CLI."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from model_zoo import hand_activations
from needle.cli import app
from needle.errors import InputError
from needle.models import load_model
from needle.toy import (
    TextUnit,
    ToySize,
    TrainSettings,
    gather_corpus,
    python_units,
    shared_tokenizer,
    split_units,
    tokenizer_fingerprint,
    train_seed_family,
    train_tokenizer,
    train_toy_model,
    ud_units,
)

TEXTS = [
    "The cat sat on the mat. The dog sat on the log. A cat and a dog sat together.",
    "Le chat est sur le tapis. Le chien est sur la bûche. Un chat et un chien.",
    "Der Hund schläft. Die Katze schläft auch. Ein Hund und eine Katze.",
    "def add(a, b):\n    return a + b\n\n\nclass Box:\n    value = [1, 2, 3]\n",
    "Ο σκύλος κοιμάται. Η γάτα κοιμάται επίσης.",
]

TINY = ToySize(hidden_size=16, n_layers=2, n_heads=2, intermediate_size=32, context_length=16)

CONLLU = """# newdoc id = doc-a
# sent_id = a-1
# text = Le chat dort.
1\tLe\tle\tDET\t_\t_\t2\tdet\t_\t_
2\tchat\tchat\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\tdort\tdormir\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = a-2
# text = Il rêve.
1\tIl\til\tPRON\t_\t_\t2\tnsubj\t_\t_
2\trêve\trêver\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No
3\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_

# newdoc id = doc-b
# sent_id = b-1
# text = Bonjour.
1\tBonjour\tbonjour\tINTJ\t_\t_\t0\troot\t_\tSpaceAfter=No
2\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_

"""

NO_TEXT_COMMENT = """# sent_id = s1
1\tHej\thej\tINTJ\t_\t_\t0\troot\t_\tSpaceAfter=No
2\t!\t!\tPUNCT\t_\t_\t1\tpunct\t_\t_

"""


def _units(repeat: int = 6) -> list[TextUnit]:
    sources = ["en", "fr", "de", "python", "el"]
    return [TextUnit(source, f"{source}-{i}", text) for i in range(repeat) for source, text in zip(sources, TEXTS)]


# ---------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_text_and_has_gpt_neox_specials():
    tokenizer = train_tokenizer(TEXTS * 5, vocab_size=320)
    assert len(tokenizer) <= 320
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|padding|>"]) == [0, 1]
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == 0 and tokenizer.pad_token_id == 1
    for text in [*TEXTS, "unseen: Ünïcödé ∑ 漢字 \t tabs\n\n  spaces", ""]:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        assert 0 not in ids and 1 not in ids  # nothing is added, as with Pythia's tokenizer
        assert tokenizer.decode(ids) == text
    # training merged frequent pairs: a frequent word is fewer tokens than its bytes
    assert len(tokenizer("The cat sat")["input_ids"]) < len("The cat sat")


def test_tokenizer_rejects_bad_input():
    with pytest.raises(InputError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(InputError, match="no text"):
        train_tokenizer(["", ""], vocab_size=300)


# ------------------------------------------------------------------------------------------------ corpus


def test_split_is_deterministic_disjoint_and_exact():
    units = _units(repeat=10)
    corpus = split_units(units, heldout_fraction=0.2, seed=3)
    again = split_units(list(reversed(units)), heldout_fraction=0.2, seed=3)
    assert {u.name for u in corpus.heldout} == {u.name for u in again.heldout}
    assert {u.name for u in corpus.heldout}.isdisjoint({u.name for u in corpus.train})
    assert len(corpus.train) + len(corpus.heldout) == len(units)
    for source in corpus.sources:  # round(0.2 * 10) = 2 held out per source
        assert sum(u.source == source for u in corpus.heldout) == 2
    other_seed = split_units(units, heldout_fraction=0.2, seed=4)
    assert {u.name for u in other_seed.heldout} != {u.name for u in corpus.heldout}
    # a source's split does not depend on the other sources
    alone = split_units([u for u in units if u.source == "fr"], heldout_fraction=0.2, seed=3)
    assert {u.name for u in alone.heldout} == {u.name for u in corpus.heldout if u.source == "fr"}
    # at least one unit on each side, even when the fraction rounds to none
    two = split_units(units[:5] + units[5:10], heldout_fraction=0.1, seed=0)
    assert all(sum(u.source == s for u in two.heldout) == 1 for s in two.sources)
    assert split_units(units, heldout_fraction=0.0).heldout == []


def test_split_rejects_bad_input():
    with pytest.raises(InputError, match="no training text"):
        split_units([])
    with pytest.raises(InputError, match="heldout_fraction"):
        split_units(_units(), heldout_fraction=1.0)
    with pytest.raises(InputError, match="same name"):
        split_units([TextUnit("en", "x", "a"), TextUnit("en", "x", "b")])


def test_python_units_keep_file_heads_at_line_ends(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("".join(f"x{i} = {i}\n" for i in range(100)))
    (tmp_path / "short.py").write_text("print('hi')\n")
    (tmp_path / "empty.py").write_text("\n\n")
    (tmp_path / "latin.py").write_bytes(b"s = '\xff'\n")  # not UTF-8 and no coding cookie: skipped
    units = python_units(tmp_path, max_chars=None, max_chars_per_file=30)
    by_name = {u.name: u.text for u in units}
    assert set(by_name) == {"pkg/long.py", "short.py"}
    assert by_name["short.py"] == "print('hi')\n"
    assert by_name["pkg/long.py"] == "x0 = 0\nx1 = 1\nx2 = 2\nx3 = 3\n"  # 28 chars; the next line would pass 30
    assert all(u.source == "python" for u in units)
    assert len(python_units(tmp_path, max_chars=1, max_chars_per_file=30)) == 1
    with pytest.raises(InputError, match="does not exist"):
        python_units(tmp_path / "nope")


def _write_treebank(root, name, text, gz=True):
    directory = root / name
    directory.mkdir(parents=True)
    path = directory / f"{name}-ud-dev.conllu{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def test_ud_units_join_sentences_and_documents(tmp_path):
    _write_treebank(tmp_path, "fr_gsd", CONLLU)
    _write_treebank(tmp_path, "sv_talbanken", NO_TEXT_COMMENT, gz=False)  # rebuilt from the tokens
    units = ud_units(tmp_path)
    assert [(u.source, u.name, u.text) for u in units] == [
        ("fr", "fr_gsd-ud-dev:1", "Le chat dort. Il rêve.\n\nBonjour.\n"),
        ("sv", "sv_talbanken-ud-dev:1", "Hej!\n"),
    ]
    # a unit never passes unit_chars (cut at sentence boundaries), and the cap stops reading
    small = ud_units(tmp_path, languages=["fr"], unit_chars=15)
    assert [u.text for u in small] == ["Le chat dort.\n", "Il rêve.\n", "Bonjour.\n"]
    assert [u.name for u in small] == ["fr_gsd-ud-dev:1", "fr_gsd-ud-dev:9", "fr_gsd-ud-dev:15"]
    assert len(ud_units(tmp_path, languages=["fr"], unit_chars=15, max_chars_per_language=10)) == 1
    with pytest.raises(InputError, match="no treebank for language"):
        ud_units(tmp_path, languages=["de"])
    with pytest.raises(InputError, match="does not exist"):
        ud_units(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no \\*.conllu"):
        ud_units(tmp_path / "empty")


def test_gather_corpus_needs_a_source(tmp_path):
    with pytest.raises(InputError, match="no text sources"):
        gather_corpus(python=False, ud=None)
    (tmp_path / "m.py").write_text("a = 1\n")
    _write_treebank(tmp_path / "ud", "fr_gsd", CONLLU)
    corpus = gather_corpus(python=[tmp_path / "m.py"], ud=tmp_path / "ud", unit_chars=15, heldout_fraction=0.34)
    assert corpus.sources == ["fr", "python"]
    assert corpus.chars("train")["python"] == len("a = 1\n") and len(corpus.heldout) == 1


# ---------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    corpus = split_units(_units(), heldout_fraction=0.2, seed=0)
    settings = TrainSettings(steps=40, max_minutes=None, batch_size=8, learning_rate=1e-2, warmup_steps=5,
                             vocab_size=300, eval_blocks_per_source=1000, seed=0, threads=1)
    out = tmp_path_factory.mktemp("toy") / "model"
    return corpus, train_toy_model(out, corpus, size=TINY, settings=settings, echo=None)


def test_training_lowers_the_loss_and_records_it(trained):
    _, result = trained
    summary = result.summary
    assert summary["steps"] == 40 and summary["stopped_by"] == "steps"
    assert summary["tokens_seen"] == 40 * 8 * TINY.context_length
    assert summary["train"]["all"]["loss"] < summary["initial_train"]["all"]["loss"] - 1.0
    assert summary["heldout"]["all"]["loss"] < summary["initial_heldout"]["all"]["loss"]
    assert math.log(len(result.tokenizer)) - 1 < summary["initial_train"]["all"]["loss"]  # near uniform at start
    assert set(summary["heldout"]) == {"en", "fr", "de", "python", "el", "all"}
    assert summary["n_parameters"] == sum(p.numel() for p in result.model.parameters())
    on_disk = json.loads((result.path / "training.json").read_text())
    assert on_disk["heldout_loss"] == summary["heldout_loss"] and on_disk["steps"] == 40
    assert not [p.name for p in result.path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_heldout_loss_equals_a_manual_computation(trained):
    corpus, result = trained
    tokenizer, model = result.tokenizer, result.model
    ids: list[int] = []
    for unit in corpus.heldout:
        if unit.source == "fr":
            ids += tokenizer(unit.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    body = TINY.context_length - 1  # every block opens with BOS (id 0), then context_length - 1 stream tokens
    n = len(ids) // body
    blocks = torch.tensor(ids[: n * body]).reshape(n, body)
    blocks = torch.cat([torch.full((n, 1), tokenizer.bos_token_id), blocks], dim=1)
    with torch.no_grad():
        logits = model(input_ids=blocks).logits[:, :-1]
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1)).item()
    assert result.summary["heldout"]["fr"]["loss"] == pytest.approx(expected, rel=1e-5)


def test_saved_model_reloads_through_load_model_with_identical_logits(trained):
    corpus, result = trained
    adapter = load_model(result.path)
    assert adapter.family == "gpt_neox" and adapter.n_layers == TINY.n_layers
    assert adapter.n_neurons == TINY.intermediate_size
    assert adapter.model.config.use_parallel_residual and adapter.model.config.hidden_act == "gelu"
    text = corpus.train[0].text
    ids = torch.tensor([adapter.tokenizer(text)["input_ids"][: TINY.context_length]])
    assert ids[0].tolist() == result.tokenizer(text)["input_ids"][: TINY.context_length]
    with torch.no_grad():
        assert torch.equal(adapter.model(input_ids=ids).logits, result.model(input_ids=ids).logits)
    captured = adapter.capture(ids, torch.ones_like(ids), [0, 1], site="post")
    for layer in (0, 1):  # the neurons are where Pythia's are: GELU(dense_h_to_4h(LN(h)))
        expected = hand_activations(adapter, ids, layer)["post"]
        assert captured[layer].shape == (1, ids.shape[1], TINY.intermediate_size)
        torch.testing.assert_close(captured[layer][0], expected, rtol=1e-5, atol=1e-6)


def test_training_rejects_bad_input(tmp_path, trained):
    corpus, result = trained
    with pytest.raises(InputError, match="already exists"):
        train_toy_model(result.path, corpus, size=TINY, settings=TrainSettings(steps=1), echo=None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not writable"):
        train_toy_model(tmp_path / "file" / "model", corpus, size=TINY, settings=TrainSettings(steps=1), echo=None)
    with pytest.raises(InputError, match="budget"):
        train_toy_model(tmp_path / "m", corpus, size=TINY, settings=TrainSettings(steps=None, max_minutes=None))
    with pytest.raises(InputError, match="n_heads"):
        train_toy_model(tmp_path / "m", corpus, size=ToySize(hidden_size=10, n_heads=3), echo=None)
    short = split_units([TextUnit("en", "a", "hi")], heldout_fraction=0.0)
    with pytest.raises(InputError, match="fewer than one block"):
        train_toy_model(tmp_path / "m", short, size=TINY, settings=TrainSettings(steps=1, vocab_size=260), echo=None)
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------------- CLI


def run_main(monkeypatch, capsys, *args):
    from needle.cli import main

    monkeypatch.setattr("sys.argv", ["needle", *args])
    try:
        main()
    except SystemExit as exited:
        return exited.code, capsys.readouterr()
    return 0, capsys.readouterr()


def test_cli_trains_and_reports_the_heldout_loss(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    for i in range(6):
        (code / f"m{i}.py").write_text(TEXTS[3] * 3)
    args = ["toy", "train", "--out", str(tmp_path / "model"), "--steps", "3", "--python", str(code), "--no-ud",
            "--vocab-size", "280", "--hidden-size", "16", "--layers", "1", "--heads", "2", "--neurons", "32",
            "--context-length", "16", "--batch-size", "2", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out loss" in result.output and "python:" in result.output
    assert json.loads((tmp_path / "model" / "training.json").read_text())["steps"] == 3


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, "toy", "train", "--out", str(tmp_path / "m"), "--no-ud", "--no-python")
    assert code == 2 and out.err.startswith("error:") and "nothing to train on" in out.err
    code, out = run_main(monkeypatch, capsys, "toy", "train", "--out", str(tmp_path / "m"),
                         "--ud", str(tmp_path / "nope"))
    assert code == 2 and "--ud DIR" in out.err and "Traceback" not in out.err
    code, out = run_main(monkeypatch, capsys, "toy", "train", "--out", str(tmp_path / "m"), "--no-ud",
                         "--python", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in out.err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------ BOS and seed families


def test_training_blocks_open_with_bos_and_keep_the_stream_in_order(trained):
    from needle.toy.train import _blocks

    stream = np.arange(10, 40)
    blocks = _blocks(stream, 8, 0)
    assert blocks.shape == (4, 8) and (blocks[:, 0] == 0).all()
    np.testing.assert_array_equal(blocks[:, 1:].reshape(-1), stream[:28])  # 7 stream tokens per block, tail dropped
    _, result = trained
    assert result.summary["bos_token_id"] == result.tokenizer.bos_token_id == 0
    assert result.model.config.bos_token_id == 0
    assert result.summary["tokenizer"]["sha256"] == tokenizer_fingerprint(result.tokenizer)


def test_shared_tokenizer_is_trained_once_and_reused(tmp_path):
    corpus = split_units(_units(), heldout_fraction=0.2)
    first = shared_tokenizer(tmp_path / "tok", corpus, 300)
    other_corpus = split_units([TextUnit("en", "x", "completely different words here " * 50)], heldout_fraction=0.0)
    again = shared_tokenizer(tmp_path / "tok", other_corpus, 260)  # the saved one wins
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(again)
    assert tokenizer_fingerprint(train_tokenizer([u.text for u in other_corpus.train], 260)) != \
        tokenizer_fingerprint(first)
    with pytest.raises(InputError, match="no tokenizer"):
        shared_tokenizer(tmp_path / "none")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(InputError, match="no tokenizer.json"):
        shared_tokenizer(tmp_path / "junk", corpus)


def test_a_seed_family_shares_its_tokenizer_and_differs_in_weights(tmp_path):
    corpus = split_units(_units(), heldout_fraction=0.2, seed=0)
    settings = TrainSettings(steps=4, max_minutes=None, batch_size=4, vocab_size=300, seed=99, threads=1)
    family = train_seed_family(tmp_path / "fam", corpus, [3, 5], size=TINY, settings=settings, echo=None)
    assert [m["name"] for m in family["members"]] == ["seed-3", "seed-5"]
    assert family["source"] == "toy" and family["size"]["n_layers"] == TINY.n_layers
    models = [load_model(tmp_path / "fam" / m["name"]) for m in family["members"]]
    text = TEXTS[0] + TEXTS[3]
    assert models[0].tokenizer(text)["input_ids"] == models[1].tokenizer(text)["input_ids"]
    assert tokenizer_fingerprint(models[0].tokenizer) == tokenizer_fingerprint(models[1].tokenizer) \
        == family["tokenizer_sha256"]
    summaries = [json.loads((tmp_path / "fam" / m["name"] / "training.json").read_text()) for m in family["members"]]
    assert [s["settings"]["seed"] for s in summaries] == [3, 5]  # the member's seed, not the settings'
    assert all(s["tokenizer"]["shared"] for s in summaries)
    assert not torch.equal(models[0].w_in(0), models[1].w_in(0))
    # the same seed trains the same weights (a step-bound run is deterministic)
    single = train_toy_model(tmp_path / "single", corpus, size=TINY, echo=None, tokenizer=models[0].tokenizer,
                             settings=TrainSettings(steps=4, max_minutes=None, batch_size=4, seed=3, threads=1))
    assert torch.equal(single.model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight,
                       models[0].model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight)
    # resumable: members on disk are kept, a new seed is added
    before = (tmp_path / "fam" / "seed-3" / "model.safetensors").stat().st_mtime_ns
    lines: list[str] = []
    family = train_seed_family(tmp_path / "fam", corpus, [3, 5, 7], size=TINY, settings=settings, echo=lines.append)
    assert (tmp_path / "fam" / "seed-3" / "model.safetensors").stat().st_mtime_ns == before
    assert any("seed-3: already trained" in line for line in lines) and len(family["members"]) == 3
    with pytest.raises(InputError, match="distinct seeds"):
        train_seed_family(tmp_path / "fam", corpus, [1, 1], size=TINY, settings=settings, echo=None)


def test_cli_train_seeds_trains_a_family_and_records_hub_families(tmp_path):
    from needle.universal import resolve_family

    code = tmp_path / "code"
    code.mkdir()
    for i in range(6):
        (code / f"m{i}.py").write_text(TEXTS[3] * 3)
    tiny = ["--python", str(code), "--no-ud", "--vocab-size", "280", "--hidden-size", "16", "--layers", "1",
            "--heads", "2", "--neurons", "32", "--context-length", "16", "--batch-size", "2", "--threads", "1",
            "--steps", "2"]
    result = CliRunner().invoke(app, ["toy", "train-seeds", "--out", str(tmp_path / "fam"), "--seeds", "2", *tiny])
    assert result.exit_code == 0, result.output
    assert "seed-0: held-out loss" in result.output and "seed-1: held-out loss" in result.output
    assert [m.name for m in resolve_family(tmp_path / "fam")] == ["seed-0", "seed-1"]
    # needle toy train --seed S --tokenizer DIR joins the family with the same tokenizer
    result = CliRunner().invoke(app, ["toy", "train", "--out", str(tmp_path / "fam" / "seed-9"), "--seed", "9",
                                      "--tokenizer", str(tmp_path / "fam" / "tokenizer"), *tiny])
    assert result.exit_code == 0, result.output
    fingerprints = {json.loads((tmp_path / "fam" / name / "training.json").read_text())["tokenizer"]["sha256"]
                    for name in ("seed-0", "seed-1", "seed-9")}
    assert len(fingerprints) == 1
    result = CliRunner().invoke(app, ["toy", "train-seeds", "--out", str(tmp_path / "crfm"), "--hub",
                                      "stanford-crfm-gpt2-small", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    assert [m.model for m in resolve_family(tmp_path / "crfm")] == [
        "stanford-crfm/alias-gpt2-small-x21", "stanford-crfm/battlestar-gpt2-small-x49",
        "stanford-crfm/caprica-gpt2-small-x81"]
    result = CliRunner().invoke(app, ["toy", "train-seeds", "--out", str(tmp_path / "x"), "--hub", "polypythia-70m",
                                      "--seeds", "11"])
    assert result.exit_code != 0 and "published members" in str(result.exception)
