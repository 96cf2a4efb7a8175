"""SAEs: encoders against a hand computation, SAELens's folder format (and sae-lens itself), extraction of
latents, probing on them, and the trainer's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model_zoo import build_model
from needle.activations import extract
from needle.errors import FormatError, InputError
from needle.models import adapt
from needle.sae import SparseAutoencoder, evaluate_sae, load_sae, save_sae, train_sae
from needle.sae.autoencoder import sae_site_and_layers
from test_extract import make_dataset

D_IN, D_SAE = 6, 10


def random_weights(seed=0, d_in=D_IN, d_sae=D_SAE):
    rng = np.random.default_rng(seed)
    return {"W_enc": rng.normal(size=(d_in, d_sae)), "b_enc": rng.normal(size=d_sae) * 0.3,
            "W_dec": rng.normal(size=(d_sae, d_in)), "b_dec": rng.normal(size=d_in) * 0.3,
            "threshold": rng.uniform(0.0, 0.8, size=d_sae)}


def hand_encode(x, w, architecture, k=None, apply_b_dec=True, normalize="none", rescale=False):
    """One row at a time, one latent at a time, in float64: the definitions, not the vectorised code."""
    out = np.zeros((len(x), w["W_enc"].shape[1]))
    for r, row in enumerate(np.asarray(x, np.float64)):
        if normalize == "layer_norm":
            mu = row.mean()
            std = np.sqrt(((row - mu) ** 2).sum() / (len(row) - 1))
            row = (row - mu) / (std + 1e-5)
        elif normalize == "constant_norm_rescale":
            row = row * np.sqrt(len(row)) / np.sqrt((row ** 2).sum())
        if apply_b_dec:
            row = row - w["b_dec"]
        pre = [sum(row[i] * w["W_enc"][i, j] for i in range(len(row))) + w["b_enc"][j] for j in range(out.shape[1])]
        if rescale:
            pre = [p * np.sqrt((w["W_dec"][j] ** 2).sum()) for j, p in enumerate(pre)]
        for j, p in enumerate(pre):
            if architecture == "standard":
                out[r, j] = max(p, 0.0)
            elif architecture == "jumprelu":
                out[r, j] = p if p > w["threshold"][j] and p > 0 else 0.0
            else:
                rank = sum(q > p for q in pre)  # ties have probability 0 with Gaussian weights
                out[r, j] = max(p, 0.0) if rank < k else 0.0
    return out


def make_sae(w, architecture, k=None, **kwargs):
    return SparseAutoencoder(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], architecture=architecture, k=k,
                             threshold=w["threshold"] if architecture == "jumprelu" else None, **kwargs)


CASES = [("standard", None, {}), ("jumprelu", None, {}), ("topk", 3, {}), ("topk", 1, {"apply_b_dec_to_input": False}),
         ("topk", 4, {"rescale_acts_by_decoder_norm": True}), ("standard", None, {"normalize_activations": "layer_norm"}),
         ("jumprelu", None, {"normalize_activations": "constant_norm_rescale"})]


@pytest.mark.parametrize("architecture,k,options", CASES)
def test_encoder_equals_hand_computation(architecture, k, options):
    w = random_weights(1)
    x = np.random.default_rng(2).normal(size=(25, D_IN)) * 2
    sae = make_sae(w, architecture, k, **options)
    want = hand_encode(x, w, architecture, k, apply_b_dec=options.get("apply_b_dec_to_input", True),
                       normalize=options.get("normalize_activations", "none"),
                       rescale=options.get("rescale_acts_by_decoder_norm", False))
    got = sae.encode(torch.tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (got > 0).sum() > 0 and (got == 0).sum() > 0  # the activation function did something
    if architecture == "topk":
        assert ((got > 0).sum(1) <= k).all()
    # (…, d_in) batches keep their leading shape
    assert sae(torch.zeros(2, 3, D_IN)).shape == (2, 3, D_SAE)


@pytest.mark.parametrize("architecture,k,options", CASES)
def test_folder_round_trip_is_exact(tmp_path, architecture, k, options):
    w = random_weights(3)
    sae = make_sae(w, architecture, k, metadata={"hook_name": "blocks.1.hook_resid_post"}, **options)
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE
    back = load_sae(tmp_path / "sae")
    assert back.name == sae.name and back.hook == ("hook_resid_post", 1)
    x = torch.randn(40, D_IN)
    assert torch.equal(back.encode(x), sae.encode(x)) and torch.equal(back.reconstruct(x), sae.reconstruct(x))
    with pytest.raises(InputError, match="already exists"):
        save_sae(sae, tmp_path / "sae")


def test_older_saelens_configs_and_bad_folders(tmp_path):
    from safetensors.numpy import save_file

    w = random_weights(4)
    folder = tmp_path / "old"
    folder.mkdir()
    weights = {key: w[key].astype(np.float32) for key in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file(weights, str(folder / "sae_weights.safetensors"))
    # SAELens < 6: activation function and k in activation_fn_str / activation_fn_kwargs, hook at the top level
    (folder / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "topk",
                                                 "activation_fn_kwargs": {"k": 2}, "hook_name": "blocks.0.hook_mlp_out",
                                                 "apply_b_dec_to_input": False}))
    sae = load_sae(folder)
    assert sae.architecture == "topk" and sae.k == 2 and sae.hook == ("hook_mlp_out", 0)
    x = np.random.default_rng(5).normal(size=(9, D_IN))
    np.testing.assert_allclose(sae.encode(torch.tensor(x, dtype=torch.float32)).numpy(),
                               hand_encode(x, w, "topk", 2, apply_b_dec=False), rtol=1e-4, atol=1e-4)
    # JumpReLU saved with log_threshold (older trainers)
    save_file({**weights, "log_threshold": np.log(w["threshold"]).astype(np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "architecture": "jumprelu"}))
    np.testing.assert_allclose(load_sae(folder).encode(torch.tensor(x, dtype=torch.float32)).numpy(),
                               hand_encode(x, w, "jumprelu"), rtol=1e-4, atol=1e-4)
    for cfg, message in (({"d_in": D_IN, "d_sae": D_SAE, "architecture": "gated"}, "not supported"),
                         ({"d_in": D_IN + 1, "d_sae": D_SAE}, "says d_in"),
                         ({"d_in": D_IN, "d_sae": D_SAE, "normalize_activations": "expected_average_only_in"},
                          "fold it into the weights")):
        (folder / "cfg.json").write_text(json.dumps(cfg))
        with pytest.raises((InputError, FormatError), match=message):
            load_sae(folder)
    with pytest.raises(InputError, match="no such folder"):
        load_sae(tmp_path / "missing")
    with pytest.raises(FormatError, match="not an SAE folder"):
        load_sae(tmp_path)
    with pytest.raises(InputError, match="needs k"):
        make_sae(w, "topk", None)


SAE_LENS_CLASSES = {"standard": ("StandardSAE", "StandardSAEConfig"), "topk": ("TopKSAE", "TopKSAEConfig"),
                    "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig")}


@pytest.mark.parametrize("architecture", list(SAE_LENS_CLASSES))
@pytest.mark.slow
def test_sae_lens_round_trip(tmp_path, architecture):
    """What sae-lens saves, needle reads (same latents as sae-lens's encode); what needle saves, sae-lens reads."""
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install sae-lens)")
    model_class, config_class = (getattr(sae_lens, name) for name in SAE_LENS_CLASSES[architecture])
    extra = {"k": 3} if architecture == "topk" else {}
    theirs = model_class(config_class(d_in=D_IN, d_sae=D_SAE, **extra))
    w = random_weights(6)
    with torch.no_grad():
        for key, value in w.items():
            if hasattr(theirs, key):
                getattr(theirs, key).copy_(torch.tensor(value, dtype=torch.float32))
    x = torch.randn(30, D_IN) * 2
    want = theirs.encode(x).detach()
    theirs.save_model(tmp_path / "theirs")
    ours = load_sae(tmp_path / "theirs")
    np.testing.assert_allclose(ours.encode(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.decode(want).numpy(), theirs.decode(want).detach().numpy(), rtol=1e-5, atol=1e-5)
    save_sae(ours, tmp_path / "ours")
    again = sae_lens.SAE.load_from_disk(str(tmp_path / "ours"))
    assert type(again).__name__ == model_class.__name__
    np.testing.assert_allclose(again.encode(x).detach().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- extraction and probing on latents
@pytest.fixture(scope="module")
def tiny(bpe_tokenizer):
    return adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny-neox")


def test_extracted_latents_equal_the_encoder_on_raw_activations(tmp_path, tiny, bpe_tokenizer):
    dataset = make_dataset(bpe_tokenizer)
    raw = extract(tiny, dataset, tmp_path / "raw", layers=[1], site="resid", dtype="float32", progress=False)
    w = random_weights(7, d_in=tiny.d_model, d_sae=4 * tiny.d_model)
    sae = make_sae(w, "topk", 5, metadata={"hook_name": "blocks.1.hook_resid_post"})
    site, layers = sae_site_and_layers(sae, None, None)
    cache = extract(tiny, dataset, tmp_path / "sae", layers=layers, site=site, transform=sae, dtype="float32",
                    progress=False)
    assert cache.site == f"hook_resid_post+{sae.name}" and cache.width == 4 * tiny.d_model
    assert cache.transform["params"]["architecture"] == "topk"
    token = np.asarray(raw.rows["aggregation"]) == "token"
    want = sae.encode(torch.from_numpy(np.asarray(raw.layer(1))[token])).numpy()
    np.testing.assert_allclose(cache.layer(1)[token], want, rtol=1e-5, atol=1e-5)
    assert ((cache.layer(1)[token] > 0).sum(1) <= 5).all()
    # what `needle sae train --cache` reads: the raw rows, never a transformed basis
    from needle.sae import cache_activations

    assert np.array_equal(cache_activations(raw.path, 1), np.asarray(raw.layer(1)))
    with pytest.raises(InputError, match="transformed basis"):
        cache_activations(cache.path, 1)
    with pytest.raises(InputError, match="layer 0 is not"):
        cache_activations(raw.path, 0)


def test_latents_are_zoomed_in_on_like_neurons(tmp_path, tiny, bpe_tokenizer):
    from needle.models.sites import get_site
    from needle.neurons import Corpus, top_activations
    from needle.probing import sweep
    from needle.scope import build_site

    make_dataset(bpe_tokenizer).save(tmp_path / "ds")
    sae = make_sae(random_weights(7, d_in=tiny.d_model, d_sae=4 * tiny.d_model), "standard",
                   metadata={"hook_name": "blocks.1.hook_resid_post"})
    # the corpus pass reads latents through the SAE: its top value is the encoder's maximum over the corpus,
    # recomputed here from the model's own hidden states (block 1's output)
    corpus = Corpus.from_dataset(tmp_path / "ds", tokenizer=bpe_tokenizer)
    top = top_activations(tiny, corpus, [(1, 5)], site=get_site("resid", sae), n_top=1, n_bottom=0, per_band=0,
                          exclude_special=False)
    with torch.no_grad():
        latents = [sae.encode(tiny.model(input_ids=torch.as_tensor(t[None]), output_hidden_states=True)
                              .hidden_states[2][0])[:, 5] for t in corpus.tokens]
    assert top.activation.iloc[0] == pytest.approx(float(torch.cat(latents).max()), rel=1e-5)
    with pytest.raises(InputError, match="not 'resid'"):  # the residual stream's own dimensions are no units
        top_activations(tiny, corpus, [(1, 5)], site="resid")

    site, layers = sae_site_and_layers(sae, None, None)
    cache = extract(tiny, tmp_path / "ds", tmp_path / "sae", layers=layers, site=site, transform=sae,
                    dtype="float32", progress=False)
    results = sweep(cache, out=tmp_path / "r.parquet", methods=["mean_diff"], ks=[1], baselines=False)
    with pytest.raises(InputError, match="pass its transform"):
        build_site(results, cache, tmp_path / "site", model=tiny, max_sequences=4)
    out = build_site(results, cache, tmp_path / "site", model=tiny, max_sequences=4, transform=sae)
    pages = sorted((out / "neurons").rglob("*.html"))
    assert pages
    for page in pages:
        heading = page.read_text().split("<h1>")[1].split("</h1>")[0]
        assert heading.startswith("Latent L1.N") and heading.endswith(f" of {sae.name}"), heading
    # a latent's logit effect is its decoder row through the final norm's scale and W_U, by hand; shown on its page
    from needle.neurons import latent_logit_effects
    from needle.neurons.logits import final_norm_scale

    latent = int(pages[0].stem.split(".N")[1])
    effects = latent_logit_effects(tiny, get_site("resid", sae), 1, latent, top=3)
    by_hand = (sae.w_dec[latent].double() * final_norm_scale(tiny).double()) @ tiny.unembed().double()
    np.testing.assert_allclose(effects.effects, by_hand.numpy(), rtol=1e-4, atol=1e-6)
    best = effects.table[effects.table["kind"] == "top"].iloc[0]
    assert f"{best.effect:.3f}" in pages[0].read_text()
    # and its examples by direct logit attribution: activation × its decoder row's effect on the true next token
    # (tests/test_neurons_dla.py checks those values against the weights by hand)
    from needle.neurons import logit_attribution
    from needle.scope import default_corpus

    found = logit_attribution(tiny, default_corpus(cache, bpe_tokenizer, max_sequences=4), [(1, latent)],
                              site=get_site("resid", sae), n_top=20, context=(16, 4))
    html = pages[0].read_text()
    assert "Examples by direct logit attribution" in html and "this latent most raises" in html
    raised = found.examples[found.examples["kind"] == "raises"].sort_values("rank")
    assert len(raised) and f"{raised.attribution.iloc[0]:.4f}" in html


def test_latent_pages_of_an_encoder_say_why_there_is_no_attribution(tmp_path, bpe_tokenizer):
    from needle.probing import sweep
    from needle.scope import build_site

    encoder = adapt(build_model("bert", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny-bert")
    make_dataset(bpe_tokenizer).save(tmp_path / "ds")
    sae = make_sae(random_weights(3, d_in=encoder.d_model, d_sae=2 * encoder.d_model), "topk", 4,
                   metadata={"hook_name": "blocks.1.hook_resid_post"})
    cache = extract(encoder, tmp_path / "ds", tmp_path / "sae", layers=[1], site="resid", transform=sae,
                    dtype="float32", progress=False)
    results = sweep(cache, out=tmp_path / "r.parquet", methods=["mean_diff"], ks=[1], baselines=False)
    out = build_site(results, cache, tmp_path / "site", model=encoder, max_sequences=4, transform=sae)
    pages = sorted((out / "neurons").rglob("*.html"))
    assert pages
    html = pages[0].read_text()
    assert "tiny-bert is an encoder" in html and f"the latents of {cache.basis} have no direct effect" in html
    assert "no examples by direct logit attribution" in html and "Examples by direct logit attribution" not in html


def test_sae_site_and_layers_refuses_the_wrong_place():
    sae = make_sae(random_weights(8), "standard", metadata={"hook_name": "blocks.3.hook_resid_post"})
    assert sae_site_and_layers(sae, None, None) == ("hook_resid_post", [3])
    assert sae_site_and_layers(sae, "blocks.3.hook_resid_post", None) == ("blocks.3.hook_resid_post", [3])
    with pytest.raises(InputError, match="--layers 3"):
        sae_site_and_layers(sae, None, [2])
    with pytest.raises(InputError, match="not on site"):
        sae_site_and_layers(sae, "post", None)
    bare = make_sae(random_weights(8), "standard")
    assert sae_site_and_layers(bare, "blocks.2.hook_mlp_out", None) == ("blocks.2.hook_mlp_out", [2])
    with pytest.raises(InputError, match="pass --layers"):
        sae_site_and_layers(bare, "resid", None)


def test_probing_finds_a_planted_latent():
    """A feature carried by one latent: the sweep over the SAE basis finds that latent at k=1."""
    from needle.probing import ArraySource, sweep

    rng = np.random.default_rng(0)
    n, planted = 800, 7
    w = random_weights(9, d_in=12, d_sae=40)
    sae = make_sae(w, "standard")
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = (rng.random(n) < 0.3).astype(np.int8)
    # add the planted latent's encoder direction to the positive rows: its latent lights up
    direction = w["W_enc"][:, planted] / np.linalg.norm(w["W_enc"][:, planted]) ** 2
    x[y == 1] += (12.0 * direction).astype(np.float32)
    latents = sae.encode(torch.from_numpy(x)).numpy()
    source = ArraySource({0: latents}, {"planted": (np.arange(n), y)}, groups=np.arange(n) // 4,
                         manifest={"site": f"hook_resid_post+{sae.name}"})
    results = sweep(source, out=None, methods=["mean_diff"], ks=[1], progress=False)
    best = results[(results["k"] == 1)].iloc[0]
    assert list(best["neurons"]) == [planted] and best["f1"] > 0.8


# ---------------------------------------------------------------- training
def planted_codes(seed=0, n=3000, d=12, m=48, p=0.05):
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(m, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    codes = (rng.random((n, m)) < p) * rng.exponential(1.0, (n, m))
    return (5.0 * (codes @ dictionary) + 0.02 * rng.normal(size=(n, d)) + 3.0).astype(np.float32)


def test_evaluate_sae_equals_numpy():
    sae = make_sae(random_weights(10), "topk", 3)
    x = np.random.default_rng(11).normal(size=(200, D_IN)).astype(np.float32)
    z = hand_encode(x, random_weights(10), "topk", 3)
    x_hat = sae.reconstruct(torch.from_numpy(x)).numpy().astype(np.float64)
    np.testing.assert_allclose(x_hat, z @ random_weights(10)["W_dec"] + random_weights(10)["b_dec"], atol=1e-4)
    got = evaluate_sae(sae, x)
    assert got["mse"] == pytest.approx(((x - x_hat) ** 2).mean(), rel=1e-6)
    assert got["explained_variance"] == pytest.approx(1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(),
                                                      rel=1e-6)
    assert got["l0"] == pytest.approx((z > 0).sum(1).mean())
    assert got["dead_fraction"] == pytest.approx(1 - (z > 0).any(0).mean())
    assert got["n_rows"] == 200 and got["l0_se"] == pytest.approx((z > 0).sum(1).std(ddof=1) / np.sqrt(200))


@pytest.fixture
def one_thread():
    """Small matrices: one thread is faster than two on a shared machine, and the result does not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_trainer_learns_planted_codes_and_is_deterministic(architecture, one_thread):
    x = planted_codes()
    kwargs = dict(width=48, k=4, l1=1.0, steps=80, batch_size=256, lr=3e-3, architecture=architecture, seed=1)
    sae, report = train_sae(x, **kwargs)
    e = report["eval"]
    # scale folded back: the SAE reads raw (shifted, scaled) activations
    assert e["explained_variance"] > 0.6 and e["n_rows"] == 300 and report["params"]["n_train"] == 2700
    if architecture == "topk":
        assert e["l0"] <= 4
    else:
        assert e["l0"] < 48 / 2  # sparse, not dense
    again, _ = train_sae(x, **kwargs)
    assert torch.equal(again.w_enc, sae.w_enc)
    baseline = evaluate_sae(make_sae(random_weights(0, 12, 48), "topk", 4), x)
    assert e["explained_variance"] > baseline["explained_variance"] + 0.3


@pytest.mark.slow
def test_sae_lens_trainer_runs_offline(one_thread):
    pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install sae-lens)")
    sae, report = train_sae(planted_codes(n=1000), width=48, k=4, steps=60, batch_size=128, lr=3e-3,
                            trainer="sae-lens")
    assert sae.architecture == "topk" and report["params"]["trainer"] == "sae-lens"
    assert report["eval"]["l0"] <= 4 and report["eval"]["explained_variance"] > 0.2


def test_trainer_bad_input():
    x = planted_codes(n=100)
    for kwargs, message in (({"architecture": "gated"}, "architecture"), ({"k": 0}, "k must be"),
                            ({"trainer": "x"}, "trainer"), ({"eval_fraction": 1.5}, "eval_fraction")):
        with pytest.raises(InputError, match=message):
            train_sae(x, steps=1, **kwargs)
    with pytest.raises(InputError, match="too few"):
        train_sae(x[:2], steps=1)


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, bpe_tokenizer):
    path = tmp_path_factory.mktemp("tiny-neox-sae")
    build_model("gpt_neox", len(bpe_tokenizer)).save_pretrained(path)
    bpe_tokenizer.save_pretrained(path)
    return path


def test_sae_train_info_and_extract_commands(tmp_path, tiny_dir, bpe_tokenizer):
    from typer.testing import CliRunner

    from needle.activations import load_cache
    from needle.cli import app

    runner = CliRunner()
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"The quick brown fox {i} jumps over the lazy dog, def f(x): return x + {i}"
                              for i in range(60)))
    out = tmp_path / "sae"
    result = runner.invoke(app, ["sae", "train", "--model", str(tiny_dir), "--layer", "1", "--text", str(text),
                                 "--max-tokens", "600", "--expansion", "2", "--k", "4", "--steps", "20",
                                 "--batch-size", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "explained variance" in result.output and "dead" in result.output
    report = json.loads((out / "training_report.json").read_text())
    assert report["params"]["d_sae"] == 64 and report["eval"]["n_rows"] == 60 and report["params"]["n_train"] == 540
    sae = load_sae(out)
    assert sae.hook == ("hook_resid_post", 1) and sae.k == 4
    result = runner.invoke(app, ["sae", "info", str(out)])
    assert result.exit_code == 0 and "blocks.1.hook_resid_post" in result.output
    make_dataset(bpe_tokenizer).save(tmp_path / "ds")
    result = runner.invoke(app, ["extract", "--model", str(tiny_dir), "--dataset", str(tmp_path / "ds"),
                                 "--out", str(tmp_path / "cache"), "--sae", str(out)])
    assert result.exit_code == 0, result.output
    cache = load_cache(tmp_path / "cache")
    assert cache.layers == [1] and cache.site == f"hook_resid_post+{sae.name}" and cache.width == 64
    token = np.asarray(cache.rows["aggregation"]) == "token"  # a span's mean of latents is not k-sparse
    assert ((np.asarray(cache.layer(1))[token] > 0).sum(1) <= 4).all()
    # the latents' sweep and their scope pages, the SAE given to the site as to the extraction
    result = runner.invoke(app, ["probe", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "r.parquet"),
                                 "--methods", "mean_diff", "--k", "1", "--no-baselines"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["scope", "build", "--results", str(tmp_path / "r.parquet"), "--cache",
                                 str(tmp_path / "cache"), "--out", str(tmp_path / "site"), "--model", str(tiny_dir),
                                 "--max-sequences", "4", "--sae", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    page = next((tmp_path / "site" / "neurons").rglob("*.html")).read_text()
    assert f" of {sae.name}</h1>" in page


def test_bad_sae_path_is_one_line(monkeypatch, capsys, tmp_path):
    from needle.cli import main

    monkeypatch.setattr("sys.argv", ["needle", "extract", "--dataset", str(tmp_path), "--out", str(tmp_path / "o"),
                                     "--sae", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --sae") and "\n" not in err
