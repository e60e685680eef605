"""Assay's loggers. A library does not print: what Assay logs reaches the application's
handlers, if it has any (a NullHandler on ``assay`` keeps Python's last-resort handler quiet).
Kept out of ``import assay`` so that importing the package stays cheap."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logging.getLogger("assay").addHandler(logging.NullHandler())


def logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``assay``)."""
    return logging.getLogger(name)
