"""What every command shares: turning needle's errors into a message and an exit code."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from needle.errors import NeedleError


def run(app: typer.Typer) -> None:
    """Run ``app``; needle's own errors print as one line on stderr with exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    try:
        app(standalone_mode=False)
    except NeedleError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        # typer >= 0.20 raises its vendored copy of click's exceptions, which are not click's own classes.
        if isinstance(exc, (click.ClickException, _vendored_click_exception())):
            # One line: what is wrong, and where the command's help is (click's own usage block is three).
            context = getattr(exc, "ctx", None)
            where = f" (see '{context.command_path} --help')" if context is not None else ""
            message = exc.format_message()
            if message:  # none when the help was shown instead (a command group called without a command)
                typer.secho(f"error: {message}{where}", fg=typer.colors.RED, err=True)
            sys.exit(exc.exit_code)
        raise


def _vendored_click_exception() -> type:
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # a typer that uses click itself
        import click

        return click.ClickException
    return ClickException


def _quiet_transformers() -> None:
    """needle draws its own progress bars; transformers' weight-loading bar is noise on a CLI.

    Said through the environment, which transformers and huggingface_hub read when they load: importing
    transformers here would cost every command, ``--help`` included, a few seconds.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already loaded (the CLI called in-process): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs to a dict; values are parsed as JSON when they can be (``3``, ``true``, ``[1,2]``)."""
    from needle.errors import InputError

    params: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"--param {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params


def parse_layers(text: str | None) -> list[int] | None:
    """``"0,2,4"`` or ``"0-5"`` (or a mix) to a list of ints; None means all."""
    from needle.errors import InputError

    if not text or text == "all":
        return None
    layers: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                layers.extend(range(int(a), int(b) + 1))
            else:
                layers.append(int(part))
    except ValueError:
        raise InputError(f"--layers {text!r}: use numbers like 0,2,4 or a range like 0-5") from None
    return layers
