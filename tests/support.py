"""Helpers shared by the test folders.

`need_component` is how a test says it needs a real part that may be absent on a
developer's machine (the Prometheus binary, say). Locally it skips with the
reason; in CI, where ``PRESCALE_REQUIRE_COMPONENTS=1`` is set, it fails, so CI
can never go green by skipping a real-component test.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "PRESCALE_REQUIRE_COMPONENTS"


def components_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def need_component(name: str, reason: str) -> None:
    """Skip (locally) or fail (when REQUIRE_ENV is set) because `name` is missing."""
    message = f"{name} is not available: {reason}"
    if components_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 forbids skipping real-component tests)")
    pytest.skip(message)
