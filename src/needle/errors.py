"""Exceptions raised by needle.

Every error says what is wrong and how to fix it; the classes let callers
(and the CLI) tell bad input apart from bugs.
"""

from __future__ import annotations

__all__ = ["NeedleError", "InputError", "FormatError", "TokenizerMismatchError", "BusyError"]


class NeedleError(Exception):
    """Base class of every error needle raises on purpose."""


class InputError(NeedleError, ValueError):
    """Bad user input: a missing file, a malformed line, an impossible parameter."""


class FormatError(NeedleError, ValueError):
    """An on-disk artifact that is not what it claims to be (wrong format, corrupt, incomplete)."""


class TokenizerMismatchError(NeedleError, ValueError):
    """A dataset was tokenized with a different tokenizer than the model's."""


class BusyError(NeedleError, RuntimeError):
    """Another process is writing the same destination (see :func:`needle._locks.exclusive_lock`)."""
