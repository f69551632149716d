"""The resumable-upload half of `S3BlobStore`: one object per acknowledged chunk.

See :mod:`gateway.storage.s3` for the key layout and why appends are staged as one object per
chunk (conditional creates) rather than as multipart parts. Nothing about an upload lives in
process memory, so any replica can take the next chunk.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from gateway.storage._s3_io import NOT_FOUND, PRECONDITION, BodyReader, is_error, s3_errors
from gateway.storage.base import (
    DEFAULT_CHUNK_SIZE,
    BlobInfo,
    UploadInfo,
    check_sha256,
    check_upload_id,
)
from gateway.storage.errors import (
    BlobTooLarge,
    DigestMismatch,
    InvalidUploadId,
    StorageUnavailable,
    UploadNotFound,
    UploadOffsetMismatch,
)

__all__ = ["S3Uploads"]

_MAX_META_BYTES = 4096


@dataclass(frozen=True, slots=True)
class _UploadMeta:
    token: str
    max_bytes: int | None


class S3Uploads:
    """Mixin of `S3BlobStore`: resumable uploads, the listing both halves use, leftovers.

    The store sets ``client``, ``bucket`` and ``prefix`` and provides ``put_stream``, through
    which ``install_upload`` streams the parts (the one verified write path).
    """

    client: Any
    bucket: str
    prefix: str

    if TYPE_CHECKING:

        def put_stream(
            self,
            chunks: Iterable[bytes],
            expected_sha256: str | None = None,
            max_bytes: int | None = None,
        ) -> BlobInfo: ...

    def _upload_key(self, upload_id: str, rest: str) -> str:
        return f"{self.prefix}uploads/{check_upload_id(upload_id)}/{rest}"

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        with s3_errors("listing objects"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                yield from page.get("Contents", [])

    def _meta(self, upload_id: str) -> _UploadMeta | None:
        key = self._upload_key(upload_id, "meta")
        with s3_errors("reading upload state"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if is_error(exc, NOT_FOUND):
                    return None
                raise
            raw = body.read(_MAX_META_BYTES + 1)
            body.close()
        try:
            fields = json.loads(raw)
            token, max_bytes = fields["token"], fields["max_bytes"]
            if not isinstance(token, str) or check_upload_id(token) != token:
                raise ValueError("bad token")
            if max_bytes is not None and not isinstance(max_bytes, int):
                raise ValueError("bad max_bytes")
        except Exception as exc:
            raise StorageUnavailable(f"upload state {upload_id!r} is corrupt") from exc
        return _UploadMeta(token=token, max_bytes=max_bytes)

    def _require_meta(self, upload_id: str) -> _UploadMeta:
        meta = self._meta(upload_id)
        if meta is None:
            raise UploadNotFound(upload_id)
        return meta

    def _parts(self, upload_id: str, meta: _UploadMeta) -> list[tuple[str, int]]:
        """The chain of acknowledged parts from offset 0: (key, size) in order."""
        prefix = self._upload_key(upload_id, f"{meta.token}/parts/")
        by_offset: dict[int, tuple[str, int]] = {}
        for item in self._list(prefix):
            with contextlib.suppress(ValueError):
                by_offset[int(item["Key"][len(prefix) :])] = (item["Key"], int(item["Size"]))
        chain: list[tuple[str, int]] = []
        offset = 0
        while offset in by_offset and by_offset[offset][1] > 0:
            chain.append(by_offset[offset])
            offset += by_offset[offset][1]
        return chain

    def _offset(self, upload_id: str, meta: _UploadMeta) -> int:
        return sum(size for _key, size in self._parts(upload_id, meta))

    def begin_upload(self, upload_id: str, max_bytes: int | None = None) -> int:
        meta = self._meta(upload_id)
        if meta is not None:
            return self._offset(upload_id, meta)
        payload = json.dumps({"token": uuid.uuid4().hex, "max_bytes": max_bytes}).encode()
        with s3_errors("creating upload"):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._upload_key(upload_id, "meta"),
                    Body=payload,
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if not is_error(exc, PRECONDITION):
                    raise
                # Lost a race with a concurrent begin of the same id: resume theirs.
                return self._offset(upload_id, self._require_meta(upload_id))
        return 0

    def append_upload(self, upload_id: str, offset: int, chunk: bytes) -> int:
        meta = self._require_meta(upload_id)
        current = self._offset(upload_id, meta)
        if offset != current:
            raise UploadOffsetMismatch(upload_id, expected_offset=current, offset=offset)
        new_offset = offset + len(chunk)
        if meta.max_bytes is not None and new_offset > meta.max_bytes:
            raise BlobTooLarge(meta.max_bytes)
        if not chunk:
            return offset  # an empty part would block the real one at this offset
        key = self._upload_key(upload_id, f"{meta.token}/parts/{offset:020d}")
        with s3_errors("appending to upload"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=chunk, IfNoneMatch="*")
            except ClientError as exc:
                if not is_error(exc, PRECONDITION):
                    raise
                latest = self._offset(upload_id, meta)
                raise UploadOffsetMismatch(
                    upload_id, expected_offset=latest, offset=offset
                ) from None
        # Finished or aborted meanwhile? Then this part was never part of the upload.
        again = self._meta(upload_id)
        if again is None or again.token != meta.token:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=key)
            raise UploadNotFound(upload_id)
        return new_offset

    def upload_offset(self, upload_id: str) -> int:
        return self._offset(upload_id, self._require_meta(upload_id))

    def _detach(self, upload_id: str) -> _UploadMeta:
        """Take the upload away from its id, so that exactly one caller finishes or aborts it."""
        meta = self._require_meta(upload_id)
        with s3_errors("claiming upload"):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._upload_key(upload_id, f"{meta.token}/finishing"),
                    Body=b"",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if is_error(exc, PRECONDITION):
                    raise UploadNotFound(upload_id) from None
                raise
            # Appends re-read the meta after writing their part, so once it is gone no append
            # can succeed without its part being in the listing below.
            self.client.delete_object(Bucket=self.bucket, Key=self._upload_key(upload_id, "meta"))
        return meta

    def _remove_parts(self, upload_id: str, meta: _UploadMeta) -> None:
        keys = [item["Key"] for item in self._list(self._upload_key(upload_id, f"{meta.token}/"))]
        self._delete_keys(keys, "removing upload parts")

    def _delete_keys(self, keys: list[str], action: str) -> None:
        # DeleteObjects takes at most 1000 keys a request.
        with s3_errors(action):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )

    def _read_parts(self, upload_id: str, parts: list[tuple[str, int]]) -> Iterator[bytes]:
        for key, size in parts:
            with s3_errors("reading upload part"):
                try:
                    body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                except ClientError as exc:
                    if is_error(exc, NOT_FOUND):  # discarded meanwhile by a racing finish
                        raise UploadNotFound(upload_id) from None
                    raise
            yield from BodyReader(body, size, DEFAULT_CHUNK_SIZE)

    def install_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        check_sha256(expected_sha256)
        meta = self._require_meta(upload_id)
        # The chain listed now is what gets verified and stored; put_stream writes nothing when
        # the blob exists (it only verifies), and the parts stay until abort_upload, so a
        # crash anywhere here leaves the upload whole for the next install.
        parts = self._parts(upload_id, meta)
        try:
            return self.put_stream(self._read_parts(upload_id, parts), expected_sha256)
        except DigestMismatch:
            with contextlib.suppress(UploadNotFound):
                self.abort_upload(upload_id)
            raise

    def finish_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        check_sha256(expected_sha256)
        check_upload_id(upload_id)
        info = self.install_upload(upload_id, expected_sha256)
        with contextlib.suppress(UploadNotFound):  # discarded meanwhile by a racing finish
            self.abort_upload(upload_id)
        return info

    def abort_upload(self, upload_id: str) -> None:
        meta = self._detach(upload_id)
        self._remove_parts(upload_id, meta)

    def remove_leftovers(self, before: datetime, *, apply: bool = True) -> list[str]:
        """Parts of uploads whose meta is gone or replaced, and staging objects of dead puts.

        Both appear only when a process died between two steps (``_detach`` and
        ``_remove_parts``; a multipart completion and ``_install_staged``'s delete).
        """
        doomed: list[str] = []
        found: list[str] = []
        uploads = f"{self.prefix}uploads/"
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in self._list(uploads):
            upload_id, _, rest = item["Key"][len(uploads) :].partition("/")
            token, sep, _tail = rest.partition("/")
            if sep:  # "<id>/<token>/...": the meta itself has no token segment
                groups.setdefault((upload_id, token), []).append(item)
        live: dict[str, str | None] = {}
        for (upload_id, token), items in sorted(groups.items()):
            if upload_id not in live:
                try:
                    meta = self._meta(upload_id)
                except (StorageUnavailable, InvalidUploadId):
                    continue  # unreadable: leave it for a person to look at
                live[upload_id] = meta.token if meta is not None else None
            if live[upload_id] == token or max(i["LastModified"] for i in items) >= before:
                continue
            doomed.extend(i["Key"] for i in items)
            found.append(f"uploads/{upload_id}/{token}")
        staging = f"{self.prefix}staging/"
        for item in self._list(staging):
            if item["LastModified"] < before:
                doomed.append(item["Key"])
                found.append(item["Key"][len(self.prefix) :])
        if apply:
            self._delete_keys(doomed, "removing leftovers")
        return found

    def iter_uploads(self) -> Iterator[UploadInfo]:
        # One listing of the uploads prefix: an upload's last activity is its newest object
        # (the meta at begin, then one part per append). Parts left behind by an aborted or
        # finished upload have no meta and are not reported.
        prefix = f"{self.prefix}uploads/"
        newest: dict[str, datetime] = {}
        has_meta: set[str] = set()
        for item in self._list(prefix):
            upload_id, _, rest = item["Key"][len(prefix) :].partition("/")
            moment = item["LastModified"]
            if upload_id not in newest or moment > newest[upload_id]:
                newest[upload_id] = moment
            if rest == "meta":
                has_meta.add(upload_id)
        for upload_id in sorted(has_meta):
            yield UploadInfo(upload_id=upload_id, last_activity=newest[upload_id])
