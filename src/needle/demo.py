"""The demo pipeline: the python-code collection on the standard library, probed in MiniLM.

It needs nothing from outside: the standard library's own sources are the
text, Python's ``tokenize``/``ast`` give exact labels, and MiniLM ships in a
Python package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_demo"]


def run_demo(
    out: str | Path = "demo-output",
    *,
    model: str = "minilm",
    max_files: int = 150,
    max_sequences_per_file: int = 4,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run every stage that exists and return the paths of what it wrote.

    Stages already complete in ``out`` (a dataset or cache from an earlier run
    with the same settings) are reused; an interrupted extraction resumes.
    """
    from needle.activations import extract, load_cache
    from needle.datasets.format import load_dataset
    from needle.datasets.python_code import build_python_code
    from needle.models import load_model

    out = Path(out)
    dataset_dir, cache_dir = out / "python-code", out / f"cache-{model}"
    started = time.perf_counter()
    adapter = load_model(model)
    if (dataset_dir / "manifest.json").is_file():
        dataset = load_dataset(dataset_dir)
        echo(f"[1/2] reusing the python-code dataset in {dataset_dir}")
    else:
        echo(f"[1/2] building the python-code collection ({max_files} standard-library files) …")
        dataset = build_python_code(None, adapter.tokenizer, max_files=max_files,
                                    max_sequences_per_file=max_sequences_per_file)
        dataset.save(dataset_dir)
    echo(f"      {dataset.n_sequences} sequences, {dataset.n_tokens} tokens, {len(dataset.features)} features, "
         f"{len(dataset.examples)} examples → {dataset_dir}")
    if (cache_dir / "manifest.json").is_file():
        cache = load_cache(cache_dir)
        echo(f"[2/2] reusing the activation cache in {cache_dir}")
    else:
        echo(f"[2/2] extracting {adapter.model_id} neuron activations (all {adapter.n_layers} layers) …")
        cache = extract(adapter, dataset_dir, cache_dir)
    echo(f"      {cache.n_rows} rows × {cache.width} neurons × {len(cache.layers)} layers → {cache_dir}")
    echo(f"done in {time.perf_counter() - started:.0f} s")
    return {"dataset": dataset_dir, "cache": cache_dir}
