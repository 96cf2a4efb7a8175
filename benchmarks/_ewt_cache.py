"""The activation cache the probing benchmarks share: a model's MLP neurons on UD English-EWT dev.

Built once under a work directory (dataset with :func:`needle.datasets.ud.build_ud`, then
:func:`needle.extract`) and reused by later runs; or an existing cache given by the user.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

_UD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud" / "en_ewt"


def add_cache_arguments(parser: argparse.ArgumentParser, work: str, *, work_help: str | None = None) -> None:
    """``--cache``, ``--work`` (default: ``work`` under the temp dir) and ``--ud-dir``, as :func:`ewt_dev_cache` takes them."""
    parser.add_argument("--cache", help="An existing activation cache (default: build one under --work).")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / work),
                        help=work_help or "Where to build the dataset and cache (default: %(default)s).")
    parser.add_argument("--ud-dir", default=str(_UD_DIR), help="The en_ewt treebank (default: %(default)s).")


def ewt_dev_cache(*, cache: str | None, work: str | os.PathLike, ud_dir: str | os.PathLike, model: str = "minilm",
                  max_positives: int | None = None) -> Path:
    """Path of the cache: ``cache`` if given (checked), else built once under ``work``."""
    if cache:
        path = Path(cache)
        if not (path / "manifest.json").is_file():
            sys.exit(f"{path} is not an activation cache (no manifest.json); omit --cache to build one.")
        return path
    work = Path(work)
    suffix = f"-maxpos{max_positives}" if max_positives else ""
    path = work / f"cache-{model}-ewt-dev{suffix}"
    if (path / "manifest.json").is_file():
        return path
    conllu = Path(ud_dir) / "en_ewt-ud-dev.conllu.gz"
    if not conllu.is_file():
        sys.exit(f"{conllu} is missing: pass --ud-dir pointing at the en_ewt treebank, or --cache.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    import needle
    from needle.datasets.ud import build_ud
    from needle.models import load_tokenizer

    dataset_dir = work / f"ud-en_ewt-ud-dev{suffix}"
    if not (dataset_dir / "manifest.json").is_file():
        started = time.perf_counter()
        params = {"max_positives": max_positives} if max_positives else {}
        build_ud([str(conllu)], load_tokenizer(model), **params).save(dataset_dir)
        print(f"built {dataset_dir} in {time.perf_counter() - started:.1f} s", flush=True)
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    needle.extract(model, dataset_dir, path, progress=False)
    print(f"extracted {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path
