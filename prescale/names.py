"""Validated names: the one check every boundary applies before a name becomes a path, a key or a label.

An app name becomes a folder of the metrics store (``app=<app>``), of the ledger and the phase reports, a key
of the simulated cluster's state, the name of Kubernetes Deployments and a Service, and the file name of its
profile. A name that is checked at ingest but not at those places is a path traversal
(``web/../../../ledger/app=web``) or an ``ENAMETOOLONG`` waiting to happen, so every one of them takes an
:class:`AppName`, and building one is the check.

The alphabet is the strictest of those uses, a Kubernetes Service name (an RFC 1035 label): a lower-case
letter, then lower-case letters, digits and ``-``, ending in a letter or digit, at most 63 characters. Such a
name contains no ``/``, no ``.``, no ``=`` and nothing a shell, a URL or a label value would need to escape.
Phase labels (:data:`PHASE_PATTERN`) are the same alphabet plus ``_``, and may start with a digit.

``AppName("web")`` is a ``str`` (it passes wherever a string does); ``AppName("../x")`` raises
:class:`InvalidNameError`, a ``ValueError`` whose message quotes the value and the rule. Why a ``str``
subclass rather than a ``NewType``: a ``NewType`` checks nothing at run time, and the point is the check.
"""

from __future__ import annotations

import re

APP_NAME_PATTERN = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
PHASE_PATTERN = r"[a-z0-9]([-_a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # a Kubernetes object name or label value (DNS-1123)
APP_NAME_RULE = "a lower-case letter, then lower-case letters, digits and '-', ending alphanumeric, at most 63"

_APP_RE = re.compile(APP_NAME_PATTERN)
_PHASE_RE = re.compile(PHASE_PATTERN)
_DNS_RE = re.compile(DNS_LABEL_PATTERN)
_SHOWN = 80  # a hostile name can be megabytes long: quote only its start


class InvalidNameError(ValueError):
    """A name that cannot be used as an app or profile name; the message quotes it and the rule."""


def is_valid_app_name(name: object) -> bool:
    return isinstance(name, str) and _APP_RE.fullmatch(name) is not None


def is_valid_phase(name: object) -> bool:
    return isinstance(name, str) and _PHASE_RE.fullmatch(name) is not None


def is_dns_label(name: object) -> bool:
    return isinstance(name, str) and _DNS_RE.fullmatch(name) is not None


def to_dns_label(text: str) -> str:
    """``text`` made a DNS-1123 label, deterministically: lower case, any other character run as one ``-``,
    at most 63 characters (``Standard_D4s_v5`` -> ``standard-d4s-v5``); ``x`` if nothing is left."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower())[:63].strip("-")
    return label or "x"


def shown(value: object) -> str:
    """``repr(value)``, cut to its first characters (with the full length) when it is long."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(str(value))} characters)"


class AppName(str):
    """An app name that passed :func:`is_valid_app_name`; ``what`` names the field in the error."""

    __slots__ = ()

    def __new__(cls, value: object, *, what: str = "app") -> AppName:
        if isinstance(value, AppName):
            return value
        if not is_valid_app_name(value):
            raise InvalidNameError(
                f"{what} {shown(value)} is not a valid Kubernetes Service name (RFC 1035 label): {APP_NAME_RULE}"
            )
        return super().__new__(cls, value)


def app_names(values, *, what: str = "app") -> list[AppName]:
    """Every value as an :class:`AppName` (the first invalid one raises)."""
    return [AppName(v, what=what) for v in values]
