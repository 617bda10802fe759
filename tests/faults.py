"""Faults on demand for tests and bench/faults.py: a command killed with everything it started,
a TCP service we can cut off, and a registry that is down until told otherwise."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]


class Group:
    """A command in a session of its own: killed with everything it started, whatever happens."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(40)
        self.kill()


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[Group]:
    group = Group(args, env, log)
    try:
        yield group
    finally:
        group.stop()


class Registry(BaseHTTPRequestHandler):
    """The processing system's registry: every code is known, unless it is down (503)."""

    up = threading.Event()
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if not self.up.is_set():
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"procedure": "1.000948", "applicant": "Nguyễn Văn An"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Cuttable:
    """A TCP proxy in front of a server, to cut it off: while down, connections are refused and
    those open are dropped, as when the server or its network goes away."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._open: list = []
        self._listener = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()
        self._open.clear()

    def _accept(self, listener) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session(sid: int) -> list[str]:
    """The processes (zombies included) of session `sid`, as 'pid state command'."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            command = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[3]) == sid:
            found.append(f"{entry.name} {fields[0].decode()} {command.decode(errors='replace')[:120]}")
    return found


def session_gone(sid: int, within: float = 2.0) -> list[str]:
    """What is left of session `sid` after `within` seconds (exiting processes get that long)."""
    deadline = time.monotonic() + within
    while (left := session(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def sohoa_env(data_dir: Path, broker: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a sohoa process on `data_dir`, with a task queue of its own: tests
    (and benchmark scenarios) running at once share the machine's Redis and RabbitMQ."""
    env = {**os.environ, "SOHOA_DATA_DIR": str(data_dir), "SOHOA_WORKERS": "2",
           "SOHOA_SCANNER_DISCOVERY": "false",
           "SOHOA_BROKER_QUEUE": f"sohoa-test-{uuid.uuid4().hex[:12]}", **extra}
    env.pop("SOHOA_BROKER_URL", None)
    if broker:
        env["SOHOA_BROKER_URL"] = broker
    return env


def submit_file(env: dict[str, str], path: Path, timeout: float = 300) -> str:
    """Queues `path` for the workers as the API does (ingest.tasks.submit), in a process with
    `env`; returns the batch id. RuntimeError with its stderr if it fails."""
    code = ("import json, sys; from pathlib import Path; from ingest.tasks import submit; "
            "print(json.dumps(submit(Path(sys.argv[1])).as_dict()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"submit failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["batch_id"]


def kill_session(sid: int, proc: subprocess.Popen) -> None:
    """SIGKILL to every process of session `sid`, whatever group it is in, until none is left."""
    for _ in range(3):
        for line in session(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if not session_gone(sid, 1):
            break


def api_key(env: dict[str, str], role: str = "scanner", agency: str = "*") -> str:
    """A new API key (`sohoa apikey create`) on the catalog of `env`."""
    sohoa = Path(sys.executable).parent / "sohoa"
    out = subprocess.run([str(sohoa), "apikey", "create", "--role", role, "--agency", agency],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"apikey create failed: {out.stderr[-2000:]}")
    return out.stdout.strip()


def queued(env: dict[str, str]) -> int | None:
    """The tasks waiting in the queue of `env` (ingest.tasks.queued_messages, in a process with
    `env`: the broker and queue are read from it at import)."""
    code = "from ingest.tasks import queued_messages; print(queued_messages())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"queued_messages failed: {out.stderr[-2000:]}")
    found = out.stdout.strip().splitlines()[-1]
    return None if found == "None" else int(found)
