"""Segment features + assignment at scale, against a pandas groupby of the same features in the same run.

Each measurement runs in a fresh subprocess (peak memory = its VmHWM), on a synthetic chain written
to parquet first (generation is not timed):
- ours: campaign_lab.segments.features (one lazy polars query, streaming engine) on the transaction
  log, then assign_segments with a segmenter fitted on a 200k sample (fit time printed separately);
- pandas: the same features with pandas groupby (numpy-backed frame), at 1M customers (about 10M
  orders) and extrapolated linearly to 12M, since it would not fit the time budget at full size.

    .venv/bin/python benchmarks/segments.py [--customers 12000000] [--pandas-customers 1000000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time

AS_OF = dt.date(2026, 11, 1)


def hwm_gb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def ours(folder: str) -> dict:
    import polars as pl
    from campaign_lab.segments import assign_segments, features, fit_segmenter
    tx, cust = pl.scan_parquet(f"{folder}/transactions.parquet"), pl.read_parquet(f"{folder}/customers.parquet")
    rows = tx.select(pl.len()).collect().item()
    t0 = time.perf_counter(); f = features(tx, cust, as_of=AS_OF); t_feat = time.perf_counter() - t0
    t0 = time.perf_counter(); seg = fit_segmenter(f, k=8, seed=1, sample=200_000, as_of=AS_OF); t_fit = time.perf_counter() - t0
    t0 = time.perf_counter(); lab = assign_segments(seg, f); t_assign = time.perf_counter() - t0
    return {"customers": cust.height, "orders": rows, "features_s": t_feat, "fit_s": t_fit, "assign_s": t_assign, "peak_gb": hwm_gb()}


def pandas_features(folder: str) -> dict:
    import numpy as np
    import pandas as pd
    tx = pd.read_parquet(f"{folder}/transactions.parquet")
    cust = pd.read_parquet(f"{folder}/customers.parquet")
    tx["daypart"] = tx["daypart"].astype(str)
    t0 = time.perf_counter()
    cutoff = pd.Timestamp(AS_OF); start = cutoff - pd.Timedelta(days=365)
    t = tx[tx.ordered_at < cutoff].copy()
    t["day"] = t.ordered_at.dt.normalize()
    t["recent"] = t.ordered_at >= start
    t["recent_amount"] = np.where(t.recent, t.amount, 0.0)
    t["weekend"] = t.ordered_at.dt.weekday >= 5
    for d in ("breakfast", "lunch", "afternoon", "dinner", "late"): t[f"{d}_share"] = t.daypart == d
    g = t.groupby("customer_id").agg(last=("day", "max"), first=("day", "min"), n_all=("amount", "size"), frequency=("recent", "sum"),
                                     monetary=("recent_amount", "sum"), offer_share=("used_offer", "mean"), weekend_share=("weekend", "mean"),
                                     **{f"{d}_share": (f"{d}_share", "mean") for d in ("breakfast", "lunch", "afternoon", "dinner", "late")})
    f = cust[["customer_id", "signup_date"]].merge(g, on="customer_id", how="left")
    f["recency_days"] = (cutoff - f["last"].fillna(pd.to_datetime(f.signup_date))).dt.days.clip(lower=0)
    f["tenure_days"] = (cutoff - pd.to_datetime(f.signup_date)).dt.days
    f["mean_gap_days"] = np.where(f.n_all >= 2, (f["last"] - f["first"]).dt.days / (f.n_all - 1), 365.0)
    f["avg_ticket"] = np.where(f.frequency > 0, f.monetary / f.frequency.where(f.frequency > 0, 1), 0.0)
    f = f.fillna(0)
    return {"customers": len(cust), "orders": len(tx), "features_s": time.perf_counter() - t0, "peak_gb": hwm_gb()}


def _sub(kind, folder) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", kind, folder], capture_output=True, text=True)
    if out.returncode != 0: raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make(folder, n):
    from campaign_lab.synth import generate_chain
    c = generate_chain(n, seed=20261126)
    c.transactions.write_parquet(f"{folder}/transactions.parquet"); c.customers.write_parquet(f"{folder}/customers.parquet")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000_000)
    ap.add_argument("--pandas-customers", type=int, default=1_000_000)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(ours(a.one[1]) if a.one[0] == "ours" else pandas_features(a.one[1]))); return
    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as big:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {repr(str(__file__.rsplit('/', 2)[0]))}); "
                        f"from benchmarks.segments import _make; _make({small!r}, {a.pandas_customers})"], check=True)
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {repr(str(__file__.rsplit('/', 2)[0]))}); "
                        f"from benchmarks.segments import _make; _make({big!r}, {a.customers})"], check=True)
        o_small, p_small, o_big = _sub("ours", small), _sub("pandas", small), _sub("ours", big)
    scale = o_big["orders"] / p_small["orders"]
    print(f"{'engine':<44} {'customers':>11} {'orders':>12} {'features s':>10} {'fit s':>7} {'assign s':>8} {'total s':>8} {'peak GB':>8}")
    for name, r in (("campaign_lab (polars)", o_small), ("pandas groupby", p_small), ("campaign_lab (polars)", o_big)):
        total = r["features_s"] + r.get("assign_s", 0.0)
        print(f"{name:<44} {r['customers']:>11,} {r['orders']:>12,} {r['features_s']:>10.2f} {r.get('fit_s', float('nan')):>7.2f} "
              f"{r.get('assign_s', float('nan')):>8.2f} {total:>8.2f} {r['peak_gb']:>8.2f}")
    print(f"\nfeatures at {p_small['customers']:,} customers: pandas {p_small['features_s']:.2f} s vs ours {o_small['features_s']:.2f} s "
          f"= {p_small['features_s'] / o_small['features_s']:.1f}x; pandas extrapolated to {o_big['orders']:,} orders: "
          f"{p_small['features_s'] * scale:.0f} s")
    print(f"target at 12M: features + assign < 30 s ({o_big['features_s'] + o_big['assign_s']:.1f} s), peak < 8 GB ({o_big['peak_gb']:.2f} GB)")


if __name__ == "__main__":
    main()
