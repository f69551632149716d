"""A real HTTP S3 endpoint for tests: moto's server on 127.0.0.1, started once per process.

moto checks ``If-None-Match: *`` and then writes, without a lock between the two, while S3
and MinIO make a conditional create atomic. The stores rely on that atomicity (racing
appends, upload claims), so requests carrying the header are serialized here to give the
test server the semantics of the real thing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest

BUCKET = "tiergate-test"
ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"

_lock = threading.RLock()
_endpoint: str | None = None


class _ConditionalWritesAtomic:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ:
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def s3_endpoint() -> str:
    """URL of the shared moto server (started on first use, with the test bucket)."""
    global _endpoint
    with _lock:
        if _endpoint is None:
            try:
                from moto.moto_server.threaded_moto_server import (  # type: ignore[import-untyped]
                    MotoRequestHandler,
                )
                from moto.moto_server.werkzeug_app import (  # type: ignore[import-untyped]
                    DomainDispatcherApplication,
                    create_backend_app,
                )
                from werkzeug.serving import make_server
            except ImportError:
                pytest.skip("moto[server] is not installed")

            class QuietHandler(MotoRequestHandler):  # type: ignore[misc]
                def log_message(self, *args: object) -> None:
                    pass

                def log_request(self, *args: object) -> None:
                    pass

            app = _ConditionalWritesAtomic(DomainDispatcherApplication(create_backend_app))
            server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            _endpoint = f"http://127.0.0.1:{server.server_port}"
            s3_client().create_bucket(Bucket=BUCKET)
        return _endpoint


def s3_settings_env(prefix: str | None = None) -> dict[str, str]:
    """``TIERGATE_*`` variables that point a gateway at the test bucket."""
    return {
        "TIERGATE_STORAGE_BACKEND": "s3",
        "TIERGATE_S3_ENDPOINT_URL": s3_endpoint(),
        "TIERGATE_S3_BUCKET": BUCKET,
        "TIERGATE_S3_PREFIX": prefix if prefix is not None else uuid.uuid4().hex,
        "TIERGATE_S3_REGION": REGION,
        "TIERGATE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "TIERGATE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
    }


_client: Any = None


def s3_client() -> Any:
    """One shared boto3 client (thread safe; building one costs about a second)."""
    global _client
    with _lock:
        if _client is None:
            _client = _new_client()
        return _client


def _new_client() -> Any:
    from gateway.config import Settings
    from gateway.storage.factory import make_s3_client

    settings = Settings(
        storage_backend="s3",
        s3_endpoint_url=s3_endpoint(),
        s3_bucket=BUCKET,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,  # type: ignore[arg-type]
    )
    return make_s3_client(settings)


def make_s3_store(prefix: str | None = None, *, bucket: str | None = None, **kwargs: Any) -> Any:
    """An `S3BlobStore` in a fresh bucket of its own (moto lists by scanning a whole bucket)."""
    from gateway.storage.s3 import S3BlobStore

    if bucket is None:
        bucket = f"t-{uuid.uuid4().hex}"
        s3_client().create_bucket(Bucket=bucket)
    return S3BlobStore(s3_client(), bucket, prefix=prefix or "", **kwargs)
