"""The HTML/Markdown report of a run: see :func:`valueharms.report.build.build_report`."""
from .build import build_report

__all__ = ["build_report"]
