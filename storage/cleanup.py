"""Crash leftovers, removed when `sohoa serve` or `sohoa worker` starts.

A process killed mid-write (kill -9, out of memory, power loss) leaves behind what it was writing:

- `<data_dir>/incoming/tmp*`: an upload the API was receiving (api/app.py);
- `.tmp-*` files beside the local store's objects: an object half written (LocalObjectStore._write);
- `<data_dir>/cache/.<name>.<pid>`: an original half copied from a remote store (ingest/pipeline.py);
- `sohoa-s3-*` in the system temporary directory: an object half downloaded from S3 (s3.py);
- incomplete multipart uploads on S3 (S3ObjectStore.leftovers).

None of it is data (the object store never lists it), and each is removed only when older than an
hour: another live process on the same data may be writing a younger one right now. Each removal is
logged with its size, then a summary.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage.objects import Leftover

HOUR = 3600.0
log = logging.getLogger("sohoa.cleanup")

# (folder under data_dir, file names)
_LOCAL = [("incoming", re.compile(r"tmp.+")),
          ("cache", re.compile(r"\..+\.\d+"))]
_S3_DOWNLOADS = re.compile(r"sohoa-s3-.+")


def _files(folder: Path, pattern: re.Pattern[str], cutoff: float) -> Iterator[Leftover]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # finished and removed meanwhile
        if entry.is_file(follow_symlinks=False) and stat.st_mtime < cutoff:
            path = Path(entry.path)
            yield Leftover(str(path), stat.st_size, stat.st_mtime,
                           lambda path=path: path.unlink(missing_ok=True))


def find_leftovers(store: Any, data_dir: Path, older_than: float = HOUR) -> list[Leftover]:
    """What crashed processes left in `data_dir`, the system temporary directory and `store`,
    last modified more than `older_than` seconds ago."""
    cutoff = time.time() - older_than
    found = [item for folder, pattern in _LOCAL for item in _files(data_dir / folder, pattern, cutoff)]
    found += _files(Path(tempfile.gettempdir()), _S3_DOWNLOADS, cutoff)
    if hasattr(store, "leftovers"):
        try:
            found += store.leftovers(older_than)
        except Exception as e:  # a store that does not answer now is cleaned at the next start
            log.warning("crash leftovers in the object store not looked for: %s", e)
    return found


def remove_leftovers(store: Any, data_dir: Path, older_than: float = HOUR) -> list[Leftover]:
    """Removes crash leftovers older than `older_than` seconds (one log line each, then a summary)
    and returns those removed."""
    removed = []
    for item in find_leftovers(store, data_dir, older_than):
        age_h = (time.time() - item.modified) / 3600
        try:
            item.remove()
        except Exception as e:
            log.warning("crash leftover %s (%d bytes) not removed: %s", item.name, item.size, e)
            continue
        log.warning("removed crash leftover %s (%d bytes, %.1f h old)", item.name, item.size, age_h)
        removed.append(item)
    if removed:
        log.warning("start-up cleanup: %d crash leftovers removed, %d bytes freed", len(removed),
                    sum(item.size for item in removed))
    else:
        log.info("start-up cleanup: no crash leftovers older than %.0f min", older_than / 60)
    return removed
