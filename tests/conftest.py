"""Shared fixtures: settings pointing at a temporary data dir, and a pipeline built from them; the
optional peer samples; and a safety net that leaves no process of the tests running after the
session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import Pipeline
from ingest.settings import Settings
from tests import synth

pytest_plugins = ("tests.browser",)  # browser-test fixtures: live_app, browser, page (and shot)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=2)


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline.from_settings(settings)


REQUIRE_SAMPLES = "SOHOA_REQUIRE_SAMPLES"  # set (to anything but 0) by .ci/run


@pytest.fixture(scope="session")
def samples() -> Path:
    """Other projects' real files (../shared/samples, beside the checkout). Without them a test
    that uses them is skipped, or fails where SOHOA_REQUIRE_SAMPLES is set (CI always runs them)."""
    if not synth.SAMPLES.is_dir():
        missing = "../shared/samples is not beside the checkout"
        if os.environ.get(REQUIRE_SAMPLES, "") not in ("", "0"):
            pytest.fail(f"{missing}, and {REQUIRE_SAMPLES} requires the peer samples", pytrace=False)
        pytest.skip(f"{missing}: peer samples skipped")
    return synth.SAMPLES


# ---- no process outlives the session ------------------------------------------------------------
#
# Tests start servers, workers and scanners in processes of their own and kill them in `finally`.
# Should one slip through (a failing setup, a test killing only the parent of a group), this kills
# it at the end of the session, and says so. Each pytest process that runs tests (each xdist
# worker, or pytest itself without xdist) cleans up what it started: its descendants, processes in
# the sessions and process groups of the children it started (orphaned grandchildren), and
# processes carrying its mark in their environment (whatever their parent is now). The xdist
# controller and workers themselves are never touched.

_OWNER_VAR = "PYTEST_PROCESS_OWNER"
# Helpers of this very process that end when it does (their pipe to it closes): not leftovers.
_KEEP = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "ocr.tesseract_child")
_TICKS = os.sysconf("SC_CLK_TCK")
_started: dict[int, int] = {}  # pid -> start time of the children started by subprocess.Popen
_session_start = 0  # in clock ticks since boot, like /proc/<pid>/stat's starttime
_leftovers: list[str] = []
# The temp dir of what the tests start: a server or worker killed on purpose leaves its
# multiprocessing dir (pymp-*) behind; here it goes with the session.
_temp_dir: str | None = None


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * _TICKS)


def _processes() -> dict[int, tuple[int, int, int, int, str]]:
    """pid -> (ppid, pgid, sid, starttime, state) of every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]),
                                  fields[0])
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()[:300]
    except OSError:
        return "?"


def _owner(pid: int) -> bytes | None:
    """The mark of the pytest process whose tests started `pid` (None if it carries none)."""
    try:
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(f"{_OWNER_VAR}=".encode()):
                return entry.split(b"=", 1)[1]
    except OSError:
        pass
    return None


def _led(leader: int, table: dict[int, tuple[int, int, int, int, str]]) -> bool:
    """Whether `leader` is a child we started (or was: gone now), not another process that
    was given its pid since."""
    return leader in _started and (leader not in table or table[leader][3] == _started[leader])


def _ours() -> list[int]:
    me = os.getpid()
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [me]
    while todo:  # descendants
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    mark = os.environ.get(_OWNER_VAR, "").encode()
    for pid, (_, pgid, sid, start, _) in table.items():
        if start < _session_start or pid in found:
            continue  # older than this session: not ours, whatever its numbers say
        owner = _owner(pid)
        if owner == mark or (owner is None and (_led(pgid, table) or _led(sid, table))):
            found.add(pid)  # (a process marked by another xdist worker is that worker's)
    found.discard(me)
    ancestors, pid = set(), me
    while pid in table and pid not in ancestors:
        ancestors.add(pid)
        pid = table[pid][0]
    return sorted(p for p in found - ancestors if table[p][4] != "Z" and not (
        table[p][0] == me and any(k in _command(p) for k in _KEEP)))


def _gone(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True  # our child, reaped
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith("Z")


def _kill_leftovers() -> list[str]:
    leftovers = _ours()
    deadline = time.monotonic() + 2
    while leftovers and time.monotonic() < deadline:  # some were killed a moment ago: still exiting
        time.sleep(0.05)
        leftovers = [pid for pid in leftovers if not _gone(pid)]
    described = [f"pid {pid}: {_command(pid) or '(exiting)'}" for pid in leftovers]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for pid in leftovers:
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return described


def pytest_sessionstart(session: pytest.Session) -> None:
    global _session_start
    if session.config.pluginmanager.hasplugin("dsession"):
        return  # the xdist controller runs no tests; its workers do this each for themselves
    _session_start = _uptime_ticks() - _TICKS  # a second of slack for the clock's rounding
    os.environ[_OWNER_VAR] = f"{os.getpid()}-{time.time_ns()}"  # inherited by what tests start
    global _temp_dir
    _temp_dir = os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="sohoa-tests-")
    tempfile.tempdir = None  # this process's own temp files go there too
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def recording(self: subprocess.Popen, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{self.pid}/stat").read_text()  # not reaped yet: readable
            _started[self.pid] = int(stat[stat.rindex(")") + 2:].split()[19])

    subprocess.Popen._execute_child = recording  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.pluginmanager.hasplugin("dsession") or not _session_start:
        return
    killed = _kill_leftovers()
    if _temp_dir:
        shutil.rmtree(_temp_dir, ignore_errors=True)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints them
        workeroutput["leftover_processes"] = killed
    else:
        _leftovers.extend(killed)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _leftovers.extend(getattr(node, "workeroutput", {}).get("leftover_processes", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _leftovers:
        terminalreporter.section("processes left running by the tests (killed)", yellow=True)
        for line in _leftovers:
            terminalreporter.write_line(line, yellow=True)
