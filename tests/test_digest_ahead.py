"""`sohoa ingest` hashes the files it is given while it imports the rest of sohoa
(storage/objects.py digest_ahead); receiving a file takes that digest only if the file is still
the one hashed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage import objects


def test_a_file_hashed_ahead_is_not_read_again(tmp_path: Path, monkeypatch) -> None:
    """Given a file hashed ahead, when its digest is asked, then it is the file's SHA-256, and
    the file was read once."""
    path = tmp_path / "batch.pdf"
    path.write_bytes(os.urandom(3 << 20))
    reads = []
    real = objects._sha256_file
    monkeypatch.setattr(objects, "_sha256_file", lambda p: reads.append(p) or real(p))
    objects.digest_ahead(path)
    assert objects.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert reads == [path]


def test_a_file_written_again_after_it_was_hashed_gets_its_new_digest(tmp_path: Path) -> None:
    """Given a file hashed ahead and then written anew (another length), when its digest is
    asked, then it is the new content's."""
    path = tmp_path / "batch.pdf"
    path.write_bytes(b"first scan" * 1000)
    objects.digest_ahead(path)
    path.write_bytes(b"second, longer scan" * 1000)
    assert objects.sha256_file(path) == hashlib.sha256(b"second, longer scan" * 1000).hexdigest()


def test_a_missing_file_is_not_hashed_ahead_and_still_says_so(tmp_path: Path) -> None:
    """Given a name that is no file, then hashing it ahead does nothing, and asking its digest
    fails as it always did."""
    objects.digest_ahead(tmp_path / "none.pdf")
    with pytest.raises(FileNotFoundError):
        objects.sha256_file(tmp_path / "none.pdf")
