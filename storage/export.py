"""Dossiers as one ZIP for an auditor or a processing clerk, streamed as it is written.

Each dossier's latest version goes in as its stored objects (the PDF/A, its fields and whatever
else the manifest lists) beside its `manifest.json`, byte for byte as stored, under the dossier's
code; a last `SHA256SUMS` lists every file's checksum so `sha256sum -c SHA256SUMS` proves the copy
whole on any machine. The ZIP is never held in memory or on disk: entries are written with data
descriptors to a pipe the caller drains, one read of the store at a time.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from storage import layout
from storage.objects import ObjectStore
from storage.records import Manifest

CHUNK = 1 << 20


class _Pipe:
    """A write-only, unseekable file whose bytes the generator hands on as they come."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.written = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.written += len(data)
        return len(data)

    def tell(self) -> int:  # zipfile asks where it is; it never seeks an unseekable file
        return self.written

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def zip_name(codes: list[str]) -> str:
    """The download's file name: the one code, or how many dossiers and when."""
    if len(codes) == 1:
        return f"{codes[0]}.zip"
    return f"sohoa-{len(codes)}-dossiers-{datetime.now(UTC):%Y%m%d-%H%M%S}.zip"


def export_zip(store: ObjectStore, manifests: Iterable[Manifest]) -> Iterator[bytes]:
    """The ZIP's bytes in pieces of about CHUNK: `{code}/manifest.json`, `{code}/{object}` for
    each object of the version, and `SHA256SUMS` last. Objects are stored uncompressed (PDFs
    and images do not shrink; the checksums then match the stored bytes read straight)."""
    pipe = _Pipe()
    sums: list[str] = []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for manifest in manifests:
            code = manifest.dossier_id
            keys = [(f"{code}/manifest.json",
                     layout.version_prefix(code, manifest.version) + "manifest.json")]
            keys += [(f"{code}/{name}", stored.key)
                     for name, stored in sorted(manifest.objects.items())]
            for name, key in keys:
                digest = hashlib.sha256()
                info = zipfile.ZipInfo(name, date_time=_date_time(manifest.created_at))
                with archive.open(info, "w", force_zip64=True) as entry, store.open(key) as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        entry.write(chunk)
                        if len(pipe.buffer) >= CHUNK:
                            yield pipe.take()
                sums.append(f"{digest.hexdigest()}  {name}\n")
        archive.writestr("SHA256SUMS", "".join(sums))
    yield pipe.take()


def _date_time(created_at: str) -> tuple[int, int, int, int, int, int]:
    """The version's time as a ZIP entry's (which cannot be before 1980)."""
    try:
        at = datetime.fromisoformat(created_at)
    except ValueError:
        return (1980, 1, 1, 0, 0, 0)
    return (max(at.year, 1980), at.month, at.day, at.hour, at.minute, at.second)
