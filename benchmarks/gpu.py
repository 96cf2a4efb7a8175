"""Benchmark: the GPU path — extraction against a bare forward pass, and the probing engine's probes/s.

Models: random-weight GPT-NeoX models with the configurations of Pythia-410M
and Pythia-1.4B (``config.json`` of ``EleutherAI/pythia-410m`` and
``EleutherAI/pythia-1.4b`` on the Hugging Face hub, written out below; random
weights, so nothing is downloaded). The data: random token sequences of
``--seq-len`` tokens, every position a labelled example of one binary
feature, so every token becomes a cache row.

Side by side, per model, on ``--device`` (default: cuda when present) with
``--model-dtype`` weights (default float16 on a GPU, float32 on a CPU):

1. **extraction** — :func:`needle.extract` of every layer's MLP neurons (float16 cache) against
   **a bare forward pass** of the same batches (the same padded ``input_ids``
   from :func:`needle.activations.plan_batches`, ``torch.no_grad``, no hooks,
   nothing copied off the device); tokens/s of each and the ratio;
2. **probing** — :func:`needle.probing.sweep` of that cache (mean_diff and
   f_stat, k in 1, 2, 4, …, 64, one layer in four) on the CPU engine with
   ``--jobs`` processes: probes/s. needle's refits are numpy on the CPU; there
   is no CUDA probe engine to compare against yet, and the script says so.

Without a CUDA device the GPU measurements are skipped with a message, and the
same code runs on the CPU at a small size (``--tokens`` default 512, Pythia-410M
only) so that the script is checked to work everywhere; those CPU numbers are
not GPU numbers. Not a test: nothing here is asserted.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# From the hub's config.json of each model (GPTNeoXForCausalLM; the fields that fix the compute).
PYTHIA = {
    "410m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "1.4b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
}
PYTHIA_COMMON = dict(vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
                     use_parallel_residual=True, hidden_act="gelu", layer_norm_eps=1e-5, tie_word_embeddings=False)


def random_pythia(name: str, dtype: torch.dtype, device: str):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(**PYTHIA_COMMON, **PYTHIA[name])
    with torch.device(device):
        model = GPTNeoXForCausalLM(config).to(dtype).eval()
    return model


def random_dataset(n_tokens: int, seq_len: int, vocab: int, seed: int = 0):
    from needle.datasets.assembler import DatasetAssembler

    rng = np.random.default_rng(seed)
    info = {"name_or_path": "random", "class": "none", "vocab_size": vocab, "fingerprint": "random-tokens"}
    assembler = DatasetAssembler("gpu-benchmark", {"seed": seed}, info)
    assembler.add_feature("token_parity")
    for s in range(max(1, n_tokens // seq_len)):
        ids = rng.integers(0, vocab, seq_len)
        assembler.add_sequence(ids, group=f"doc{s}")
        assembler.add_examples("token_parity", s, np.arange(seq_len), ids % 2)
    return assembler.build(positive_ratio=None)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_forward(model, dataset, batch_tokens: int, device: str) -> float:
    """Seconds for a forward pass of the transformer (no head) over the batches extraction runs."""
    from needle.activations import plan_batches

    lengths = np.array([len(t) for t in dataset.tokens], np.int64)
    batches = plan_batches(lengths, np.arange(len(lengths)), batch_tokens, 64)
    body = model.gpt_neox
    sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            ids = torch.from_numpy(np.stack([dataset.tokens[s] for s in batch]).astype(np.int64)).to(device)
            body(input_ids=ids, attention_mask=torch.ones_like(ids))
    sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--models", default="410m,1.4b" if cuda else "410m", help="Comma-separated: 410m, 1.4b.")
    parser.add_argument("--model-dtype", default=None, help="float32, float16, bfloat16 (default: float16 on a GPU, "
                                                            "float32 on a CPU).")
    parser.add_argument("--tokens", type=int, default=65536 if cuda else 512)
    parser.add_argument("--seq-len", type=int, default=256 if cuda else 64)
    parser.add_argument("--batch-tokens", type=int, default=16384 if cuda else 512)
    parser.add_argument("--jobs", type=int, default=2, help="Processes of the CPU probing engine.")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "needle-gpu-bench"))
    args = parser.parse_args()

    from needle.activations import extract
    from needle.models import adapt
    from needle.models.loading import _parse_dtype
    from needle.probing import sweep

    device = args.device
    if device.startswith("cuda") and not cuda:
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False).")
    if not device.startswith("cuda"):
        print("no CUDA device: the GPU measurements are skipped. The same steps run on the CPU at a small size so "
              "that the script is known to work; these numbers are not GPU numbers.\n", flush=True)
    else:
        print(f"GPU: {torch.cuda.get_device_name(device)}; torch {torch.__version__}, CUDA {torch.version.cuda}",
              flush=True)
    model_dtype = _parse_dtype(args.model_dtype or ("float16" if device.startswith("cuda") else "float32"))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in [m.strip() for m in args.models.split(",")]:
        if name not in PYTHIA:
            raise SystemExit(f"--models: {name!r} is not one of {', '.join(PYTHIA)}.")
        started = time.perf_counter()
        model = random_pythia(name, model_dtype, device)
        adapter = adapt(model, None, model_id=f"random-pythia-{name}")
        adapter._weights_hash = f"random-seed0-{name}"  # hashing every weight is not what is measured here
        dataset = random_dataset(args.tokens, args.seq_len, PYTHIA_COMMON["vocab_size"])
        n_tokens = int(sum(len(t) for t in dataset.tokens))
        print(f"Pythia-{name} (random weights, {str(model_dtype).replace('torch.', '')} on {device}; built in "
              f"{time.perf_counter() - started:.1f} s): {n_tokens} tokens in {dataset.n_sequences} sequences",
              flush=True)
        bare_forward(model, random_dataset(args.batch_tokens, args.seq_len, PYTHIA_COMMON["vocab_size"], seed=1),
                     args.batch_tokens, device)  # warm-up: kernels, allocator
        bare = bare_forward(model, dataset, args.batch_tokens, device)
        out = work / f"cache-{name}"
        sync(device)
        started = time.perf_counter()
        cache = extract(adapter, dataset, out, batch_tokens=args.batch_tokens, check_tokenizer=False, progress=False,
                        overwrite=True)
        sync(device)
        seconds = time.perf_counter() - started
        size = sum(f.stat().st_size for f in out.glob("layer_*.npy"))
        print(f"  bare forward : {n_tokens / bare:10.0f} tokens/s ({bare:.2f} s)")
        print(f"  extraction   : {n_tokens / seconds:10.0f} tokens/s ({seconds:.2f} s; all {len(cache.layers)} layers "
              f"× {cache.width} neurons, float16: {size / 2**20:.0f} MiB, {size / n_tokens / len(cache.layers):.0f} "
              "bytes per token per layer)")
        print(f"  extraction / bare forward: {bare / seconds:.2f} of the forward pass's speed", flush=True)
        layers = cache.layers[::4]
        started = time.perf_counter()
        rows = sweep(cache, out=None, layers=layers, methods=["mean_diff", "f_stat"], ks=[1, 2, 4, 8, 16, 32, 64],
                     baselines=False, bootstrap=0, n_jobs=args.jobs, progress=False)
        seconds = time.perf_counter() - started
        print(f"  probing (CPU engine, {args.jobs} processes): {len(rows) / seconds:8.1f} probes/s ({len(rows)} probes "
              f"on {len(layers)} layers × {cache.n_rows} examples × {cache.width} neurons, {seconds:.1f} s)")
        print("  probing on the GPU: not measured — needle's refits run in numpy on the CPU (no CUDA probe engine "
              "yet).\n", flush=True)
        del model, adapter, cache
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
