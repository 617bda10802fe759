"""The object store interface and its local-disk implementation.

Keys are '/'-separated paths (see storage/layout.py). Objects are immutable unless written with
`overwrite=True` (status records only); `put` returns the SHA-256 the manifests record.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20


class ObjectExists(Exception):
    """An immutable object already exists with different content."""


class ObjectMissing(KeyError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Leftover:
    """What a process killed mid-write left behind (a half-written object, an unfinished upload):
    never data, removed at start-up once old enough (storage/cleanup.py)."""
    name: str  # a path, or s3://bucket/key?uploadId=...
    size: int
    modified: float  # epoch seconds
    remove: Callable[[], None]


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, overwrite: bool = False,
            retention_days: int | None = None) -> ObjectInfo:
        """Stores `data`; `retention_days` asks for WORM retention where the store supports it."""
        ...

    def put_file(self, key: str, path: Path) -> ObjectInfo: ...

    def create(self, key: str, data: bytes) -> bool:
        """Writes only if absent (a claim); True if this call created it."""
        ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO:
        """The object as a stream (not read into memory); ObjectMissing if absent."""
        ...

    def size(self, key: str) -> int:
        """The object's length in bytes; ObjectMissing if absent."""
        ...

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        """A stream of bytes start..start+length-1 (an HTTP Range), fetched as such; the caller
        checks the range against `size`. ObjectMissing if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def sha256(self, key: str) -> str: ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A file path holding the object, for tools that need one (poppler, Pillow): the
        object's own file, or a temporary copy of it."""
        ...

    def file_path(self, key: str) -> Path | None:
        """The object's own file when the store keeps objects as files (served or read in place,
        no copy); None for a remote store: callers then stream (`open`, `open_range`) or copy
        (`local_path`). ObjectMissing if a local one is absent (a remote store answers None
        without asking the server)."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad object key: {key!r}")
    return key


READERS = 8  # objects fetched at once by get_all


def get_all(store: ObjectStore, keys: list[str]) -> list[bytes]:
    """The objects of `keys`, in their order. From a remote store they are fetched side by side
    (each waits on its own answer: a dossier's page facts and pages on S3 are round trips
    that add up); from the local disk, one after the other."""
    if len(keys) < 2 or store.file_path(keys[0]) is not None:
        return [store.get(k) for k in keys]
    with ThreadPoolExecutor(min(READERS, len(keys))) as readers:
        return list(readers.map(store.get, keys))


def sha256_file(path: Path) -> str:
    """The file's SHA-256; one digest_ahead() computed for the same unchanged file is taken."""
    with _ahead_lock:
        pending = _ahead.pop(file_identity(path), None)
    if pending is not None:
        pending.join()
        if (digest := pending.digest) is not None:
            return digest
    return _sha256_file(path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Digest(threading.Thread):
    """One file's SHA-256 on a thread of its own (digest_ahead); `digest` None if it could not
    be read."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="digest", daemon=True)
        self.path = path
        self.digest: str | None = None

    def run(self) -> None:
        with suppress(OSError):  # sha256_file reads it again, and says what is wrong
            self.digest = _sha256_file(self.path)


_ahead: dict[tuple[int, int, int, int], _Digest] = {}
_ahead_lock = threading.Lock()


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """The file as it is now: a file written again since has another (its time, its size)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def digest_ahead(path: Path) -> None:
    """Starts computing `path`'s SHA-256 on a thread of its own, for sha256_file() to take if
    the file is still the same then: `sohoa ingest` starts it while the rest of sohoa is
    imported, on the core the imports leave idle, so that receiving the file reads it once
    on the way to the first page (29 MB: 0.03 s; BENCHMARKS.md)."""
    key = file_identity(path)
    if key is None or not path.is_file():
        return
    with _ahead_lock:
        if key in _ahead:
            return
        _ahead[key] = thread = _Digest(path)
    thread.start()


class _Hasher(Protocol):
    def update(self, chunk: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _HashAlong:
    """SHA-256 of the chunks given to `update`, computed on a thread of its own in their order,
    while the caller writes them and syncs the file: a batch's original (29 MB for the
    benchmark's 24 pages) is hashed and written at once, not one after the other, at the start
    of a batch where nothing else runs yet (BENCHMARKS.md, "The interpreter"). Hashing lets go
    of the interpreter, as writing does. At most `AHEAD` chunks wait for it: a slow disk or a
    slow hash holds the writer back rather than the whole file in memory."""

    AHEAD = 8

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._error: BaseException | None = None
        self._chunks: queue.Queue[bytes | None] = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._run, name="hash-along", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._error is None:  # past a failure, only drained: the writer never waits
                try:
                    self._h.update(chunk)
                except BaseException as e:  # raised in the writer's thread
                    self._error = e

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def hexdigest(self) -> str:
        """The digest of every chunk given; the thread ends. Called once."""
        self._chunks.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._h.hexdigest()


class LocalObjectStore:
    """Objects as files under `root`; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _write(self, key: str, fill: Callable[[], Iterator[bytes] | list[bytes]],
               overwrite: bool, hash_along: bool = False) -> ObjectInfo:
        """With `hash_along`, the chunks are hashed on a thread of their own while they are
        written and synced (_HashAlong): for a file of many chunks."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        h: _Hasher = _HashAlong() if hash_along else hashlib.sha256()
        size = 0
        try:
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in fill():
                        f.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                digest = h.hexdigest()  # a _HashAlong's thread ends here, whatever happened
            if target.exists() and not overwrite:
                if sha256_file(target) != digest:
                    raise ObjectExists(key)
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return ObjectInfo(key, size, digest)

    def put(self, key: str, data: bytes, overwrite: bool = False,
            retention_days: int | None = None) -> ObjectInfo:
        """Local disk has no WORM: retention is the object store's job (S3 object lock)."""
        return self._write(key, lambda: [data], overwrite)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        return self._write(key, chunks, overwrite=False, hash_along=True)

    def create(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise ObjectMissing(key) from e

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as e:
            raise ObjectMissing(key) from e

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as e:
            raise ObjectMissing(key) from e

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        f = self.open(key)
        f.seek(start)
        return _Limited(f, length)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()

    def sha256(self, key: str) -> str:
        try:
            return sha256_file(self._path(key))
        except FileNotFoundError as e:
            raise ObjectMissing(key) from e

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        yield self.file_path(key)

    def file_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        return path

    def leftovers(self, older_than: float) -> Iterator[Leftover]:
        """`.tmp-*` files of `_write` last modified more than `older_than` seconds ago."""
        cutoff = time.time() - older_than
        for folder, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".tmp-"):
                    path = Path(folder) / name
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue  # renamed into place or removed meanwhile
                    if stat.st_mtime < cutoff:
                        yield Leftover(str(path), stat.st_size, stat.st_mtime,
                                       lambda path=path: path.unlink(missing_ok=True))


class _Limited(io.RawIOBase):
    """At most `length` bytes of an open file, from where it stands; closing closes the file."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f, self._left = f, max(0, length)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(n) if n else b""
        self._left -= len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()
