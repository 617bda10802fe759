"""A process that reads pages keeps the memory of a freed page for the next one, instead of giving
it back to the kernel and faulting it in again (ocr.keep_freed_buffers); and it starts NumPy
without a BLAS pool of its own, its imports made with the collector off (api/launch.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a thread, as a page thread of the runner: ten pages' buffers (grey, then colour, at 300 dpi)
# made and freed one after the other; the page faults of the last nine are counted.
_PAGES = """
import json, resource, sys, threading
import numpy as np
import ingest.page_stages
from ingest.settings import Settings
if sys.argv[1] == "reading":
    ingest.page_stages.page_stages(Settings())
faults = {}
def pages(shape):
    np.ones(shape, np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(9):
        np.ones(shape, np.uint8)
    faults[str(shape)] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for shape in ((3300, 2550), (3300, 2550, 3)):
    t = threading.Thread(target=pages, args=(shape,))
    t.start()
    t.join()
print(json.dumps(faults))
"""


def _faults(mode: str, tmp_path: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _PAGES, mode], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "SOHOA_DATA_DIR": str(tmp_path),
                               "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout)


def test_a_page_reading_process_faults_no_page_of_a_freed_buffer_in_again(tmp_path: Path) -> None:
    # Given a process with the page stages built (what `sohoa ingest`, serve and workers build)
    # When page after page allocates and frees its pixels in a page thread
    faults = _faults("reading", tmp_path)
    # Then the pages after the first reuse its memory: no page faulted in again
    # (a grey page is 2,054 pages of 4 KB, a colour one 6,163)
    assert all(n < 100 for n in faults.values()), faults


def test_without_it_the_same_buffers_are_faulted_in_again(tmp_path: Path) -> None:
    # Given a process that did not build the page stages (the allocator as glibc sets it)
    # When the same pages are allocated and freed
    faults = _faults("plain", tmp_path)
    # Then some of their memory was given back and faulted in again: what the setting saves
    assert max(faults.values()) >= 100, faults


def _threads_after_numpy(first: str) -> int:
    code = (f"{first}; import numpy, re; "
            "print(re.search(r'Threads:\\s+(\\d+)', open('/proc/self/status').read())[1])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return int(done.stdout)


def test_sohoa_starts_numpy_without_a_blas_pool_of_its_own() -> None:
    # Given the `sohoa` command's entry point, loaded first as the command loads it
    # When NumPy is imported
    threads = _threads_after_numpy("import api.launch")
    # Then the process has its one thread: no BLAS threads beside it to spin after each call
    assert threads == 1


def test_the_command_collects_garbage_once_its_imports_are_made() -> None:
    # Given the `sohoa` command's entry point, which leaves the collector off while it imports
    code = ("import gc, sys, api.launch\n"
            "sys.argv = ['sohoa', '--help']\n"
            "try:\n    api.launch.main()\nexcept SystemExit:\n    pass\n"
            "print(gc.isenabled(), gc.get_freeze_count(), gc.get_stats()[0]['collections'])")
    # When a command has run
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    enabled, frozen, collections = done.stdout.split()[-3:]
    # Then the collector is on again, what the imports made is left out of its passes, and it
    # did not pass over them while they were made (with it on: 200 passes and more)
    assert enabled == "True"
    assert int(frozen) > 50_000
    assert int(collections) < 100
