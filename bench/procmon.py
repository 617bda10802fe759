"""Runs a command and reports its wall time, the peak resident memory of its whole process tree, and
the CPU time the tree spent."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    peak_pss_mb: float = 0.0  # with `detail`: the tree's proportional set size at its peak
    at_peak: list[tuple[str, float, float]] | None = None  # with `detail`: (process, RSS, PSS) MB
    cpu_seconds: float = 0.0  # user + system of the command and the children it waited for


PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PACKAGES = ("api", "ingest", "ocr", "storage", "scanners")  # sohoa's own


def compiled(*roots: str | Path) -> None:
    """sohoa's modules under each checkout in `roots` compiled to bytecode, as an installed sohoa
    runs (scripts/setup compiles them): with PYTHONDONTWRITEBYTECODE set, a module changed since
    would be compiled anew by every run measured. Only what changed is compiled."""
    import compileall

    for root in roots:
        for package in PACKAGES:
            if (Path(root) / package).is_dir():
                compileall.compile_dir(Path(root) / package, quiet=1, workers=0)


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and its descendants, found through /proc/PID/task/TID/children:
    a handful of reads per sample, so that measuring memory does not slow the tool measured
    (reading every process's stat every 50 ms cost the tool ~4 % of its time on 2 cores)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _tree_detail(root: int) -> list[tuple[str, float, float]]:
    """(name, RSS MB, PSS MB) of each process of the tree. PSS shares each page among the
    processes mapping it: forked workers and shared libraries are counted once in the sum."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            kb = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
            cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
            out.append((cmd[:60], kb.get("Rss", 0) / 1024, kb.get("Pss", 0) / 1024))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return out


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        detail: bool = False) -> Run:
    """`detail`: also the PSS at the peak and each process's share (reading smaps_rollup costs a
    little more; leave it off when timing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    peak = 0
    peak_pss = 0.0
    at_peak: list[tuple[str, float, float]] | None = None
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss, at_peak
        while not done.is_set():
            rss = _tree_rss_kb(proc.pid)
            if detail and rss > peak:
                at_peak = _tree_detail(proc.pid)
            if detail:
                peak_pss = max(peak_pss, sum(p for _n, _r, p in _tree_detail(proc.pid)))
            peak = max(peak, rss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, peak / 1024, proc.returncode, out, err, peak_pss, at_peak, cpu)
