"""Shared with the least-squares solver: see :mod:`needle.optimal._pool`."""

from needle.optimal._pool import CutPool

__all__ = ["CutPool"]
