"""A real S3-compatible object store for tests: moto's HTTP server on loopback.

``s3_server()`` starts moto's threaded server (``moto.server.ThreadedMotoServer``,
a Werkzeug WSGI server speaking the S3 REST API) on ``127.0.0.1`` and a port the
kernel picks, and yields an :class:`S3Server` with what a client needs: the
endpoint URL, an access key pair, the region, and helpers to make a bucket,
a boto3 client, or the standard environment variables for a subprocess (MLflow's
server reads ``MLFLOW_S3_ENDPOINT_URL`` and the ``AWS_*`` pair).

Everything goes over real HTTP, exactly as against a production store; nothing
patches boto3. Two things to know:

- moto keeps its state per *process*, not per server: two ``s3_server()`` in one
  pytest process see each other's buckets. Use a bucket name unique to the test
  (``unique_bucket()``), never a fixed one.
- credentials are accepted whatever they are; the ones here are fixed test values,
  so no real secret is ever involved.

Rejected alternative: MinIO would be closer to production but is a separate
binary that is not in Debian's archive; moto installs from PyPI like every other
test dependency.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACCESS_KEY = "prescale-test-access-key"
SECRET_KEY = "prescale-test-secret-key"  # not a secret: moto accepts any pair
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible endpoint on loopback."""

    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def client(self) -> Any:
        """A boto3 S3 client bound to this endpoint (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name when none is given) and return its name; existing is fine."""
        name = name or unique_bucket()
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix`` (all pages)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def env(self) -> dict[str, str]:
        """The standard variables that point boto3 (and MLflow, and pyarrow's S3) at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }


def unique_bucket(prefix: str = "prescale-test") -> str:
    """A valid bucket name no other test in the process uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (a free port), yield it, stop it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto[server] is a dev dependency; say so instead of an ImportError
        from tests.support import need_component

        need_component("moto S3 server", f"install it with `pip install 'moto[server]'` ({exc})")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
