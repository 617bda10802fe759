"""libtesseract in a child process of its own, kept for the life of the worker.

Why a child: Tesseract ends the process on an internal assertion (`ASSERT_HOST` calls abort()), and
a page that crashes the worker itself would be handed to the next worker, and the next. In a child,
a crash or a page over its time limit costs only that child: the page gets a ToolError (recorded,
retried like any tool failure), and the next page starts a new child. The price is one copy of the
page through a pipe (a few milliseconds for a 200-dpi page).

Protocol on the child's stdin/stdout, one page at a time: a 4-byte little-endian length, a JSON
header, then raw bytes (pixels in, the text-layer PDF out).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ocr.errors import ToolError
from ocr.tesseract_api import Engine, RawWord

if TYPE_CHECKING:  # the child starts without NumPy: it takes the page's bytes as they come
    import numpy as np

_HEAD = struct.Struct("<I")
# -S: no site-packages (the child needs only the standard library and this package, found on
# PYTHONPATH): its start costs half what it did, at the batch's start where it counts.
_CHILD = [sys.executable, "-S", "-m", "ocr.tesseract_child"]
# A page's pixels go to the child through a pipe this large (Linux's limit for a user, by
# default), in as many writes: at the default 64 KB, a 200-dpi page took sixty writes, each a
# wait for the child to take the one before.
_PIPE_BYTES = 1 << 20
_KILL_GRACE_S = 10.0  # past the page's own deadline (which Tesseract checks between words)
_local = threading.local()


class Reader:
    """The worker's side: sends pages to its child, starting (or restarting) it as needed."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = os.getpid()
        self._loading = False  # a load request sent whose answer is still in the pipe
        self.on_handing: Callable[[], None] | None = None  # told before each page is written

    def load(self, languages: str) -> None:
        """Starts the child and has it load `languages` without waiting: the engine loads
        (0.15 s for vie, plus the child's start) while this process does other work."""
        header = json.dumps({"languages": languages, "load": True, "shape": [0]}).encode()
        try:
            self._child()
            self._write(_HEAD.pack(len(header)) + header, time.monotonic() + _KILL_GRACE_S)
        except (OSError, ToolError):  # no child now (no process to spare, a pipe gone)
            self.close()  # the first page starts one, and says what is wrong if it cannot
            return
        self._loading = True

    def read(self, languages: str, pixels: np.ndarray, dpi: int, variables: dict[str, str],
             timeout_s: float) -> tuple[list[RawWord], bytes]:
        if pixels.dtype != "uint8" or not pixels.flags.c_contiguous:
            pixels = pixels.astype("uint8", order="C")
        header = json.dumps({"languages": languages, "dpi": dpi, "variables": variables,
                             "timeout": timeout_s, "shape": pixels.shape}).encode()
        request = _HEAD.pack(len(header)) + header
        deadline = time.monotonic() + timeout_s + _KILL_GRACE_S
        if self.proc is not None and self.proc.poll() is not None:
            self.close()  # gone between pages (killed, out of memory): a new one takes this page
        self._child()
        if self.on_handing is not None:
            self.on_handing()
        try:
            if self._loading:  # the answer to load(): nothing in it
                self._read(_HEAD.unpack(self._read(_HEAD.size, deadline))[0], deadline)
                self._loading = False
            self._write(request, deadline)
            self._write(memoryview(pixels).cast("B"), deadline)
            answer = json.loads(self._read(_HEAD.unpack(self._read(_HEAD.size, deadline))[0],
                                           deadline))
            pdf = self._read(answer.get("pdf", 0), deadline)
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise ToolError("tesseract", "crashed on this page (while taking it)") from None
        except ToolError:
            self.close()
            raise
        if "error" in answer:
            raise ToolError("tesseract", answer["error"])
        return [RawWord(t, c, tuple(b), tuple(ln)) for t, c, b, ln in answer["words"]], pdf

    def _child(self) -> None:
        if self.proc is None:
            root = str(Path(__file__).resolve().parents[1])
            env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            self.proc = subprocess.Popen(_CHILD,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            with _lock:
                _readers.add(self)
            assert self.proc.stdin is not None
            os.set_blocking(self.proc.stdin.fileno(), False)  # writes wait in select(), timed
            with contextlib.suppress(OSError):  # a smaller limit set on the machine: 64 KB
                fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    def _write(self, data: bytes | memoryview, deadline: float) -> None:
        """All of `data` into the child's stdin, or ToolError at the deadline (a child that stopped
        reading would otherwise block the worker for good once the pipe is full)."""
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise ToolError("tesseract", "over the page's time limit: stopped")
            try:
                view = view[os.write(fd, view[:_PIPE_BYTES]):]
            except BlockingIOError:  # less room in the pipe than select() promised
                continue

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ToolError("tesseract", "over the page's time limit: stopped")
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                code = self.proc.wait()
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                raise ToolError("tesseract", f"crashed on this page ({how})")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None
        self._loading = False


# Every reader with a child, for stop_all(): held here, as a thread's reader outlives its thread
# (its child would wait on a pipe nobody closes until this process ends).
_readers: set[Reader] = set()
_ahead: list[Reader] = []  # started by start_ahead(), not yet any thread's
_lent: list[Reader] = []  # taken from _ahead by borrowed(), to be given back
_lock = threading.RLock()  # _readers and _ahead


def _forked() -> None:
    """A forked worker starts with none of its parent's readers, and a lock no thread holds."""
    global _lock
    _lock = threading.RLock()
    _readers.clear()
    _ahead.clear()
    _lent.clear()


os.register_at_fork(after_in_child=_forked)


def start_ahead(languages: str, count: int) -> None:
    """Up to `count` children started now, their engine loading, for the next threads that
    read a page: the first pages of a batch do not wait for a child's start (0.3 s each).
    Those already waiting count; with `count` waiting, a call costs nothing."""
    with _lock:
        _ahead[:] = [r for r in _ahead if r.pid == os.getpid()]  # a forked worker's own only
        for _ in range(count - len(_ahead) - len(_lent)):
            ahead = Reader()
            ahead.load(languages)
            _ahead.append(ahead)


def stop_all() -> None:
    """Ends every child of this process, those waiting ahead included: a batch whose pages are
    read gives back their memory (80 MB each) before its dossiers are assembled. A reader
    used again starts a new child."""
    with _lock:
        _ahead.clear()
        _lent.clear()
        mine = {r for r in _readers if r.pid == os.getpid()}
        _readers.difference_update(mine)
    for r in mine:
        r.close()


def reader() -> Reader:
    """This thread's reader: one started ahead if there is one. A forked worker makes its own:
    the parent's pipe is not its to use."""
    readers: dict[int, Reader] = _local.__dict__.setdefault("readers", {})
    pid = os.getpid()
    if pid not in readers:
        with _lock:
            mine = next((r for r in _ahead if r.pid == pid), None)
            if mine is not None:
                _ahead.remove(mine)
        readers[pid] = mine or Reader()
    return readers[pid]


@contextlib.contextmanager
def borrowed(on_handing: Callable[[], None] | None = None) -> Iterator[None]:
    """This thread reads with a reader started ahead (or a new one) and gives it back after,
    for the next thread that reads a page: `sohoa ingest` reads its first pages on threads of
    their own while the rest of sohoa is imported (ingest/ahead.py), and the runner's threads
    then read with the same children, not two more. A borrowed reader counts as waiting for
    start_ahead(). `on_handing` is called before each page is written to the child: from
    there on, the thread waits for Tesseract."""
    pid = os.getpid()
    with _lock:
        lent = next((r for r in _ahead if r.pid == pid), None)
        if lent is not None:
            _ahead.remove(lent)
        lent = lent or Reader()
        _lent.append(lent)
    readers: dict[int, Reader] = _local.__dict__.setdefault("readers", {})
    readers[pid], lent.on_handing = lent, on_handing
    try:
        yield
    finally:
        lent.on_handing = None
        readers.pop(pid, None)
        with _lock:
            kept = lent in _lent  # not when stop_all() ended the children meanwhile
            if kept:
                _lent.remove(lent)
                _ahead.append(lent)
        if not kept:
            lent.close()


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: one engine per language set, loaded at first use."""
    engines: dict[str, Engine] = {}
    while True:
        try:
            head = _read_exact(requests, _HEAD.size)
            req = json.loads(_read_exact(requests, _HEAD.unpack(head)[0]))
            shape = tuple(req["shape"])
            pixels = _read_exact(requests, math.prod(shape))
        except EOFError:
            return  # the worker closed the pipe (between pages, or dying mid-page): our end too
        pdf = b""
        try:
            languages = req["languages"]
            if languages not in engines:
                engines[languages] = Engine(languages)
            answer: dict[str, object] = {"words": [], "pdf": 0}
            if not req.get("load"):  # a load request (Reader.load) asks for the engine only
                words, pdf = engines[languages].read(pixels, shape, req["dpi"],
                                                     req["variables"], req["timeout"])
                answer = {"words": [[w.text, w.confidence, w.box, w.line] for w in words],
                          "pdf": len(pdf)}
        except (ToolError, ValueError) as e:  # ValueError: pixels that do not fill the shape
            answer = {"error": str(e).removeprefix("tesseract: ")}
        body = json.dumps(answer, ensure_ascii=False).encode()
        try:
            answers.write(_HEAD.pack(len(body)) + body + pdf)
            answers.flush()
        except BrokenPipeError:
            return  # the worker is gone (killed mid-page): nobody to answer


def main() -> None:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the answers
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
