"""Direct logit attribution: checked against the patched final residual stream, recomputed from the weights.

For each random-weight causal family, the expected attribution of a neuron at
a position is the change in the true next token's logit when ``a · w_out`` is
subtracted from the final norm's input, with the norm's scale frozen at its
unpatched value. The norm and the unembedding are applied by hand, and the
hand formula is first checked to reproduce the model's own logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model, hand_activations
from needle.errors import InputError
from needle.models import adapt
from needle.neurons import Corpus, logit_attribution, top_activations
from needle.neurons.dla import overlap

TEXTS = [
    "def add(a, b):\n    return a + b  # sum\n",
    "The quick brown fox jumps over the lazy dog again and again.",
    "class Point:\n    x = 1\n    y = [1, 2, 3]\n",
    "I went to the store, and they said we're closed at 5:30 p.m.",
]
NEURONS = [(0, 3), (2, 7), (1, 5)]


def _adapter(family: str, tokenizer):
    model = build_model(family, len(tokenizer), seed=2)
    with torch.no_grad():  # a final-norm scale that is not all ones, so that γ matters
        norm = adapt(model, tokenizer).final_norm()
        norm.weight.normal_(1.0, 0.3)
    return adapt(model, tokenizer, model_id=f"tiny-{family}")


def _final_input_and_logits(adapter, ids: torch.Tensor):
    """The final norm's input (pos, d) and the model's logits (pos, vocab) for one unpadded sequence."""
    seen = {}
    handle = adapter.final_norm().register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    try:
        with torch.no_grad():
            logits = adapter.model(input_ids=ids).logits[0].double()
    finally:
        handle.remove()
    return seen["x"][0].double(), logits


@torch.no_grad()
def _hand_logits(adapter, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The head applied to residual ``x`` (pos, d) through the final norm with scale ``sigma`` (pos,)."""
    norm = adapter.final_norm()
    layer = isinstance(norm, torch.nn.LayerNorm)
    centred = x - x.mean(-1, keepdim=True) if layer else x
    out = centred / sigma[:, None] * norm.weight.double()
    if layer and norm.bias is not None:
        out = out + norm.bias.double()
    head = adapter.model.get_output_embeddings()
    logits = out @ head.weight.double().T
    return logits + head.bias.double() if getattr(head, "bias", None) is not None else logits


def _sigma(adapter, x: torch.Tensor) -> torch.Tensor:
    norm = adapter.final_norm()
    if isinstance(norm, torch.nn.LayerNorm):
        return (x.var(-1, unbiased=False) + norm.eps).sqrt()
    return (x.pow(2).mean(-1) + norm.variance_epsilon).sqrt()


@pytest.fixture(scope="module")
def corpus(bpe_tokenizer):
    return Corpus.from_texts(TEXTS, bpe_tokenizer, context_length=12)


