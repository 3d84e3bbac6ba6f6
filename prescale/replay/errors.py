"""The replay's one user error."""

from __future__ import annotations


class ReplayError(ValueError):
    """Replay inputs do not fit together (wrong shapes, windows, policies); the message names the value."""
