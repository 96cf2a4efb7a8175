"""TransformerLens and nnsight models wherever a model is accepted, against the Hugging Face path.

Tolerances: float32, values of order 1; unprocessed TransformerLens weights agree to 1e-5 (summation order
differs: einsum vs nn.Linear); processed weights (LayerNorm folded, writing weights centred) change the
neurons only by rounding (1e-4) and the residual stream by exactly its per-position mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import build_model
from needle.activations import extract
from needle.models import SITES, adapt
from test_extract import make_dataset

pytestmark = pytest.mark.slow


def hooked_gpt2(hf, *, processed: bool):
    """A HookedTransformer with ``hf``'s weights (TransformerLens's own GPT-2 conversion), built offline."""
    tl = pytest.importorskip("transformer_lens", reason="transformer-lens is not installed (pip install "
                                                        "transformer-lens)")
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    c = hf.config
    cfg = tl.HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, n_heads=c.n_head,
                                     d_head=c.n_embd // c.n_head, d_mlp=4 * c.n_embd, d_vocab=c.vocab_size,
                                     act_fn="gelu_new", normalization_type="LN", eps=c.layer_norm_epsilon,
                                     default_prepend_bos=False, original_architecture="GPT2LMHeadModel")
    model = tl.HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=processed,
                                      center_writing_weights=processed, center_unembed=processed,
                                      fold_value_biases=processed, refactor_factored_attn_matrices=False)
    return model.eval()


@pytest.fixture(scope="module")
def pair(bpe_tokenizer):
    hf = build_model("gpt2", len(bpe_tokenizer))
    return adapt(hf, bpe_tokenizer, model_id="tiny-gpt2"), hf


def batch(vocab, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    return ids, mask


def test_hooked_transformer_equals_hugging_face_at_every_site(pair, bpe_tokenizer):
    ours, hf = pair
    tl = adapt(hooked_gpt2(hf, processed=False), bpe_tokenizer)
    assert tl.family == "transformer_lens" and tl.n_neurons == ours.n_neurons and tl.n_layers == ours.n_layers
    ids, mask = batch(len(bpe_tokenizer))
    keep = mask.bool()
    for site in SITES:
        want = ours.capture(ids, mask, [0, 2], site)
        got = tl.capture(ids, mask, [0, 2], site)
        assert tl.site_width(site) == ours.site_width(site)
        for layer in (0, 2):
            assert got[layer].shape == want[layer].shape, site
            torch.testing.assert_close(got[layer][keep], want[layer][keep], atol=1e-5, rtol=1e-5, msg=site)
    for layer in range(tl.n_layers):
        torch.testing.assert_close(tl.w_out(layer), ours.w_out(layer))
        torch.testing.assert_close(tl.w_in(layer), ours.w_in(layer))
    torch.testing.assert_close(tl.unembed(), ours.unembed())


def test_processed_weights_keep_neurons_and_centre_the_residual_stream(pair, bpe_tokenizer):
    ours, hf = pair
    tl = adapt(hooked_gpt2(hf, processed=True), bpe_tokenizer)
    ids, mask = batch(len(bpe_tokenizer), seed=1)
    keep = mask.bool()
    for site in ("mlp.hook_pre", "mlp.hook_post"):
        torch.testing.assert_close(tl.capture(ids, mask, [1], site)[1][keep], ours.capture(ids, mask, [1], site)[1][keep],
                                   atol=1e-4, rtol=1e-4)
    want = ours.capture(ids, mask, [1], "resid")[1][keep]
    got = tl.capture(ids, mask, [1], "resid")[1][keep]
    assert (got - want).abs().max() > 1e-3  # they do differ …
    torch.testing.assert_close(got, want - want.mean(-1, keepdim=True), atol=1e-4, rtol=1e-4)  # … by the mean


def test_extract_takes_a_hooked_transformer(tmp_path, pair, bpe_tokenizer):
    ours, hf = pair
    tl_model = hooked_gpt2(hf, processed=False)
    dataset = make_dataset(bpe_tokenizer)
    want = extract(ours, dataset, tmp_path / "hf", layers=[1], dtype="float32", progress=False)
    got = extract(adapt(tl_model, bpe_tokenizer), dataset, tmp_path / "tl", layers=[1], dtype="float32",
                  progress=False)
    assert got.manifest["hook_names"] == ["blocks.1.mlp.hook_post"]
    np.testing.assert_allclose(got.layer(1), want.layer(1), atol=1e-5, rtol=1e-5)


def test_nnsight_model_reads_what_nnsight_traces(tmp_path, pair, bpe_tokenizer):
    nnsight = pytest.importorskip("nnsight", reason="nnsight is not installed (pip install nnsight)")
    ours, hf = pair
    lm = nnsight.LanguageModel(hf, tokenizer=bpe_tokenizer)
    adapter = adapt(lm)
    assert adapter.model is hf and adapter.tokenizer is bpe_tokenizer
    ids, mask = batch(len(bpe_tokenizer), seed=2)
    ids, mask = ids[[0, 2]], mask[[0, 2]]  # unpadded rows: nnsight's trace runs the plain forward
    with lm.trace({"input_ids": ids, "attention_mask": mask}):
        saved = lm.transformer.h[1].mlp.c_proj.input.save()
    torch.testing.assert_close(adapter.capture(ids, mask, [1], "post")[1], saved, atol=1e-6, rtol=1e-6)
    cache = extract(lm, make_dataset(bpe_tokenizer), tmp_path / "nn", layers=[1], dtype="float32", progress=False)
    reference = extract(ours, make_dataset(bpe_tokenizer), tmp_path / "hf", layers=[1], dtype="float32",
                        progress=False)
    assert np.array_equal(cache.layer(1), reference.layer(1))


def test_readme_snippet_runs(tmp_path, pair, bpe_tokenizer):
    """The README's TransformerLens / nnsight snippet, run on tiny models."""
    import re
    from pathlib import Path

    nnsight = pytest.importorskip("nnsight", reason="nnsight is not installed (pip install nnsight)")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Sparse autoencoders, other bases and controls", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.S)
    ours, hf = pair
    namespace = {"hooked_model": hooked_gpt2(hf, processed=False), "lm": nnsight.LanguageModel(hf, tokenizer=bpe_tokenizer),
                 "tokenizer": bpe_tokenizer, "dataset": make_dataset(bpe_tokenizer), "tmp": tmp_path}
    exec(snippet, namespace)
    reference = extract(ours, namespace["dataset"], tmp_path / "hf", layers=[1], progress=False)
    for name in ("tl-cache", "nnsight-cache"):
        from needle.activations import load_cache

        np.testing.assert_allclose(load_cache(tmp_path / name).layer(1), reference.layer(1), atol=2e-3, rtol=2e-3)
