"""``needle sae train`` and ``needle sae info``: sparse autoencoders in SAELens's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders (SAELens's folder format).")


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="SAE folder to write (cfg.json + sae_weights.safetensors).")],
    layer: Annotated[int, typer.Option(help="Layer whose activations the SAE reads.")],
    model: Annotated[str, typer.Option(help="Alias, directory or hub id.")] = "minilm",
    site: Annotated[str, typer.Option(help="Site (hook_resid_post, hook_mlp_out, mlp.hook_post…).")] = "resid",
    text: Annotated[Optional[list[Path]], typer.Option(
        help="Text files or folders (.conllu[.gz], .py, .txt; repeatable). Default: UD English EWT train.")] = None,
    python_files: Annotated[int, typer.Option(help="Also this many standard-library .py files (sampled).")] = 0,
    cache: Annotated[Optional[Path], typer.Option(help="Train on an activation cache's rows instead of text.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most token positions to train and evaluate on.")] = 60_000,
    expansion: Annotated[int, typer.Option(help="Latents per input dimension.")] = 8,
    architecture: Annotated[str, typer.Option(help="topk or standard (ReLU + L1).")] = "topk",
    k: Annotated[int, typer.Option(help="Active latents per token (topk).")] = 32,
    l1: Annotated[float, typer.Option(help="L1 coefficient (standard).")] = 5.0,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Token rows per step.")] = 1024,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    trainer: Annotated[str, typer.Option(help="needle (ours) or sae-lens (needs sae-lens).")] = "needle",
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the held-out split, initialisation and batches.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Train an SAE on a model's activations over local text; report MSE, explained variance, L0, dead latents."""
    import json

    import torch

    from needle.errors import InputError
    from needle.models.sites import get_site
    from needle.sae import cache_activations, read_passages, save_sae, text_activations, train_sae

    if threads:
        torch.set_num_threads(threads)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
    site_name = get_site(site).name
    if cache is not None:
        acts = cache_activations(cache, layer)[:max_tokens]
        from needle.activations import load_cache

        manifest = load_cache(cache).manifest
        model_id, site_name, source = manifest["model_id"], get_site(manifest["site"]).name, str(cache)
    else:
        from needle.datasets.shared_data import shared_data_dir
        from needle.models import load_model

        sources = list(text or [])
        if not sources:
            default = shared_data_dir() / "ud" / "en_ewt" / "en_ewt-ud-train.conllu.gz"
            if not default.is_file():
                raise InputError(f"no --text given and the default {default} is absent; pass --text FILE_OR_DIR.")
            sources = [default]
        if python_files:
            from needle.datasets.readers.python_files import find_python_files

            sources += [f.path for f in find_python_files(None, max_files=python_files, seed=seed)]
        adapter = load_model(model)
        acts = text_activations(adapter, read_passages(sources), layer=layer, site=site, max_tokens=max_tokens)
        model_id, source = adapter.model_id, ", ".join(map(str, sources[:3])) + (" …" if len(sources) > 3 else "")
    typer.echo(f"{len(acts)} token rows × {acts.shape[1]} ({site_name}, layer {layer}) from {source}")
    sae, report = train_sae(acts, expansion=expansion, architecture=architecture, k=k, l1=l1, steps=steps,
                            batch_size=batch_size, lr=lr, seed=seed, trainer=trainer,
                            metadata={"hook_name": f"blocks.{layer}.{site_name}", "model_name": model_id},
                            )
    report["source"] = source
    save_sae(sae, out, overwrite=overwrite, extra_json={"training_report.json": report})
    e = report["eval"]
    typer.echo(f"{sae.name}: {sae.d_in} → {sae.d_sae} latents, {report['seconds']:.0f} s; held out "
               f"(n={e['n_rows']}): MSE {e['mse']:.4g} ± {e['mse_se']:.2g}, explained variance "
               f"{e['explained_variance']:.3f} ± {e['explained_variance_se']:.3f}, L0 {e['l0']:.1f} ± "
               f"{e['l0_se']:.1f}, dead {e['dead_fraction']:.1%}")
    typer.echo(f"wrote {out} (training_report.json: {json.dumps(report['params'])[:60]}…)")


@app.command("info")
def info_command(path: Annotated[str, typer.Argument(help="SAE folder (SAELens format).")]) -> None:
    """What an SAE folder holds."""
    from needle.sae import load_sae

    sae = load_sae(path)
    typer.echo(f"{sae.name}: {sae.architecture}" + (f" (k={sae.k})" if sae.k else "")
               + f", {sae.d_in} → {sae.d_sae} latents, hook {sae.metadata.get('hook_name') or 'not recorded'}")
