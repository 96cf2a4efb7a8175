"""needle scope serve --sae: the viewer's HTTP answers are the SAE encoder applied to the model's hidden states,
recomputed here in numpy from the weights; a site of latents is served with its SAE only."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from model_zoo import build_model
from test_scope_server import request

TEXT = "def function(argument):\n    return argument + 1  # a comment\n"
LAYER, K = 1, 3


@pytest.fixture(scope="module")
def adapter(bpe_tokenizer):
    from needle.models import adapt

    model = build_model("gpt_neox", len(bpe_tokenizer), seed=3)
    return adapt(model, bpe_tokenizer, model_id="tiny-neox")


@pytest.fixture(scope="module")
def weights(adapter):
    rng = np.random.default_rng(11)
    d, n = adapter.d_model, 4 * adapter.d_model
    return {"W_enc": rng.normal(size=(d, n)), "b_enc": rng.normal(size=n) * 0.1,
            "W_dec": rng.normal(size=(n, d)) / np.sqrt(d), "b_dec": rng.normal(size=d) * 0.1}


@pytest.fixture(scope="module")
def sae(weights):
    from needle.sae import SparseAutoencoder

    return SparseAutoencoder(weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"],
                             architecture="topk", k=K, metadata={"hook_name": f"blocks.{LAYER}.hook_resid_post"})


@pytest.fixture(scope="module")
def probe(sae):
    return {"id": "comment/L1/mean_diff/k2", "feature": "comment", "layer": LAYER, "method": "mean_diff", "k": 2,
            "f1": 0.5, "neurons": [4, 21], "coef": [0.5, -2.0], "intercept": 0.1}


@pytest.fixture(scope="module")
def server(adapter, sae, probe):
    from needle.scope import Viewer, make_server, serve_in_thread

    viewer = Viewer(adapter, site_name="resid", transform=sae, probes=[probe])
    httpd = make_server(viewer, port=0)
    serve_in_thread(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def numpy_latents(adapter, weights, text: str) -> np.ndarray:
    """TopK latents of block LAYER's output, by the definition in float64 numpy: (pos, d_sae)."""
    ids = torch.tensor([adapter.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        hidden = adapter.model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1][0]
    pre = (hidden.double().numpy() - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    out = np.zeros_like(pre)
    for r, row in enumerate(pre):
        keep = np.argsort(-row, kind="stable")[:K]
        out[r, keep] = np.maximum(row[keep], 0.0)
    return out


def test_latent_activations_are_the_encoder_on_the_hidden_states(server, adapter, weights):
    latents = numpy_latents(adapter, weights, TEXT)
    chosen = int(np.argmax((latents > 0).sum(0)))  # a latent that fires on the text
    status, _, body = request(server, "/api/activations", {"text": TEXT, "layer": LAYER, "neuron": chosen})
    assert status == 200
    answer = json.loads(body)
    assert answer["unit"] == "latent" and answer["mode"] == "neuron"
    np.testing.assert_allclose(answer["activations"], latents[:, chosen], rtol=1e-4, atol=1e-5)
    assert sum(v > 0 for v in answer["activations"]) == int((latents[:, chosen] > 0).sum()) > 0
    assert answer["token_ids"] == adapter.tokenizer(TEXT)["input_ids"]


def test_a_probe_over_latents(server, adapter, weights, probe):
    status, _, body = request(server, "/api/activations", {"text": TEXT, "probe": probe["id"]})
    assert status == 200
    answer = json.loads(body)
    latents = numpy_latents(adapter, weights, TEXT)
    scores = latents[:, probe["neurons"]] @ np.array(probe["coef"]) + probe["intercept"]
    np.testing.assert_allclose(answer["probe"]["scores"], scores, rtol=1e-4, atol=1e-5)
    assert answer["neuron"] == 21  # the largest |coefficient|


def test_info_names_latents_and_only_the_sae_layer(server, adapter, sae):
    status, _, body = request(server, "/api/info")
    info = json.loads(body)
    assert info["unit"] == "latent" and info["layers"] == [LAYER] and info["n_neurons"] == sae.d_sae
    assert info["site"] == f"hook_resid_post+{sae.name}" and info["basis"] != "neurons"


@pytest.mark.parametrize("payload, message", [
    ({"text": "hello", "layer": 0, "neuron": 0}, "latents mean nothing at layer 0"),
    ({"text": "hello", "layer": LAYER, "neuron": 10_000}, "latent 10000 does not exist"),
    ({"text": "hello", "layer": LAYER, "neuron": "x"}, "latent 'x' is not a number"),
])
def test_bad_latent_requests(server, payload, message):
    status, _, body = request(server, "/api/activations", payload)
    assert status == 400 and message in json.loads(body)["error"]


def test_a_site_of_latents_needs_its_sae(tmp_path, adapter, sae, probe):
    from needle.scope import Viewer

    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text(json.dumps({
        "model_id": adapter.model_id, "site": f"hook_resid_post+{sae.name}", "neurons": ["L1.N21"],
        "neuron_scales": {"L1.N21": 2.5}}))
    (site / "probes.json").write_text(json.dumps([probe]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viewer = Viewer.for_site(adapter, site, site_name="resid", transform=sae)
    assert list(viewer.probes) == [probe["id"]] and viewer.neuron_scales
    with pytest.warns(UserWarning, match="pass the SAE it was built with"):
        plain = Viewer.for_site(adapter, site)
    assert not plain.probes and plain.unit == "neuron"
