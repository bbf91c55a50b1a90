"""The decision service under load, from a separate process, against baselines measured in the same run.

Builds a project (the sample lake with --customers customers, campaign `spring`, one wave assigned by the batch path),
starts the real service (`campaign-lab serve`, uvicorn, loopback) and drives `POST /v1/decisions` open-loop at each
rate for --seconds: requests go out on schedule whatever the answers do, and each latency is measured from the
request's scheduled time (so a stall counts against every request it delays). Prints p50, p95, p99, max and errors per
rate beside the target (p99 < 20 ms, no error at 1,000 requests/s), then the in-process decision (`serve.decide`, no
HTTP) per customer beside the batch path's per-customer cost (`bandit.assign` on the same customers), and the
published anchors (feature-flag SDKs 0.01-0.1 ms locally; a commercial next-best-offer engine, p99 < 200 ms).

    .venv/bin/python benchmarks/serve.py [--customers 200000] [--rates 200,500,1000] [--seconds 30] [--connections 32] [--setting KEY=VALUE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from campaign_lab.bandit import assign, make_policy, state_for_campaign
from campaign_lab.lake import commit, read_table
from campaign_lab.samples import sample_tables
from campaign_lab.serve import decide, load_model
from campaign_lab.settings import load_settings
from campaign_lab.waves import PolarsEngine, Tables, assign_wave

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789abcdef"


def make_project(root: Path, n: int, extra: str = "") -> Path:
    (root / "settings.ini").write_text(f"""[campaign_lab]
lake_dir = lake
runs_dir = runs
contracts_dir = {REPO / 'data_contracts'}
pipelines_dir = {REPO / 'nbs' / 'pipelines'}
seed = 11
kernel_name = python3
holdout_share = 0.1
chain_opened_at = 2019-01-01
n_customers = {n}
cell_timeout = 600
{extra}
""")
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)
    s = load_settings(root, env={})
    t = {k: v for k, v in sample_tables(n, seed=3).items() if k != "decisions"}
    commit(s.lake_dir, t)
    w = assign_wave(PolarsEngine(s), Tables(t, s.contracts_dir), campaign_id="spring", wave=1, policy=make_policy("thompson_beta"),
                    holdout=0.1, seed=s.seed)
    commit(s.lake_dir, w.tables, append=w.append & set(w.tables))
    (root / "tokens.txt").write_text(TOKEN + "\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


async def drive(port: int, rate: int, seconds: float, ids: np.ndarray, connections: int, tag: str) -> tuple[list[float], dict, int]:
    "Open-loop load: request i is due at t0 + i/rate; its latency runs from then to the last byte of its answer."
    queue: asyncio.Queue = asyncio.Queue()
    latencies, errors = [], {}
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n")
    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            due, body = item
            try:
                writer.write((head % len(body)).encode() + body)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port); continue
            latencies.append(time.perf_counter() - due)
            if status != 200: errors[status] = errors.get(status, 0) + 1
        writer.close()
    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)
    total, t0 = int(rate * seconds), time.perf_counter() + 0.05
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and t0 + i / rate <= now:   # everything due by now goes out
            cid = int(ids[i % len(ids)])
            body = json.dumps({"campaign_id": "spring", "customer_id": cid, "idempotency_key": f"{tag}-{i}"}).encode()
            queue.put_nowait((t0 + i / rate, body)); i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    for _ in tasks: queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return latencies, errors, total


def pct(xs, q): return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--rates", default="200,500,1000")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE", help="a settings.ini key for the service, e.g. serve_sync_seconds=0")
    args = ap.parse_args()
    try: import uvloop; uvloop.install()
    except ImportError: pass
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        t0 = time.perf_counter(); make_project(root, args.customers, "\n".join(x.replace("=", " = ", 1) for x in args.setting))
        print(f"project: {args.customers:,} customers, campaign spring (6 variants x 8 segments), built in {time.perf_counter() - t0:.1f} s"
              + (f"; settings {', '.join(args.setting)}" if args.setting else ""))
        s = load_settings(root, env={})
        ids = read_table(s.lake_dir, "customers")["customer_id"].sample(fraction=1.0, shuffle=True, seed=1).to_numpy()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_LAB_")} | {"CAMPAIGN_LAB_ROOT": str(root)}
        log = open(root / "serve.log", "wb")
        cmd = [str(BIN / "campaign-lab"), "--root", str(root), "serve", "--port", str(port), "--tokens", str(root / "tokens.txt")]
        proc = subprocess.Popen(cmd,
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
        import http.client
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/health/ready")
                if c.getresponse().status == 200: break
            except OSError: pass
            time.sleep(0.1)
        else: raise SystemExit(f"the service did not start: {(root / 'serve.log').read_text()}")
        asyncio.run(drive(port, 200, 3, ids, args.connections, "warmup"))
        print(f"\nHTTP, POST /v1/decisions, open loop for {args.seconds:g} s per rate, {args.connections} connections, latency from each request's scheduled time")
        print(f"{'rate (req/s)':>13} {'sent':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}   target: p99 < 20 ms, 0 errors at 1,000/s")
        for rate in (int(r) for r in args.rates.split(",")):
            lat, errors, total = asyncio.run(drive(port, rate, args.seconds, ids, args.connections, f"r{rate}"))
            n_err = sum(errors.values()) + (total - len(lat) - sum(v for k, v in errors.items() if isinstance(k, str)))
            print(f"{rate:>13,} {total:>7,} {pct(lat, 50):>8.2f} {pct(lat, 95):>8.2f} {pct(lat, 99):>8.2f} {max(lat) * 1e3:>8.1f} {n_err:>7,}"
                  + (f"   {errors}" if errors else ""))
        proc.terminate(); proc.wait(20)
        # in process: the same decisions without HTTP, beside the batch path on the same customers
        m = load_model(s)
        sample = ids[:200_000].tolist()
        best = []
        for rep in range(3):
            t = time.perf_counter()
            for i, cid in enumerate(sample): decide(m, "spring", cid, idempotency_key=f"p{rep}-{i}")
            best.append((time.perf_counter() - t) / len(sample))
        audience = read_table(s.lake_dir, "segments").select("customer_id", "segment").filter(pl.col("customer_id").is_in(sample))
        arms = read_table(s.lake_dir, "arms").filter(campaign_id="spring")
        st = state_for_campaign(read_table(s.lake_dir, "bandit_state"), None, arms, make_policy("thompson_beta"))
        batch = []
        for _ in range(3):
            t = time.perf_counter()
            assign(st, audience, policy=make_policy("thompson_beta"), holdout=0.1, seed=s.seed, wave=1, campaign_id="spring")
            batch.append((time.perf_counter() - t) / audience.height)
        d, b = min(best) * 1e6, min(batch) * 1e6
        print(f"\nin process, one customer at a time: serve.decide {d:.1f} µs per customer (target < 50 µs); "
              f"batch bandit.assign on {audience.height:,} customers: {b:.3f} µs per customer ({d / b:,.0f}x cheaper per customer in bulk)")
        print("anchors (published): feature-flag SDKs evaluate locally in 0.01-0.1 ms; a commercial next-best-offer engine promises p99 < 200 ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
