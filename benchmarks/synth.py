"""Synthetic chain generation: rows per second and peak memory at 1M and 12M customers.

Each measurement runs in a fresh subprocess so that its peak RSS is its own. The baseline, measured
in the same run, is the same generator on one thread; the target (issue 2) is at least 10M
transaction rows per second on this 2-core machine, with 12M customers fitting in memory.

    .venv/bin/python benchmarks/synth.py [--sizes 1000000 12000000] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TARGET_ROWS_PER_S = 10e6


def _rss_gb() -> float:
    "Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def measure(n: int, threads: int) -> dict:
    from campaign_lab.synth import generate_chain
    generate_chain(1000, seed=1, threads=threads)  # warm up imports and lookup tables
    t0 = time.perf_counter()
    chain = generate_chain(n, seed=20261126, threads=threads)
    secs = time.perf_counter() - t0
    rows = chain.transactions.height
    size = sum(df.estimated_size() for df in (chain.customers, chain.transactions, chain.truth))
    return {"customers": n, "threads": threads, "seconds": secs, "transactions": rows, "rows_per_s": rows / secs,
            "frames_gb": size / 1e9, "peak_rss_gb": _rss_gb()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 12_000_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(*a.one)))
        return
    print(f"{'customers':>11} {'threads':>7} {'transactions':>13} {'seconds':>8} {'M rows/s':>9} {'vs 1 thread':>11} "
          f"{'vs target':>9} {'frames GB':>9} {'peak GB':>8}")
    for n in a.sizes:
        res = {}
        for threads in (1, 2):
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--one", str(n), str(threads)], check=True,
                                              capture_output=True, text=True).stdout) for _ in range(a.repeat)]
            res[threads] = min(runs, key=lambda r: r["seconds"])
        for threads, r in res.items():
            print(f"{n:>11,} {threads:>7} {r['transactions']:>13,} {r['seconds']:>8.2f} {r['rows_per_s'] / 1e6:>9.2f} "
                  f"{r['rows_per_s'] / res[1]['rows_per_s']:>10.2f}x {r['rows_per_s'] / TARGET_ROWS_PER_S:>8.2f}x "
                  f"{r['frames_gb']:>9.2f} {r['peak_rss_gb']:>8.2f}")


if __name__ == "__main__":
    main()
