"""A batch's original is copied into the local store while a thread hashes the same chunks
(storage/objects.py _HashAlong): the stored copy is byte for byte the file, its recorded digest
is the copy's, and a copy that fails leaves neither an object nor a thread behind."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from storage import objects
from storage.objects import LocalObjectStore


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hash-along"]


def test_a_file_of_many_chunks_is_stored_whole_with_its_own_digest(tmp_path: Path) -> None:
    """Given a file of several chunks and a part, when it is put into the store, then the object
    is the file byte for byte, and its recorded size and SHA-256 are the object's."""
    data = os.urandom(5 * objects.CHUNK + 12345)
    path = tmp_path / "batch.pdf"
    path.write_bytes(data)
    store = LocalObjectStore(tmp_path / "objects")

    info = store.put_file("batches/b1/original.pdf", path)

    stored = store.get("batches/b1/original.pdf")
    assert stored == data
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(stored).hexdigest() == store.sha256(info.key)
    assert not _hash_threads()


def test_a_copy_cut_short_leaves_no_object_and_no_thread(tmp_path: Path) -> None:
    """Given a source that fails after a few chunks (a disk error mid-read), when it is put, then
    the error is raised, no object nor temporary file is left, and the hashing thread ended."""
    store = LocalObjectStore(tmp_path / "objects")

    def chunks():
        for _ in range(objects._HashAlong.AHEAD * 3):  # more than wait for the hash at once
            yield os.urandom(objects.CHUNK)
        raise OSError("read error")

    with pytest.raises(OSError, match="read error"):
        store._write("batches/b2/original.pdf", chunks, overwrite=False, hash_along=True)

    assert not store.exists("batches/b2/original.pdf")
    assert not list((tmp_path / "objects").rglob(".tmp-*"))
    assert not _hash_threads()


def test_a_hash_that_fails_fails_the_copy(tmp_path: Path, monkeypatch) -> None:
    """Given hashing that fails on its thread, when a file is put, then the copy fails with that
    error rather than record a digest that is not the copy's, and nothing is stored."""
    path = tmp_path / "batch.pdf"
    path.write_bytes(os.urandom(3 * objects.CHUNK))
    store = LocalObjectStore(tmp_path / "objects")

    class Broken:
        def update(self, chunk: bytes) -> None:
            raise MemoryError("no room to hash")

        def hexdigest(self) -> str:
            return "0" * 64

    monkeypatch.setattr(objects.hashlib, "sha256", Broken)

    with pytest.raises(MemoryError, match="no room"):
        store.put_file("batches/b3/original.pdf", path)

    assert not store.exists("batches/b3/original.pdf")
    assert not _hash_threads()
