"""Which failures the ingest tasks retry: transient I/O yes, bad input never."""

from __future__ import annotations

import errno

import httpx
import pytest

from prescale.metrics.prometheus import PrometheusConfigError, PrometheusQueryError, PrometheusUnavailableError
from prescale.metrics.validation import MetricsInputError
from tasks.ingest import is_transient


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        pytest.param(MetricsInputError("bad file"), False, id="bad-input"),
        pytest.param(PrometheusQueryError("bad promql"), False, id="bad-query"),
        pytest.param(PrometheusConfigError("bad config"), False, id="bad-config"),
        pytest.param(FileNotFoundError("gone"), False, id="missing-file"),
        pytest.param(PermissionError("denied"), False, id="permission"),
        pytest.param(ValueError("bug"), False, id="bug"),
        pytest.param(PrometheusUnavailableError("down"), True, id="server-down"),
        pytest.param(httpx.ConnectError("refused"), True, id="connect-error"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(OSError("disk hiccup"), True, id="io-error"),
        pytest.param(OSError(errno.ENAMETOOLONG, "File name too long"), False, id="name-too-long"),
        pytest.param(OSError(errno.ENOSPC, "No space left on device"), False, id="disk-full"),
        pytest.param(OSError(errno.EIO, "Input/output error"), True, id="io-errno"),
    ],
)
def test_retry_only_transient_failures(exc, retry):
    assert is_transient(exc) is retry