@pytest.mark.parametrize("family", ["gpt_neox", "gpt2", "llama"])
def test_attribution_equals_the_patched_logit_change_by_hand(family, bpe_tokenizer, corpus):
    adapter = _adapter(family, bpe_tokenizer)
    expected = {n: [] for n in NEURONS}
    where = []
    for s, tokens in enumerate(corpus.tokens):
        ids = torch.from_numpy(tokens)[None]
        x, logits = _final_input_and_logits(adapter, ids)
        sigma = _sigma(adapter, x)
        np.testing.assert_allclose(_hand_logits(adapter, x, sigma).numpy(), logits.numpy(), atol=1e-4)
        post = {layer: hand_activations(adapter, ids, layer)["post"].double() for layer in {l for l, _ in NEURONS}}
        for p in range(len(tokens) - 1):
            where.append((s, p))
            nxt = int(tokens[p + 1])
            for layer, index in NEURONS:
                a = post[layer][p, index]
                w_out = adapter.w_out(layer).double()[index]
                patched = _hand_logits(adapter, (x[p] - a * w_out)[None], sigma[p : p + 1])[0, nxt]
                clean = _hand_logits(adapter, x[p][None], sigma[p : p + 1])[0, nxt]
                expected[(layer, index)].append(float(clean - patched))
    where = np.asarray(where)
    n_top = 5
    result = logit_attribution(adapter, corpus, NEURONS, n_top=n_top, context=(2, 1), one_per_group=False,
                               batch_tokens=30)
    table = result.examples
    for neuron in NEURONS:
        values = np.asarray(expected[neuron])
        for kind, sign in (("raises", 1.0), ("lowers", -1.0)):
            got = table[(table["layer"] == neuron[0]) & (table["neuron"] == neuron[1]) & (table["kind"] == kind)]
            got = got.sort_values("rank")
            np.testing.assert_allclose(got["attribution"], sign * np.sort(sign * values)[::-1][:n_top],
                                       rtol=1e-4, atol=1e-6)
            for row in got.itertuples():
                at = np.flatnonzero((where[:, 0] == row.sequence) & (where[:, 1] == row.position))[0]
                np.testing.assert_allclose(row.attribution, values[at], rtol=1e-4, atol=1e-6)
                assert row.next_token_id == corpus.tokens[row.sequence][row.position + 1]
        summary = result.summary[(result.summary["layer"] == neuron[0]) & (result.summary["neuron"] == neuron[1])]
        assert int(summary["n_tokens"].iloc[0]) == len(values)
        np.testing.assert_allclose(summary["mean_attribution"].iloc[0], values.mean(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(summary["fraction_negative"].iloc[0], (values < 0).mean())
        assert bool(summary["lowers_correct_token"].iloc[0]) == (values.mean() < 0)


def test_one_position_per_document_and_overlap_with_top_examples(bpe_tokenizer, corpus):
    adapter = _adapter("gpt_neox", bpe_tokenizer)
    result = logit_attribution(adapter, corpus, NEURONS[:1], n_top=10, context=(2, 1))
    raised = result.examples[result.examples["kind"] == "raises"]
    assert len(raised) == len(set(corpus.groups)) and not raised["group"].duplicated().any()
    top = top_activations(adapter, corpus, NEURONS[:1], n_top=10, n_bottom=0, bands=())
    counts = overlap(result.examples, top, *NEURONS[0])
    shared = set(zip(raised["sequence"], raised["position"])) & set(zip(top["sequence"], top["position"]))
    assert counts == {"shared": len(shared), "raises": len(raised), "top": len(top)}


def test_encoders_and_other_sites_are_refused(bpe_tokenizer, corpus):
    encoder = adapt(build_model("bert", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny-bert")
    with pytest.raises(InputError, match="encoder"):
        logit_attribution(encoder, corpus, NEURONS[:1])
    with pytest.raises(InputError, match="site 'post'"):
        logit_attribution(_adapter("gpt2", bpe_tokenizer), corpus, NEURONS[:1], site="pre")


# ---------------------------------------------------------------- latents of a transformed site (an SAE's)
def _hand_topk(x: np.ndarray, w_enc, b_enc, b_dec, k: int) -> np.ndarray:
    """TopK SAE latents of rows ``x`` by the definition: ReLU of the k largest pre-activations, the rest 0."""
    pre = (x - b_dec) @ w_enc + b_enc
    out = np.zeros_like(pre)
    for r, row in enumerate(pre):
        keep = np.argsort(-row, kind="stable")[:k]
        out[r, keep] = np.maximum(row[keep], 0.0)
    return out


@pytest.mark.parametrize("family,site_name", [("gpt_neox", "resid"), ("llama", "resid"), ("gpt_neox", "post")])
def test_latent_attribution_is_its_decoder_row_patched_out_by_hand(family, site_name, bpe_tokenizer, corpus):
    """An SAE latent's attribution: the true next token's logit change when ``z · d`` (its decoder row, through
    W_out for an SAE of the neurons) leaves the final residual stream, the norm's scale frozen; latents and the
    residual recomputed by hand from the weights. Without centring and σ it is z × latent_logit_effects."""
    from needle.models.sites import get_site
    from needle.neurons import latent_logit_effects
    from needle.sae import SparseAutoencoder

    adapter = _adapter(family, bpe_tokenizer)
    layer, k = 1, 4
    width = adapter.d_model if site_name == "resid" else adapter.n_neurons
    rng = np.random.default_rng(5)
    w_enc, b_enc = rng.normal(size=(width, 3 * width)), rng.normal(size=3 * width) * 0.1
    w_dec, b_dec = rng.normal(size=(3 * width, width)) / np.sqrt(width), rng.normal(size=width) * 0.1
    sae = SparseAutoencoder(w_enc, b_enc, w_dec, b_dec, architecture="topk", k=k)
    site = get_site(site_name, sae)
    write = w_dec if site_name == "resid" else w_dec @ adapter.w_out(layer).double().numpy()
    # latents that fire somewhere on the corpus, chosen by hand
    z = {}
    for s, tokens in enumerate(corpus.tokens):
        ids = torch.from_numpy(tokens)[None]
        raw = hand_activations(adapter, ids, layer)[site_name].double().numpy()
        z[s] = _hand_topk(raw, w_enc, b_enc, b_dec, k)
    fired = np.concatenate([v[:-1] for v in z.values()]).astype(bool).sum(0)
    latents = [(layer, int(j)) for j in np.argsort(-fired, kind="stable")[:3]]
    expected = {j: [] for _, j in latents}
    for s, tokens in enumerate(corpus.tokens):
        x, _ = _final_input_and_logits(adapter, torch.from_numpy(tokens)[None])
        sigma = _sigma(adapter, x)
        for p in range(len(tokens) - 1):
            nxt = int(tokens[p + 1])
            clean = _hand_logits(adapter, x[p][None], sigma[p : p + 1])[0, nxt]
            for _, j in latents:
                out = torch.from_numpy(z[s][p, j] * write[j])
                patched = _hand_logits(adapter, (x[p] - out)[None], sigma[p : p + 1])[0, nxt]
                expected[j].append(float(clean - patched))
    n_top = 4
    result = logit_attribution(adapter, corpus, latents, site=site, n_top=n_top, context=(2, 1),
                               one_per_group=False, batch_tokens=30)
    table = result.examples
    for _, j in latents:
        values = np.asarray(expected[j])
        got = table[(table["neuron"] == j) & (table["kind"] == "raises")].sort_values("rank")
        np.testing.assert_allclose(got["attribution"], np.sort(values)[::-1][:n_top], rtol=1e-4, atol=1e-6)
        for row in got.itertuples():  # the activation shown is the latent's, by hand
            np.testing.assert_allclose(row.activation, z[row.sequence][row.position, j], rtol=1e-4, atol=1e-5)
        summary = result.summary[result.summary["neuron"] == j]
        np.testing.assert_allclose(summary["mean_attribution"].iloc[0], values.mean(), rtol=1e-4, atol=1e-7)
    if family == "llama":  # an RMSNorm does not centre: attribution = z · latent_logit_effects[next] / σ
        j = latents[0][1]
        effects = latent_logit_effects(adapter, site, layer, j).effects
        row = table[(table["neuron"] == j) & (table["kind"] == "raises")].sort_values("rank").iloc[0]
        x, _ = _final_input_and_logits(adapter, torch.from_numpy(corpus.tokens[row.sequence])[None])
        sigma = float(_sigma(adapter, x)[row.position])
        np.testing.assert_allclose(row.attribution, row.activation * effects[row.next_token_id] / sigma,
                                   rtol=1e-4, atol=1e-6)


def test_latents_of_pre_activations_write_nothing(bpe_tokenizer, corpus):
    from needle.models.sites import get_site
    from needle.sae import SparseAutoencoder

    adapter = _adapter("gpt_neox", bpe_tokenizer)
    n = adapter.n_neurons
    sae = SparseAutoencoder(np.eye(n), np.zeros(n), np.eye(n), np.zeros(n), architecture="standard")
    with pytest.raises(InputError, match="write nothing through W_out"):
        logit_attribution(adapter, corpus, [(1, 0)], site=get_site("pre", sae))
