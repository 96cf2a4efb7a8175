"""``needle extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from needle.cli._common import check_device, on_interrupt, parse_layers


def extract_command(
    dataset: Annotated[Path, typer.Option("--dataset", help="ProbeDataset directory.")],
    out: Annotated[Path, typer.Option("--out", help="Directory of the activation cache to write.")],
    model: Annotated[str, typer.Option(help="Alias, directory or hub id (id@revision pins a revision).")] = "minilm",
    layers: Annotated[Optional[str], typer.Option(help="e.g. 0,2,4 or 0-5 (default: all).")] = None,
    site: Annotated[Optional[str], typer.Option(help="mlp.hook_post (post: the neurons; the default), mlp.hook_pre "
                                                     "(pre), hook_resid_post (resid), hook_resid_pre, hook_resid_mid, "
                                                     "attn.hook_z, hook_attn_out or hook_mlp_out.")] = None,
    sae: Annotated[Optional[str], typer.Option(help="SAE folder in SAELens's format (or release:sae_id with "
                                                    "sae-lens): store its latents. Site and layer default to the "
                                                    "SAE's hook_name.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1…")] = "cpu",
    dtype: Annotated[str, typer.Option(help="Model dtype: float32, float16, bfloat16.")] = "float32",
    cache_dtype: Annotated[str, typer.Option(help="Storage dtype: float16 or float32.")] = "float16",
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward pass.")] = 8192,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    shard: Annotated[Optional[str], typer.Option(
        help="I/N: extract only shard I of N (0-based) into --out; `needle cache merge` joins the N shards.")] = None,
) -> None:
    """Extract a model's activations at a dataset's labelled examples (resumes an interrupted run)."""
    from needle.activations import extract
    from needle.models import load_model

    check_device(device)
    shard_spec = _parse_shard(shard)
    layer_list, transform = parse_layers(layers), None
    if sae is not None:
        from needle.sae import load_sae
        from needle.sae.autoencoder import sae_site_and_layers

        transform = load_sae(sae)
        site, layer_list = sae_site_and_layers(transform, site, layer_list)
    adapter = load_model(model, device=device, dtype=dtype)
    on_interrupt(lambda: _kept(out))
    cache = extract(adapter, dataset, out, layers=layer_list, site=site or "post", transform=transform,
                    dtype=cache_dtype, batch_tokens=batch_tokens, overwrite=overwrite, shard=shard_spec)
    if shard_spec is not None:
        a, b = cache.rows
        typer.echo(f"wrote shard {cache.index}/{cache.count} (rows {a}-{b} of {cache.manifest['n_rows']}) to "
                   f"{cache.path}")
        return
    typer.echo(f"wrote {cache.n_rows} rows × {cache.width} {cache.basis} ({cache.site}) for layers {cache.layers} "
               f"to {cache.path}")


def _kept(out: Path) -> str:
    partial = out.with_name(f".{out.name}.partial")
    if partial.is_dir():
        return (f"the batches done so far are kept in {partial}; run the same command again to resume "
                "(or delete it to start over)")
    return f"nothing was written to {out}"


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    from needle.errors import InputError

    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise InputError(f"--shard {text!r}: give I/N, e.g. 0/4 for the first of four shards.") from None
