"""``needle probe``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from needle.cli._common import check_jobs, on_interrupt, parse_layers, parse_params


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def probe_command(
    cache: Annotated[Path, typer.Option("--cache", help="Activation cache directory.")],
    out: Annotated[Path, typer.Option("--out", help="Results Parquet file (appended to if it exists).")],
    features: Annotated[Optional[str], typer.Option(help="Comma-separated feature names (default: all).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="e.g. 0,2,4 or 0-5 (default: all in the cache).")] = None,
    methods: Annotated[Optional[str], typer.Option(
        help="Comma-separated selection methods (default: mean_diff,f_stat,adaptive; `needle probe --list-methods`).")
    ] = None,
    k: Annotated[Optional[str], typer.Option("--k", help="Comma-separated k grid (default 1-8,10,12,16,32…256).")] = None,
    prefilter: Annotated[int, typer.Option(help="Neurons kept by mean difference before selection (0: none).")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the group split and of random methods.")] = 0,
    baselines: Annotated[Optional[bool], typer.Option(
        help="Also fit the dense and random-direction baselines (default: yes; no with --preset saebench).")] = None,
    method_param: Annotated[Optional[list[str]], typer.Option(
        "--method-param", help="A method's parameter, METHOD.KEY=VALUE, e.g. osp.time_limit=30 (repeatable).")] = None,
    c: Annotated[str, typer.Option(
        "--C", help="Inverse L2 regularisation of the refits on standardised neurons, or 'cv' to choose it per probe "
                    "by 5-fold cross-validation over the training groups.")] = "0.01",
    jobs: Annotated[int, typer.Option("--jobs", help="Worker processes.")] = 1,
    bootstrap: Annotated[int, typer.Option(
        help="Resamples of the test groups for every score's 95% interval (0: none).")] = 1000,
    splits: Annotated[int, typer.Option(
        help="Group splits per feature; N > 1 refits every probe on N-1 more splits for mean ± sd (N× the work).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Start the results file afresh.")] = False,
    preset: Annotated[Optional[str], typer.Option(
        help="A benchmark's setting: 'saebench' = SAEBench sparse probing (train 4,000 / test 1,000 per feature, "
             "mean_diff top-k, k 1,2,5, no baselines); --methods, --k and --baselines given override it.")] = None,
    engine: Annotated[str, typer.Option(
        help="local (a process pool of --jobs) or ray (Ray tasks; the cache must be at the same path on every node).")
    ] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="With --engine ray: auto (the cluster `ray start` made), ray://host:10001, or none to start a local "
             "one of --jobs CPUs.")] = None,
) -> None:
    """Sweep sparse probes over features, layers, methods and k; resumes and appends."""
    from needle.activations import load_cache
    from needle.errors import InputError
    from needle.probing import DEFAULT_KS, DEFAULT_METHODS, CrossValidatedC, summarize, sweep
    from needle.probing.presets import get_preset

    setting = get_preset(preset) if preset is not None else None
    try:
        ks = [int(v) for v in _split(k)] if k else list(setting.ks if setting else DEFAULT_KS)
    except ValueError:
        raise InputError(f"--k {k!r}: use comma-separated integers such as 1,2,4,8") from None
    default_methods = list(setting.methods if setting else DEFAULT_METHODS)
    baselines = (setting.baselines if setting else True) if baselines is None else baselines
    if c.strip().lower() == "cv":
        C = CrossValidatedC()
    else:
        try:
            C = float(c)
        except ValueError:
            raise InputError(f"--C {c!r}: give a positive number such as 0.01, or 'cv'") from None
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give the results file to write, e.g. {out / 'results.parquet'}")
    check_jobs(jobs)
    source = load_cache(cache)
    _check_ks(ks, source.width, prefilter, k is not None)
    extra = {}
    if setting is not None:
        if splits > 1:
            raise InputError(f"--splits {splits}: --preset {setting.name} gives every feature its own split; "
                             "drop --splits.")
        source, extra = setting.source(source, seed=seed), {"test_size": setting.test_size}
    on_interrupt(lambda: _kept(out))
    results = sweep(source, out=out, features=_split(features), layers=parse_layers(layers),
                    methods=_split(methods) or default_methods, ks=ks, prefilter=prefilter or None, seed=seed,
                    baselines=baselines, C=C, method_params=_method_params(method_param), n_jobs=jobs,
                    overwrite=overwrite, bootstrap=bootstrap, splits=splits, engine=engine, address=address,
                    **extra)
    typer.echo(f"{len(results)} result rows in {out}")
    typer.echo(_format_summary(summarize(results)))


def _check_ks(ks: list[int], width: int, prefilter: int, given: bool) -> None:
    """Refuse a --k no layer can have; say which ks the prefilter leaves out (they would vanish silently)."""
    import warnings

    from needle.errors import InputError

    too_big = [k for k in ks if k > width]
    if given and too_big:
        raise InputError(f"--k {','.join(map(str, too_big))}: the cache has {width} columns per layer, so k can be "
                         f"at most {width}.")
    if given and prefilter and any(prefilter < k <= width for k in ks):
        warnings.warn(f"--prefilter {prefilter} keeps {prefilter} candidates, so the selection methods skip "
                      f"k = {[k for k in ks if prefilter < k <= width]} (the random-directions baseline still "
                      "runs them); pass --prefilter 0 or a larger one to select among more.", stacklevel=2)


def _kept(out: Path) -> str:
    from needle.probing import load_results

    if not out.is_file():
        return f"no task had finished, so nothing was written to {out}"
    try:
        n = len(load_results(out))
    except Exception:
        return f"the rows of the finished tasks are in {out}"
    return f"{out} holds the {n} result rows of the finished tasks; run the same command again to resume"


def _method_params(pairs: list[str] | None) -> dict[str, dict]:
    """``["osp.time_limit=30", ...]`` to ``{"osp": {"time_limit": 30}}``."""
    from needle.errors import InputError

    out: dict[str, dict] = {}
    for pair in pairs or []:
        method, dot, rest = pair.partition(".")
        if not dot or "=" not in rest or not method:
            raise InputError(f"--method-param {pair!r} must look like METHOD.KEY=VALUE, e.g. osp.time_limit=30")
        out.setdefault(method, {}).update(parse_params([rest]))
    return out


def _format_summary(summary) -> str:
    """The summary table for a terminal (:func:`needle.cli.results.format_summary`)."""
    from needle.cli.results import format_summary

    return format_summary(summary)
