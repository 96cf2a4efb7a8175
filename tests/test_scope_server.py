"""needle scope serve: the viewer's HTTP answers equal ModelAdapter.capture, and bad input gets a clear JSON error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from model_zoo import build_model

TEXT = "def function(argument):\n    return argument + 1  # a comment\n"


@pytest.fixture(scope="module")
def adapter(bpe_tokenizer):
    from needle.models import adapt

    model = build_model("llama", len(bpe_tokenizer))
    model.config.max_position_embeddings = 64  # a short context, to test the length limit cheaply
    return adapt(model, bpe_tokenizer, model_id="tiny-llama")


@pytest.fixture(scope="module")
def probe():
    return {"id": "comment/L1/mean_diff/k2", "feature": "comment", "layer": 1, "method": "mean_diff", "k": 2,
            "f1": 0.5, "neurons": [3, 17], "coef": [0.75, -1.5], "intercept": 0.25}


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("site")


@pytest.fixture(scope="module")
def server(adapter, probe, site_dir):
    from needle.scope import Viewer, make_server, serve_in_thread
    from needle.scope.tables import NeuronRef

    site = site_dir
    (site / "index.html").write_text("<h1>site</h1>")
    (site.parent / "secret.txt").write_text("not for the web")
    viewer = Viewer(adapter, probes=[probe], site="/site/", neuron_pages={NeuronRef(1, 17)},
                    neuron_scales={NeuronRef(1, 17): 1000.0})
    httpd = make_server(viewer, port=0, site_dir=site)
    serve_in_thread(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def request(base: str, path: str, payload=None, *, raw: bytes | None = None):
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def expected_activations(adapter, text: str, layer: int) -> torch.Tensor:
    ids = torch.tensor([adapter.tokenizer(text)["input_ids"]])
    return adapter.capture(ids, torch.ones_like(ids), [layer])[layer][0]


def test_binds_to_localhost_only(server):
    assert server.startswith("http://127.0.0.1:")


def test_activations_equal_capture(server, adapter):
    status, kind, body = request(server, "/api/activations", {"text": TEXT, "layer": 2, "neuron": 5})
    assert status == 200 and kind.startswith("application/json")
    answer = json.loads(body)
    acts = expected_activations(adapter, TEXT, 2)
    assert answer["activations"] == acts[:, 5].tolist()  # exact: float32 → JSON → float is lossless
    assert answer["token_ids"] == adapter.tokenizer(TEXT)["input_ids"]
    assert "".join(answer["tokens"]) == TEXT  # byte-level BPE tokens spell the text back
    assert answer["max_abs"] == pytest.approx(float(acts[:, 5].abs().max()))
    assert answer["scale"] == answer["max_abs"] and "this text" in answer["scale_source"]
    assert "probe" not in answer and "page" not in answer
    assert answer["mode"] == "neuron" and answer["values"] == answer["activations"]
    # offsets: each token's characters in the text, in order, covering every non-space character
    pieces = [TEXT[a:b] for a, b in answer["offsets"]]
    assert "".join(pieces).replace(" ", "") == TEXT.replace(" ", "")


def test_probe_prediction_per_token(server, adapter, probe):
    status, _, body = request(server, "/api/activations", {"text": TEXT, "probe": probe["id"]})
    assert status == 200
    answer = json.loads(body)
    assert (answer["layer"], answer["neuron"]) == (1, 17)  # the probe's largest |coefficient|
    assert answer["page"] == "/site/neurons/L1/L1.N17.html"
    acts = expected_activations(adapter, TEXT, 1).double().numpy()
    scores = acts[:, probe["neurons"]] @ np.array(probe["coef"]) + probe["intercept"]
    assert answer["probe"]["scores"] == pytest.approx(scores.tolist(), rel=1e-9)
    # probe mode colours the tokens by the probe's score, relative to its largest |score| on the text, not by
    # the neuron (whose activations still come along, for the table)
    assert answer["mode"] == "probe" and answer["values"] == answer["probe"]["scores"]
    assert answer["scale"] == pytest.approx(np.abs(scores).max()) and "probe score" in answer["scale_source"]
    assert answer["activations"] == pytest.approx(acts[:, 17].tolist(), rel=1e-6)
    assert answer["probe"]["neurons"] == probe["neurons"]
    assert answer["probe"]["probabilities"] == pytest.approx((1 / (1 + np.exp(-scores))).tolist(), rel=1e-9)
    assert answer["probe"]["predicted"] == (scores > 0).tolist()


def test_get_with_query_parameters_works_too(server, adapter):
    status, _, body = request(server, "/api/activations?text=hello%20world&layer=0&neuron=1")
    assert status == 200
    assert json.loads(body)["activations"] == expected_activations(adapter, "hello world", 0)[:, 1].tolist()


@pytest.mark.parametrize("payload, message", [
    ({"text": "", "layer": 0, "neuron": 0}, "empty"),
    ({"text": "   \n ", "layer": 0, "neuron": 0}, "empty"),
    ({"text": "word " * 200, "layer": 0, "neuron": 0}, "at most 64 tokens"),
    ({"text": "hello", "layer": 0, "neuron": 10_000}, "neuron 10000 does not exist"),
    ({"text": "hello", "layer": 0, "neuron": -1}, "neuron -1 does not exist"),
    ({"text": "hello", "layer": 9, "neuron": 0}, "layer 9 does not exist"),
    ({"text": "hello", "layer": "x", "neuron": 0}, "not a number"),
    ({"text": "hello", "layer": 0}, "choose a layer and a neuron"),
    ({"text": "hello", "probe": "nope"}, "unknown probe"),
    ({"text": "hello", "probe": "comment/L1/mean_diff/k2", "layer": 2, "neuron": 0}, "reads layer 1"),
    ({"text": "hello", "layer": 0, "neuron": 0, "colour": "red"}, "unknown fields"),
    ({"text": 5, "layer": 0, "neuron": 0}, "must be a string"),
])
def test_bad_input_gets_a_clear_json_error(server, payload, message):
    status, kind, body = request(server, "/api/activations", payload)
    assert status == 400 and kind.startswith("application/json")
    error = json.loads(body)["error"]
    assert message in error and "Traceback" not in error


def test_malformed_requests(server):
    status, _, body = request(server, "/api/activations", raw=b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    status, _, body = request(server, "/api/activations", raw=b"[1, 2]")
    assert status == 400 and "JSON object" in json.loads(body)["error"]
    status, _, body = request(server, "/api/nothing")
    assert status == 404 and "no such endpoint" in json.loads(body)["error"]


def test_pages_assets_and_site(server, adapter, probe):
    status, kind, body = request(server, "/")
    assert status == 200 and kind.startswith("text/html") and b'id="text"' in body
    status, kind, body = request(server, "/assets/viewer.js")
    assert status == 200 and "javascript" in kind and b"/api/activations" in body
    assert request(server, "/assets/../server.py")[0] == 404
    status, _, body = request(server, "/site/")
    assert status == 200 and body == b"<h1>site</h1>"
    assert request(server, "/site/../secret.txt")[0] == 404
    assert request(server, "/site/%2e%2e/secret.txt")[0] == 404
    status, _, body = request(server, "/api/info")
    info = json.loads(body)
    assert info["n_layers"] == adapter.n_layers and info["n_neurons"] == adapter.n_neurons
    assert info["max_tokens"] == 64 and [p["id"] for p in info["probes"]] == [probe["id"]]


def test_port_in_use_is_a_clear_error(server, adapter):
    from needle.errors import InputError
    from needle.scope import Viewer, make_server

    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(InputError, match="choose another --port"):
        make_server(Viewer(adapter), port=port)


def test_notes_are_saved_beside_the_site_atomically(server, site_dir):
    from needle.scope.server import notes_path, read_notes

    path = notes_path(site_dir)
    assert path.parent == site_dir.parent and path.name == f"{site_dir.name}.notes.json"
    status, _, body = request(server, "/api/notes")
    assert status == 200 and json.loads(body) == {"notes": {}, "path": path.name} and not path.exists()
    status, _, body = request(server, "/api/notes", {"neuron": "L1.N17", "text": "fires on # comments\n"})
    assert status == 200 and json.loads(body)["notes"] == {"L1.N17": "fires on # comments\n"}
    # another id form names the same neuron; a second note joins the first
    request(server, "/api/notes", {"neuron": "0:3", "text": "ünïcode ✓"})
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["format"] == "needle.ScopeNotes"
    assert stored["notes"] == {"L0.N3": "ünïcode ✓", "L1.N17": "fires on # comments\n"}
    assert read_notes(path) == stored["notes"]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")] == []  # no temporary left
    # an empty text removes the note
    request(server, "/api/notes", {"neuron": "L0.N3", "text": "  "})
    assert read_notes(path) == {"L1.N17": "fires on # comments\n"}
    for payload, message in (({"neuron": "nope", "text": "x"}, "not a neuron id"),
                             ({"text": "x"}, "needs the neuron"),
                             ({"neuron": "L1.N2", "text": 3}, "must be a string"),
                             ({"neuron": "L1.N2", "text": "x" * 20_001}, "at most 20000"),
                             ({"neuron": "L1.N2", "text": "x", "colour": 1}, "unknown fields")):
        status, _, body = request(server, "/api/notes", payload)
        assert status == 400 and message in json.loads(body)["error"], payload
    assert read_notes(path) == {"L1.N17": "fires on # comments\n"}  # refused requests change nothing


def test_notes_need_a_site(adapter):
    from needle.scope import Viewer, make_server, serve_in_thread

    httpd = make_server(Viewer(adapter), port=0)
    serve_in_thread(httpd)
    try:
        status, _, body = request(f"http://127.0.0.1:{httpd.server_address[1]}", "/api/notes")
        assert status == 404 and "--site" in json.loads(body)["error"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_broken_notes_file_is_a_clear_error(tmp_path):
    from needle.errors import FormatError
    from needle.scope.server import save_note

    path = tmp_path / "site.notes.json"
    path.write_text("{not json")
    with pytest.raises(FormatError, match="not a notes file"):
        save_note(path, "L1.N2", "x")
    assert path.read_text() == "{not json"  # left as it was
