"""What every command shares: turning needle's errors into a message and an exit code."""

from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer

from needle.errors import NeedleError

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: Says what an interrupted command kept; set by the command before its long work (see :func:`on_interrupt`).
_interrupt_note: Callable[[], str] | None = None

_NOTHING_HALF_WRITTEN = "nothing was left half-written (needle writes each artefact whole, or not at all)"

#: What to do about an operating-system error, by errno.
_OS_HINTS = {
    errno.ENOSPC: "free some space, or choose another --out on a disk with room",
    errno.EDQUOT: "free some space within your quota, or choose another --out",
    errno.EACCES: "choose a --out you may write to",
    errno.EPERM: "choose a --out you may write to",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another --out",
    errno.ENAMETOOLONG: "a file name is too long for the file system; use a shorter path or name",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a directory",
    errno.EEXIST: "a file is in the way of that path; choose another --out",
}


def on_interrupt(note: Callable[[], str] | str) -> None:
    """Record what an interrupted command keeps, as a line (or a function giving it when the interrupt comes)."""
    global _interrupt_note
    _interrupt_note = note if callable(note) else (lambda: note)


def run(app: typer.Typer) -> None:
    """Run ``app``; needle's own errors and the operating system's print as one line on stderr with exit code 2.

    Ctrl-C exits with status 130 (so that ``a && b`` stops) and says what was
    kept; warnings print as one ``warning:`` line each.
    """
    global _interrupt_note
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    _interrupt_note = None
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except NeedleError as exc:
        _fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        _fail(_os_message(exc))
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
    # typer turns KeyboardInterrupt into Exit(130), which standalone_mode=False returns instead of raising.
    if code == INTERRUPTED:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(2)


def _interrupted() -> None:
    try:
        note = _interrupt_note() if _interrupt_note is not None else _NOTHING_HALF_WRITTEN
    except Exception:  # the note must never hide the interrupt
        note = _NOTHING_HALF_WRITTEN
    typer.secho(f"interrupted: {note}", err=True)
    sys.exit(INTERRUPTED)


def _os_message(exc: OSError) -> str:
    where = " ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc)
    hint = _OS_HINTS.get(exc.errno)
    text = f"{where}: {reason}" if where else reason
    return text + (f"; {hint}." if hint else ".")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


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


def check_device(device: str) -> str:
    """Refuse a ``--device`` this machine lacks, before a model is loaded onto it."""
    from needle.errors import InputError

    name = device.strip().lower()
    if name == "cpu":
        return device
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
                             f"{'built without CUDA' if torch.version.cuda is None else 'no GPU found'}); "
                             "use --device cpu.")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0 … cuda:{torch.cuda.device_count() - 1}).")
        return device
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: Apple's MPS is not available here; use --device cpu.")
        return device
    raise InputError(f"--device {device!r}: use cpu, cuda, cuda:N or mps.")


def check_jobs(jobs: int) -> int:
    """Refuse a ``--jobs`` below 1."""
    from needle.errors import InputError

    if jobs < 1:
        raise InputError(f"--jobs must be at least 1 (worker processes), got {jobs}.")
    return jobs


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
