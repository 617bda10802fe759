"""The object store on MinIO / S3, through the minio SDK: same keys and semantics as the local store.

The bucket is versioned (overwriting a batch record keeps its history). Every object carries its
SHA-256 in its metadata, and single-part uploads also send it as the S3 checksum, so the server
rejects a corrupted upload. With object lock enabled, objects written with `retention_days` get a
COMPLIANCE retention: the server refuses to delete or overwrite those versions until it ends.
Large files go up in 16 MiB parts and come down as streams.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import S3Error
from minio.helpers import genheaders
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

from storage.objects import CHUNK, Leftover, ObjectExists, ObjectInfo, ObjectMissing, _check_key, sha256_file

PART_SIZE = 16 * 1024 * 1024
# Written by the store's first write without overwrite, to learn whether the server enforces
# conditional writes; outside the prefixes the catalog is rebuilt from, and never listed.
PROBE_KEY = "store/conditional-writes-probe"
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchVersion", "ResourceNotFound"}


def _checksums(digest: hashlib._Hash) -> dict[str, str]:
    """The object's SHA-256 in its metadata (what `put` compares), and as the S3 checksum, so
    that the server refuses a corrupted upload."""
    return {"x-amz-meta-sha256": digest.hexdigest(), "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": base64.b64encode(digest.digest()).decode()}


class S3ObjectStore:
    def __init__(self, client: Minio, bucket: str, object_lock: bool = False) -> None:
        self.client, self.bucket, self.object_lock = client, bucket, object_lock
        self._conditional_writes: bool | None = None  # asked at the first write
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, object_lock=object_lock)
        if not object_lock:  # object lock implies versioning
            client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))

    @classmethod
    def connect(cls, endpoint: str, access_key: str, secret_key: str, bucket: str,
                secure: bool = True, region: str | None = None,
                object_lock: bool = False, timeout_s: float = 30.0) -> S3ObjectStore:
        """A store on `bucket`. `timeout_s` bounds a connect and each wait for an answer's next
        bytes (minio's own: 5 minutes): a connection dropped without a word (a network cut, a
        server gone) fails in seconds, as a transient error the caller retries or waits out,
        instead of holding a page's lease alive for half an hour."""
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), maxsize=10,
            cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=5, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]))  # minio's own
        client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                       region=region, http_client=http)
        return cls(client, bucket, object_lock)

    # ---- writes ----------------------------------------------------------------------------

    def _stat_sha(self, key: str) -> str | None:
        try:
            stat = self.client.stat_object(self.bucket, key)
        except S3Error as e:
            if e.code in _MISSING:
                return None
            raise
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        return meta.get("x-amz-meta-sha256") or self._hash_remote(key)

    def _retention(self, days: int | None) -> Retention | None:
        if not (self.object_lock and days):
            return None
        return Retention(COMPLIANCE, datetime.now(UTC).replace(microsecond=0) + timedelta(days=days))

    def put(self, key: str, data: bytes, overwrite: bool = False,
            retention_days: int | None = None) -> ObjectInfo:
        digest = hashlib.sha256(data)
        info = ObjectInfo(key, len(data), digest.hexdigest())
        if not overwrite:
            # Where the server enforces If-None-Match, one request writes a new key; else (or
            # when the key is there) its checksum says whether it holds these bytes already.
            if self._enforces_if_none_match() and self._put_if_absent(key, data, retention_days):
                return info
            existing = self._stat_sha(_check_key(key))
            if existing is not None:
                if existing != info.sha256:
                    raise ObjectExists(key)
                return info
        self.client.put_object(self.bucket, _check_key(key), io.BytesIO(data), len(data),
                               metadata=_checksums(digest),
                               retention=self._retention(retention_days))
        return info

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        digest, size = sha256_file(path), path.stat().st_size
        existing = self._stat_sha(_check_key(key))
        if existing is not None:
            if existing != digest:
                raise ObjectExists(key)
            return ObjectInfo(key, size, existing)
        with path.open("rb") as f:
            self.client.put_object(self.bucket, key, f, size, part_size=PART_SIZE,
                                   metadata={"x-amz-meta-sha256": digest})
        return ObjectInfo(key, size, digest)

    def create(self, key: str, data: bytes) -> bool:
        """A claim: True if this call created the key. One conditional PUT (`If-None-Match: *`)
        where the server enforces it (S3, MinIO); else the key's first version decides, which
        takes four requests, one of them a listing of the key's versions."""
        if self._enforces_if_none_match():
            return self._put_if_absent(key, data)
        return self._create_by_first_version(key, data)

    def _put_if_absent(self, key: str, data: bytes, retention_days: int | None = None) -> bool:
        """One PUT with `If-None-Match: *`: True if it wrote the key, False if the key was
        there (on a server that enforces the header)."""
        # The minio SDK's put_object would send If-None-Match as user metadata
        # (x-amz-meta-if-none-match): its lower-level PUT sends headers as given. It is not
        # public API: pyproject.toml keeps minio below 8, and tests/test_s3_store.py checks it.
        headers = genheaders(_checksums(hashlib.sha256(data)), None, None,
                             self._retention(retention_days), False)
        headers["If-None-Match"] = "*"
        for attempt in range(5):
            try:
                self.client._put_object(self.bucket, _check_key(key), data, headers=headers)
                return True
            except S3Error as e:
                if e.code == "PreconditionFailed":
                    return False
                if e.code != "ConditionalRequestConflict" or attempt == 4:
                    raise
                time.sleep(0.05 * 2 ** attempt)  # S3: another write of the key is under way
        raise AssertionError("unreachable")

    def _enforces_if_none_match(self) -> bool:
        """Whether the server refuses a second `If-None-Match: *` PUT of a key (S3 since 2024,
        MinIO, moto do; an older server ignores the header). Asked once per store, of a probe
        key that stays in the bucket: at most two requests."""
        if self._conditional_writes is None:
            self._conditional_writes = not (self._put_if_absent(PROBE_KEY, b"conditional writes")
                                            and self._put_if_absent(PROBE_KEY, b"conditional writes"))
        return self._conditional_writes

    def _create_by_first_version(self, key: str, data: bytes) -> bool:
        if self.exists(key):
            return False
        self.put(key, data, overwrite=True)
        versions = sorted(self.client.list_objects(self.bucket, prefix=key, include_version=True),
                          key=lambda o: o.last_modified)
        first = next(v for v in versions if v.object_name == key)
        return self._read(key, first.version_id) == data

    # ---- reads ----------------------------------------------------------------------------

    def _read(self, key: str, version_id: str | None = None) -> bytes:
        with self.open(key, version_id) as f:
            return f.read()

    def get(self, key: str) -> bytes:
        return self._read(key)

    def open(self, key: str, version_id: str | None = None) -> BinaryIO:
        try:
            response = self.client.get_object(self.bucket, _check_key(key), version_id=version_id)
        except S3Error as e:
            if e.code in _MISSING:
                raise ObjectMissing(key) from e
            raise
        return _ResponseStream(response)  # type: ignore[return-value]

    def size(self, key: str) -> int:
        try:
            return self.client.stat_object(self.bucket, _check_key(key)).size or 0
        except S3Error as e:
            if e.code in _MISSING:
                raise ObjectMissing(key) from e
            raise

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        """Bytes start..start+length-1, fetched as such (HTTP Range for downloads)."""
        try:
            response = self.client.get_object(self.bucket, _check_key(key), offset=start,
                                              length=length)
        except S3Error as e:
            if e.code in _MISSING:
                raise ObjectMissing(key) from e
            raise
        return _ResponseStream(response)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, _check_key(key))
            return True
        except S3Error as e:
            if e.code in _MISSING:
                return False
            raise

    def list(self, prefix: str) -> Iterator[str]:
        """The keys under `prefix`; the conditional-writes probe is the store's, not data."""
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            if not obj.is_dir and obj.object_name != PROBE_KEY:
                yield obj.object_name

    def versions(self, key: str) -> list[str]:
        """Version ids of one key, newest first."""
        found = [o for o in self.client.list_objects(self.bucket, prefix=key, include_version=True)
                 if o.object_name == key]
        return [o.version_id for o in sorted(found, key=lambda o: o.last_modified, reverse=True)]

    def sha256(self, key: str) -> str:
        """Recomputed from the stored bytes: what `verify` needs, not what the metadata claims."""
        if not self.exists(key):
            raise ObjectMissing(key)
        return self._hash_remote(key)

    def _hash_remote(self, key: str) -> str:
        h = hashlib.sha256()
        with self.open(key) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def file_path(self, key: str) -> Path | None:
        """No object of a remote store is a local file: stream it or copy it (`local_path`)."""
        return None

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        suffix = Path(key).suffix
        with tempfile.NamedTemporaryFile(prefix="sohoa-s3-", suffix=suffix) as tmp:
            with self.open(key) as f:
                while chunk := f.read(CHUNK):
                    tmp.write(chunk)
            tmp.flush()
            yield Path(tmp.name)

    def leftovers(self, older_than: float) -> Iterator[Leftover]:
        """Multipart uploads started more than `older_than` seconds ago and never completed (the
        uploader died): their parts take space and are no object. minio's SDK lists and aborts
        them only through its private calls."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        key_marker = upload_marker = None
        while True:
            page = self.client._list_multipart_uploads(self.bucket, key_marker=key_marker,
                                                       upload_id_marker=upload_marker)
            for up in page.uploads:
                if up.initiated_time is None or up.initiated_time >= cutoff:
                    continue
                parts = self.client._list_parts(self.bucket, up.object_name, up.upload_id).parts
                yield Leftover(f"s3://{self.bucket}/{up.object_name}?uploadId={up.upload_id}",
                               sum(p.size or 0 for p in parts), up.initiated_time.timestamp(),
                               lambda up=up: self._abort(up.object_name, up.upload_id))
            if not page.is_truncated:
                return
            key_marker, upload_marker = page.next_key_marker, page.next_upload_id_marker

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client._abort_multipart_upload(self.bucket, key, upload_id)
        except S3Error as e:
            if e.code != "NoSuchUpload":  # another process aborted it first
                raise


class _ResponseStream(io.RawIOBase):
    """A urllib3 response as a closable binary stream that gives its connection back."""

    def __init__(self, response) -> None:  # type: ignore[no-untyped-def]
        self._r = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._r.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._r.read() if size is None or size < 0 else self._r.read(size)

    def close(self) -> None:
        if not self.closed:
            self._r.close()
            self._r.release_conn()
        super().close()
