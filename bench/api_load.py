"""Load benchmark of the REST API on PostgreSQL: dossier lookup and search.

    .venv/bin/python bench/api_load.py --dossiers 5000 --rate 200 --seconds 20

Creates a fresh PostgreSQL database on 127.0.0.1:5432, seeds it (and a local object store) with
`--dossiers` indexed dossiers, starts `sohoa serve --no-worker --processes 2` on loopback, then per
route (every request authenticated, scoped and written to the audit log):
- wrk (Debian's, C): closed loop with `--connections` connections: the most the server does, and
  the latencies at that rate;
- with `--open-loop`, also an asyncio client at a constant `--rate` (a slow answer does not slow
  the sender). This client is Python and needs much of a core itself: on 2 cores it measures
  itself as much as the server, so wrk's figures are the ones to quote.
Client and server share the machine's 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.keys import KeyStore  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from storage import layout  # noqa: E402
from storage.catalog import Catalog  # noqa: E402
from storage.objects import LocalObjectStore  # noqa: E402
from tests import synth  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def seed(settings: Settings, count: int) -> list[str]:
    """Dossiers as the pipeline stores them (manifest, fields, text), without scanning pages."""
    store = LocalObjectStore(settings.storage.data_dir / "objects")
    catalog = Catalog(settings.storage.catalog_url)
    rng = random.Random(1)
    paragraphs = synth.corpus_paragraphs()
    codes = []
    for i in range(count):
        code = f"000.00.{i % 90 + 10:02d}.H40-2304{i % 28 + 1:02d}-{i:04d}"
        fields = {k: {"value": v, "page": 0, "confidence": 0.95, "source": "ocr"}
                  for k, v in synth.receipt_fields(i).items()}
        text = [{"page": 0, "lines": [paragraphs[rng.randrange(len(paragraphs))][:300]]}]
        prefix = layout.version_prefix(code, 1)
        manifest = {"format": 1, "dossier_id": code, "agency": code.split("-")[0], "version": 1,
                    "batch_id": "bseed", "code_source": "barcode", "pages": [0, 1],
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "original": {"key": "batches/bseed/original.pdf", "sha256": "0" * 64,
                                 "size": 0, "file": "seed.pdf"},
                    "objects": {name: {"key": prefix + name, "sha256": "0" * 64, "size": 0}
                                for name in ("dossier.pdf", "text.json", "fields.json")}}
        store.put(prefix + "manifest.json", synth_json(manifest), overwrite=True)
        catalog.index_version(manifest, fields, text)
        codes.append(code)
    return codes


def synth_json(obj: object) -> bytes:
    import json

    return json.dumps(obj, ensure_ascii=False).encode()


async def load(base: str, key: str, paths: list[str], rate: float, seconds: float
               ) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 limits=limits, timeout=10) as client:
        async def one(path: str) -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                r = await client.get(path)
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - t)

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def run_wrk(base: str, key: str, paths: list[str], seconds: float, tmp: str,
            connections: int = 4) -> tuple[float, float, float, int]:
    script = Path(tmp) / "paths.lua"
    quoted = ",".join(f'"{p}"' for p in paths)
    script.write_text(f'''math.randomseed(1)
local paths = {{{quoted}}}
wrk.headers["Authorization"] = "Bearer {key}"
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
''')
    run = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s",
                          str(script), base], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"wrk failed: {run.stdout} {run.stderr}")
    out = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, _wrk_ms(out, "50%"), _wrk_ms(out, "99%"), int(bad.group(1)) if bad else 0


def _wrk_ms(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dossiers", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--port", type=int, default=8799)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--open-loop", action="store_true",
                    help="also offer --rate requests/s from a Python asyncio client")
    args = ap.parse_args()
    name = f"sohoa_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="sohoa-load-") as tmp:
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            settings = Settings(data_dir=Path(tmp) / "data", database_url=url)
            codes = seed(settings, args.dossiers)
            key = KeyStore(url).create("admin", ["*"])
            env = {**os.environ, "SOHOA_DATA_DIR": str(settings.storage.data_dir),
                   "SOHOA_DATABASE_URL": url}
            server = subprocess.Popen([str(Path(sys.executable).parent / "sohoa"), "serve",
                                       "--no-worker", "--processes", "2", "--port",
                                       str(args.port)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                base = f"http://127.0.0.1:{args.port}"
                for _ in range(100):
                    try:
                        httpx.get(base + "/api/v1/openapi.json", timeout=1)
                        break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                rng = random.Random(2)
                routes = {
                    "lookup": [f"/api/v1/dossiers/{rng.choice(codes)}" for _ in range(2000)],
                    "search": [f"/api/v1/dossiers?q={quote(q)}&limit=20" for q in
                               ("nguyen van an", "dien bien phu", "khai sinh", "tran thi",
                                "cao bang", "ho kinh doanh")],
                }
                print(f"{args.dossiers} dossiers in PostgreSQL, {args.seconds:.0f} s per route\n")
                if shutil.which("wrk"):
                    print(f"wrk, closed loop, 1 thread, {args.connections} connections:\n")
                    print("| route | requests/s | p50 ms | p99 ms | non-2xx |")
                    print("|---|---|---|---|---|")
                    for route, paths in routes.items():
                        run_wrk(base, key, paths, 2, tmp, args.connections)  # warm-up
                        rps, p50, p99, bad = run_wrk(base, key, paths, args.seconds, tmp,
                                                     args.connections)
                        print(f"| {route} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {bad} |")
                if args.open_loop:
                    print(f"\nasyncio client, {args.rate:.0f} requests/s offered:\n")
                    print("| route | offered req/s | achieved req/s | p50 ms | p99 ms | errors |")
                    print("|---|---|---|---|---|---|")
                    for route, paths in routes.items():
                        lat, errors, elapsed = asyncio.run(load(base, key, paths, args.rate,
                                                                args.seconds))
                        print(f"| {route} | {args.rate:.0f} | {len(lat) / elapsed:.0f} | "
                              f"{pct(lat, 50):.1f} | {pct(lat, 99):.1f} | {errors} |")
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
