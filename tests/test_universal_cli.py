"""``needle universal …`` end to end on a two-member toy family trained for two steps, and the scope's universality
view: every command writes its tables and figure, the tables agree with an independent recomputation, and bad input
gets one line. (Two training steps: plumbing, not findings.)"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from needle.cli import app

CONLLU = """# text = The cat sat.
1\tThe\tthe\tDET\tDT\tDefinite=Def\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\tTense=Past\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

"""


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from needle.toy import TextUnit, ToySize, TrainSettings, split_units, train_seed_family

    root = tmp_path_factory.mktemp("ucli")
    units = [TextUnit("en", f"u{i}", "The cat sat on the mat.\nThe dog sat on the log.\n" * 3) for i in range(8)]
    units += [TextUnit("python", f"p{i}", "def f(x):\n    return x + 1\n" * 6) for i in range(4)]
    corpus = split_units(units, heldout_fraction=0.25)
    tiny = ToySize(hidden_size=16, n_layers=3, n_heads=2, intermediate_size=24, context_length=16)
    train_seed_family(root / "fam", corpus, [0, 1], size=tiny, echo=None,
                      settings=TrainSettings(steps=2, max_minutes=None, batch_size=2, vocab_size=280, threads=1))
    (root / "en.txt").write_text("The cat sat on the log.\nA dog.\n" * 30)
    (root / "py.txt").write_text("def g(y):\n    return y * 2\n" * 30)
    with gzip.open(root / "tiny.conllu.gz", "wt") as handle:
        handle.write(CONLLU * 30)
    runner = CliRunner()
    corr = root / "corr"
    result = runner.invoke(app, ["universal", "correlate", "--family", str(root / "fam"), "--out", str(corr),
                                 "--text", str(root / "en.txt"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return {"root": root, "fam": root / "fam", "corr": corr, "text": [root / "en.txt", root / "py.txt"],
            "runner": runner}


def _run(family, *args):
    result = family["runner"].invoke(app, ["universal", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _model(family):
    from needle.models import load_model

    return load_model(str(family["fam"] / "seed-0"))


def test_correlate_writes_layer_fractions_and_figure(family):
    from needle.universal.correlate import UniversalCorrelations

    corr = UniversalCorrelations.load(family["corr"])
    by_layer = pd.read_csv(family["corr"] / "by_layer.csv")
    for row in by_layer.itertuples():
        part = corr.neurons if row.layer < 0 else corr.neurons[corr.neurons["layer"] == row.layer]
        assert row.n_neurons == len(part) and row.n_universal == int((part["excess"] > 0.5).sum())
        assert row.se == pytest.approx(np.sqrt(row.fraction * (1 - row.fraction) / row.n_neurons))
    assert (family["corr"] / "excess_by_layer.png").stat().st_size > 5000


def test_explain_runs_context_position_and_syntax_tests(family):
    out = family["root"] / "explain.parquet"
    args = ["explain", "--model", str(family["fam"]), "--out", str(out), "--correlations", str(family["corr"]),
            "--threshold", "-1", "--unigrams", "5", "--top", "500", "--syntax", str(family["root"] / "tiny.conllu.gz")]
    for path in family["text"]:
        args += ["--text", str(path)]
    output = _run(family, *args)
    table = pd.read_parquet(out)
    tests = set(table["test"])
    assert {"context:en", "context:py", "position"} <= tests
    assert any(t.startswith("pos:") for t in tests)
    # the context test is Eq. 3.4 under "the token's file is py.txt", recomputed from captured activations
    from needle.universal.explain import variance_reduction
    from needle.universal.tokens import pack_texts

    model = _model(family)
    values, labels = [], []
    for path, is_py in ((family["text"][0], False), (family["text"][1], True)):
        for seq in pack_texts([path.read_text()], model.tokenizer, 16):
            ids = torch.tensor(seq)[None]
            values.append(model.capture(ids, torch.ones_like(ids), [1])[1][0, 1:].numpy())
            labels.append(np.full(15, is_py))
    expected = variance_reduction(np.concatenate(values), np.concatenate(labels)[:, None])[0]
    got = table[(table["layer"] == 1) & (table["test"] == "context:py")].set_index("neuron")["score"]
    assert len(got) == 24  # --top 500 keeps every test of every neuron
    np.testing.assert_allclose(got.to_numpy(), expected[got.index.to_numpy()], atol=1e-6)
    families = pd.read_csv(family["root"] / "explain_families.csv", index_col="layer")
    assert families.to_numpy().sum() == 3 * 24  # threshold -1: every neuron is universal and has one family
    assert (family["root"] / "explain_families.png").stat().st_size > 5000
    assert "best test's family" in output


def test_roles_table_and_next_token_firing(family):
    from needle.universal.roles import next_token_firing
    from needle.universal.stats import weight_statistics
    from needle.universal.tokens import pack_texts

    out = family["root"] / "roles"
    output = _run(family, "roles", "--model", str(family["fam"]), "--out", str(out), "--text",
                  str(family["text"][0]), "--kurtosis", "0", "--max-neurons", "4", "--z", "1.5")
    roles = pd.read_parquet(out / "roles.parquet")
    model = _model(family)
    weights = weight_statistics(model)
    heavy = weights["wu_kurtosis"].to_numpy() > 0
    expected = np.where(heavy & (weights["wu_skew"] > 0), "prediction",
                        np.where(heavy & (weights["wu_skew"] < 0), "suppression", None))
    mask = expected != None  # noqa: E711 — elementwise
    assert (roles["role"].to_numpy()[mask] == expected[mask]).all()
    firing = pd.read_csv(out / "next_token_firing.csv")
    assert len(firing) == 4 and set(firing["role"]) <= {"prediction", "suppression"}
    sequences = pack_texts([family["text"][0].read_text()], model.tokenizer, 16)
    again = next_token_firing(model, sequences, list(zip(firing["layer"], firing["neuron"], firing["role"])), z=1.5)
    np.testing.assert_allclose(again["mean_in"], firing["mean_in"], rtol=1e-6)
    percentiles = pd.read_csv(out / "role_percentiles.csv")
    for layer in range(3):
        median = percentiles[(percentiles["layer"] == layer) & (percentiles["statistic"] == "wu_skew")
                             & (percentiles["percentile"] == 50)]["value"].iloc[0]
        assert median == pytest.approx(np.median(weights[weights["layer"] == layer]["wu_skew"]))
    assert (out / "role_percentiles.png").stat().st_size > 5000 and (out / "next_token_firing.png").is_file()
    assert "fire more when the next token" in output


def test_entropy_sweep_unpatched_is_the_models_own_loss(family):
    out = family["root"] / "entropy"
    output = _run(family, "entropy", "--model", str(family["fam"]), "--out", str(out), "--text",
                  str(family["text"][0]), "--values", "0,2", "--random", "3", "--antipodal", "-0.3")
    sweep = pd.read_parquet(out / "sweep.parquet")
    assert set(sweep["kind"]) == {"chosen", "random"}
    assert sweep.groupby(["layer", "neuron"]).size().eq(3).all()  # unpatched + two values
    assert sweep[sweep["kind"] == "random"]["layer"].isin([1, 2]).all()  # the last two layers
    from needle.universal.tokens import pack_texts

    model = _model(family)
    ids = torch.tensor(np.stack(pack_texts([family["text"][0].read_text()], model.tokenizer, 16)))
    with torch.no_grad():
        logits = model.model(input_ids=ids).logits[:, 1:-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 2:].reshape(-1))
    unpatched = sweep[sweep["value"].isna()]
    np.testing.assert_allclose(unpatched["loss"], float(loss), rtol=1e-5)
    pairs = pd.read_csv(out / "antipodal_pairs.csv")
    assert (pairs["cos"] <= -0.3).all()
    assert (out / "entropy.png").stat().st_size > 5000 and "entropy candidate" in output


def test_attention_scores_and_path_ablation(family):
    out = family["root"] / "attention"
    output = _run(family, "attention", "--model", str(family["fam"]), "--out", str(out), "--text",
                  str(family["text"][0]), "--neuron", "L0.N3", "--head", "2.1")
    scores = pd.read_parquet(out / "bos_scores.parquet")
    # every neuron of layers 0 and 1 against every head of a later layer: (24 × 2 heads × 2 layers) + (24 × 2)
    assert len(scores) == 24 * 2 * 2 + 24 * 2
    table = pd.read_parquet(out / "path_ablation.parquet")
    assert set(table["position"]) == set(range(8, 16))  # the second half of the context
    assert "L0.N3 → head L2.H1" in output
    assert (out / "bos_scores.png").is_file() and (out / "path_ablation.png").is_file()


def test_scope_pages_show_partners_families_and_roles(family):
    from needle.universal.correlate import UniversalCorrelations

    explain = family["root"] / "explain-scope.parquet"
    _run(family, "explain", "--model", str(family["fam"]), "--out", str(explain), "--text", str(family["text"][0]),
         "--unigrams", "5", "--no-position")
    roles = family["root"] / "roles-scope"
    _run(family, "roles", "--model", str(family["fam"]), "--out", str(roles), "--text", str(family["text"][0]),
         "--max-neurons", "0")
    site = family["root"] / "site"
    output = _run(family, "scope", "--correlations", str(family["corr"]), "--out", str(site), "--explain",
                  str(explain), "--roles", str(roles), "--threshold", "-1")
    corr = UniversalCorrelations.load(family["corr"])
    assert "72 universal neurons of 72" in output
    overview = (site / "universality.html").read_text()
    assert "universality/L2.html" in overview and "Depth specialisation" in overview
    row = corr.neurons.iloc[30]
    page = (site / "neurons" / f"L{row['layer']}" / f"{row['id']}.html").read_text()
    partners = corr.partners[(corr.partners["layer"] == row["layer"]) & (corr.partners["neuron"] == row["neuron"])]
    first = partners.sort_values("rank").iloc[0]
    assert f"{first['partner']} ({first['corr']:.3f})" in page
    best = pd.read_parquet(explain).query(f"layer == {row['layer']} and neuron == {row['neuron']} and rank == 0")
    assert best["test"].iloc[0] in page and "Role statistics" in page
    layer_page = (site / "universality" / f"L{row['layer']}.html").read_text()
    assert f"{row['id']}.html" in layer_page


def test_build_site_hook_adds_the_section_to_probe_neuron_pages(tmp_path, bpe_tokenizer):
    from needle.scope import SiteOptions, build_site
    from needle.scope.universality import load_universality
    from needle.universal.correlate import correlate_models
    from needle.universal.tokens import pack_texts
    from test_scope_site import make_tiny_sweep

    info = make_tiny_sweep(tmp_path, bpe_tokenizer)
    model = info["adapter"]
    sequences = pack_texts(["def f(x):\n    return x + 1\n" * 40], model.tokenizer, 32)
    corr = correlate_models([model, model], sequences, names=["a", "b"], progress=False)
    site = build_site(info["results"], info["cache"], tmp_path / "site", model=model, max_sequences=4,
                      options=SiteOptions(max_k_pages=1, n_top=2, n_bottom=1, per_band=1),
                      universality=load_universality(corr, threshold=0.5))
    pages = sorted((site / "neurons").rglob("*.html"))
    probed = [p for p in pages if "Chosen by probes" in p.read_text()]
    assert probed and all("<h2>Universality</h2>" in p.read_text() for p in probed)
    universal = corr.universal(0.5)
    assert len(pages) >= len(universal) and (site / "universality.html").is_file()
    # the same from the command line, the view read from correlate's saved output
    from typer.testing import CliRunner

    from needle.cli import app

    corr.save(tmp_path / "corr")
    result = CliRunner().invoke(app, ["scope", "build", "--results", str(info["results"]), "--cache",
                                      str(info["cache"].path), "--out", str(tmp_path / "cli-site"), "--model",
                                      str(info["model_dir"]), "--max-k", "1", "--max-sequences", "4",
                                      "--universality", str(tmp_path / "corr"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli-site" / "universality.html").is_file()


def test_bad_input_gets_one_line(family, monkeypatch, capsys):
    from needle.cli import main

    def run(*args):
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["needle", "universal", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code, capsys.readouterr().err

    root, fam, text = family["root"], str(family["fam"]), str(family["text"][0])
    for args, message in (
        (["entropy", "--model", fam, "--out", str(root / "e1"), "--text", text, "--values", "a,b"], "--values"),
        (["entropy", "--model", fam, "--out", str(root / "e2"), "--text", text, "--neurons", "L9.N0"], "does not exist"),
        (["attention", "--model", fam, "--out", str(root / "a1"), "--text", text, "--head", "2.1"], "--head needs"),
        (["attention", "--model", fam, "--out", str(root / "a2"), "--text", text, "--neuron", "L0.N0", "--head", "x"],
         "LAYER.HEAD"),
        (["roles", "--model", fam, "--out", str(family["corr"]), "--text", text], "already exists"),
        (["explain", "--model", fam, "--out", str(root / "x.parquet"), "--syntax", str(root / "none")],
         "does not exist"),
        (["scope", "--correlations", str(root), "--out", str(root / "s")], "neurons.parquet"),
    ):
        code, err = run(*args)
        assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_example_runs_end_to_end_at_a_tiny_size(family, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "universal_neurons.py"
    spec = importlib.util.spec_from_file_location("universal_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(["--out", str(tmp_path / "study"), "--family", str(family["fam"]), "--text",
                            str(family["text"][0]), "--syntax", str(family["root"] / "tiny.conllu.gz"),
                            "--random", "2", "--unigrams", "5", "--sweep-tokens", "256"])
    text = summary.read_text()
    from needle.universal.correlate import UniversalCorrelations

    corr = UniversalCorrelations.load(tmp_path / "study" / "correlations")
    k = int((corr.neurons["excess"] > 0.5).sum())
    assert f"**{k} of 72 neurons = {100 * k / 72:.2f} %" in text
    for heading in ("## Families", "## Roles", "## Entropy sweep", "## Attention (de)activation"):
        assert heading in text
    assert "Best test of every neuron, by layer and family" in text
    assert (tmp_path / "study" / "site" / "universality.html").is_file()
