"""Presentation: figures and the static HTML report of a sweep."""

from needle.report.html import build_report, write_report

__all__ = ["build_report", "write_report"]
