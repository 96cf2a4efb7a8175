"""Benchmark: extraction throughput against a bare forward pass, and peak memory.

Runs, side by side in one invocation and each in its own subprocess (so peak
resident memory is measured per run):

* ``bare``    — the model's forward pass over exactly the batches extraction
  plans (same padding, same order), keeping nothing;
* ``extract`` — :func:`needle.extract` over the same dataset, all layers,
  writing the cache.

Prints tokens/s for both, the overhead ratio, and peak RSS. Targets (issue 2):
overhead at most 15% on MiniLM over EWT dev; under 2 GiB peak memory when
extracting all 6 layers for the full EWT train split (``--split train``).

Usage::

    python benchmarks/extract.py [--split dev|train] [--repeats 2] [--ud-dir ../shared/data/ud/en_ewt]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(mode: str, dataset_dir: str, model: str, batch_tokens: int, out_dir: str) -> dict:
    import numpy as np
    import torch

    from needle.activations import extract, plan_batches
    from needle.activations.stream import pad_batch
    from needle.datasets.format import load_dataset
    from needle.models import load_model

    adapter = load_model(model)
    dataset = load_dataset(dataset_dir)
    units = dataset.units()
    lengths = np.array([len(t) for t in dataset.tokens], np.int64)
    needed = np.unique(units.sequence).astype(np.int64)
    tokens = int(lengths[needed].sum())
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "bare":
        pad_id = adapter.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for batch in plan_batches(lengths, needed, batch_tokens, 64):
                ids, mask, _ = pad_batch(dataset.tokens, dataset.attention_mask, batch, pad_id, "right")
                adapter.forward(ids, mask)
    else:
        extract(adapter, dataset_dir, Path(out_dir) / "cache", batch_tokens=batch_tokens, progress=False)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "seconds": seconds, "cpu_seconds": cpu_seconds, "tokens": tokens, "rows": len(units),
            "peak_mib": peak_kib / 1024}


def ensure_dataset(conllu: Path, work: Path, model: str) -> Path:
    target = work / f"ud-{conllu.name.split('.')[0]}"
    if not (target / "manifest.json").is_file():
        from needle.datasets.ud import build_ud
        from needle.models import load_tokenizer

        started = time.perf_counter()
        build_ud([str(conllu)], load_tokenizer(model)).save(target)
        print(f"built {target} in {time.perf_counter() - started:.1f} s")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="dev", choices=["dev", "train", "test"])
    parser.add_argument("--ud-dir", default=str(REPO.parent / "shared" / "data" / "ud" / "en_ewt"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default=None, help="Where to keep the built dataset (default: a temp dir).")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, dataset_dir, out_dir, batch_tokens = args.worker
        print(json.dumps(worker(mode, dataset_dir, args.model, int(batch_tokens), out_dir)))
        return

    conllu = Path(args.ud_dir) / f"en_ewt-ud-{args.split}.conllu.gz"
    if not conllu.is_file():
        sys.exit(f"{conllu} is missing: pass --ud-dir pointing at the en_ewt treebank.")
    work = Path(args.work or tempfile.mkdtemp(prefix="needle-bench-"))
    dataset_dir = ensure_dataset(conllu, work, args.model)
    results: dict[str, list[dict]] = {"bare": [], "extract": []}
    for repeat in range(args.repeats):
        for mode in ("bare", "extract"):  # interleaved, so drifting machine load hits both
            out_dir = tempfile.mkdtemp(prefix="needle-bench-out-", dir=work)
            proc = subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--worker", mode, str(dataset_dir), out_dir,
                 str(args.batch_tokens)],
                capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            )
            if proc.returncode:
                sys.exit(f"{mode} run failed:\n{proc.stderr}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results[mode].append(result)
            print(f"  run {repeat + 1} {mode:<8} {result['tokens'] / result['seconds']:>9.0f} tok/s  "
                  f"{result['seconds']:7.1f} s wall  {result['cpu_seconds']:7.1f} s CPU  peak {result['peak_mib']:7.0f} MiB")
            subprocess.run(["rm", "-rf", out_dir])
    bare, ext = results["bare"], results["extract"]
    # Runs alternate, so each (bare, extract) pair saw about the same machine; the median pair ratio
    # resists a neighbour's load better than best-of-N. CPU time is the steadier of the two measures.
    wall = statistics.median(e["seconds"] / b["seconds"] for b, e in zip(bare, ext)) - 1
    cpu = statistics.median(e["cpu_seconds"] / b["cpu_seconds"] for b, e in zip(bare, ext)) - 1
    tokens = ext[0]["tokens"]
    print(f"\nMiniLM over EWT {args.split}: {tokens} tokens, {ext[0]['rows']} activation rows, all layers")
    print(f"bare forward  : {tokens / statistics.median(r['seconds'] for r in bare):8.0f} tok/s (median)   "
          f"peak RSS {max(r['peak_mib'] for r in bare):6.0f} MiB")
    print(f"needle extract: {tokens / statistics.median(r['seconds'] for r in ext):8.0f} tok/s (median)   "
          f"peak RSS {max(r['peak_mib'] for r in ext):6.0f} MiB")
    print(f"overhead      : {cpu:+.1%} CPU time, {wall:+.1%} wall time (median of {args.repeats} paired runs; "
          f"target ≤ +15%)")
    print(f"peak memory   : {max(r['peak_mib'] for r in ext) / 1024:.2f} GiB (target < 2 GiB)")


if __name__ == "__main__":
    main()
