"""``needle scope build|serve``: the static site of a sweep and the local interactive viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="A Neuroscope-style site of probing results and an interactive viewer.")


@app.command("build")
def build_command(
    results: Annotated[Path, typer.Option("--results", help="A results Parquet file (needle probe).")],
    cache: Annotated[Path, typer.Option("--cache", help="The activation cache the sweep read.")],
    out: Annotated[Path, typer.Option("--out", help="Directory of the site (replaced when complete).")] = Path("site"),
    corpus: Annotated[Optional[list[Path]], typer.Option(
        "--corpus", help="Text files for the max-activating examples (repeatable; default: the cache's dataset)."
    )] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Model for the neuron pages (default: the cache's model).")] = None,
    max_sequences: Annotated[int, typer.Option(
        help="Sequences of the default corpus (spread over the dataset).")] = 128,
    max_k: Annotated[int, typer.Option(
        "--max-k", help="Neurons chosen by a probe with k <= this get a page.")] = 8,
    sae: Annotated[Optional[Path], typer.Option(
        "--sae", help="The SAE a latents cache was extracted with (SAELens folder): pages of its latents.")] = None,
    universality: Annotated[Optional[Path], typer.Option(
        "--universality", help="Output directory of `needle universal correlate`: adds the universality view.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Build a static site: an index of features, a page per feature and per neuron, search. Opens from disk."""
    from needle.activations import load_cache
    from needle.errors import InputError
    from needle.scope import SiteOptions, build_site

    if max_k < 1:
        raise InputError(f"--max-k must be at least 1, got {max_k}.")
    if max_sequences < 1:
        raise InputError(f"--max-sequences must be at least 1, got {max_sequences}.")
    if out.exists():  # refuse a folder that is not a site now, not after building one
        from needle._io import check_replaceable
        from needle.scope.site import SITE_FORMAT

        check_replaceable(out, SITE_FORMAT)
    loaded_cache = load_cache(cache)
    transform = None
    if sae is not None:
        from needle.sae import load_sae

        transform = load_sae(sae)
    adapter = None
    text_corpus = None
    if model is not None or corpus:
        from needle.models import load_model
        from needle.scope import model_for_cache

        adapter = load_model(model or model_for_cache(loaded_cache))
    if corpus:
        from needle.neurons import Corpus

        context = min(512, adapter.max_positions or 512)
        text_corpus = Corpus.from_files(corpus, adapter.tokenizer, context, max_sequences=max_sequences)
    echo = (lambda line: None) if quiet else typer.echo
    from needle.cli._common import on_interrupt

    on_interrupt(f"{out} was left as it was (a site is written only once it is complete)")
    path = build_site(results, loaded_cache, out, model=adapter, corpus=text_corpus, max_sequences=max_sequences,
                      options=SiteOptions(max_k_pages=max_k), echo=echo, progress=not quiet, transform=transform,
                      universality=universality)
    typer.echo(f"open {(path / 'index.html').resolve()} in a browser (python -m webbrowser {path / 'index.html'})")


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option("--model", help="Model to load (alias, directory or hub id).")] = "minilm",
    site: Annotated[Optional[Path], typer.Option(
        "--site", help="A site built by `needle scope build`: its probes and pages are offered too.")] = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8765,
    site_name: Annotated[Optional[str], typer.Option(
        "--activation-site", help="post or pre (default post; with --sae, the site the SAE reads).")] = None,
    sae: Annotated[Optional[Path], typer.Option(
        "--sae", help="An SAE (SAELens folder): show its latents, the hidden states through its encoder (a site "
                      "built with --sae needs the same one).")] = None,
) -> None:
    """Serve the interactive viewer on 127.0.0.1: type text, see a neuron's, latent's or probe's activation per
    token."""
    import warnings

    from needle.errors import InputError
    from needle.models import load_model, normalize_site
    from needle.scope import Viewer, make_server

    transform = None
    if sae is not None:
        from needle.sae import load_sae
        from needle.sae.autoencoder import sae_site_and_layers

        transform = load_sae(sae)
        site_name, _ = sae_site_and_layers(transform, site_name, None)
    site_name = normalize_site(site_name or "post")
    if site_name == "resid" and transform is None:
        raise InputError("--activation-site must be post or pre (neurons), not resid (its latents: add --sae).")
    if site is not None and not (site / "manifest.json").is_file():
        raise InputError(f"{site} is not a site built by `needle scope build` (no manifest.json).")
    typer.echo(f"loading {model} …")
    adapter = load_model(model)
    if site is None:
        viewer = Viewer(adapter, site_name=site_name, transform=transform)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            viewer = Viewer.for_site(adapter, site, site_name=site_name, transform=transform)
        for warning in caught:
            typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    server = make_server(viewer, port=port, site_dir=site)
    host, bound = server.server_address[:2]
    typer.echo(f"viewer at http://{host}:{bound}/  (Ctrl+C to stop)")
    if site is not None:
        typer.echo(f"site at   http://{host}:{bound}/site/index.html")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()
