"""Shared with the least-squares solver: see :mod:`needle.optimal._bnb`."""

from needle.optimal._bnb import SearchResult, branch_and_bound

__all__ = ["SearchResult", "branch_and_bound"]
