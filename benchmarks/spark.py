"""One wave's heavy steps on the Spark engine (local[2]) beside the polars engine, at 1M and 5M customers.

For each size a synthetic chain is written to a parquet lake first (not timed) and a segmenter is
fitted on a 200k sample (not timed). Then, in one process per engine:
- Spark's fixed overhead: session start, and the first stage (counting the transaction log);
- contracts: the transaction log against its suite (polars engine: `contracts.validate`, pandas
  great-expectations in key-hash parts; Spark: `spark.validate_spark`, great-expectations' Spark engine);
- segment_apply: features from the transaction log and the champion's labels (`features` +
  `assign_segments` / `features_spark` + `assign_segments_spark`, labels collected as the pipeline does);
- assign: one campaign's wave for every customer (8 segments x 40 variants), collected;
- update: the wave's synthetic events folded into the state (`update` / `update_spark`).

The equality of the answers is checked by the tests (`tests/test_spark.py`, `nbs/60_spark.ipynb`);
here the outputs' sizes are printed as a sanity check.

With two or more sizes it then prints Spark's marginal rates per core between the smallest and the largest
(per-job fixed costs cancel) and the core-seconds one wave would take at 100M and 1B customers at those rates:
an extrapolation for sizing a cluster, not a cluster measurement.

    .venv/bin/python benchmarks/spark.py [--sizes 1000000 5000000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 1)
SEED = 7


def prepare(n: int, folder: Path):
    import numpy as np
    import polars as pl
    from campaign_lab.bandit import ThompsonBeta, assign, init_state
    from campaign_lab.segments import assign_segments, features, fit_segmenter
    from campaign_lab.synth import generate_chain, respond
    chain = generate_chain(n, seed=SEED)
    chain.customers.write_parquet(folder / "customers.parquet")
    chain.transactions.write_parquet(folder / "transactions.parquet")
    feats = features(chain.transactions, chain.customers, as_of=AS_OF)
    seg = fit_segmenter(feats, k=8, seed=SEED, sample=200_000, as_of=AS_OF)
    (folder / "segmenter.json").write_text(seg.to_json())
    arms = pl.DataFrame({"campaign_id": "c", "segment": pl.Series(np.repeat(np.arange(8), 40), dtype=pl.Int16),
                         "variant_id": [f"v{j:02d}" for _ in range(8) for j in range(40)]})
    arms.write_parquet(folder / "arms.parquet")
    audience = feats.select("customer_id").with_columns(segment=assign_segments(seg, feats))
    audience.write_parquet(folder / "audience.parquet")
    wave = assign(init_state(arms, ThompsonBeta()), audience, policy=ThompsonBeta(), holdout=0.1, seed=SEED, wave=0, campaign_id="c")
    variants = pl.DataFrame({"variant_id": arms["variant_id"].unique().sort(), "campaign_id": "c", "tonality": "friendly", "offer_type": "none",
                             "offer_value": 0.0, "subject": "s", "preheader": "p", "subject_template": "plain", "cta": "order", "has_discount": False})
    events = respond(wave, variants, chain.truth, seed=SEED).join(wave.select("customer_id", "segment"), on="customer_id")
    events.write_parquet(folder / "events.parquet")
    return {"customers": n, "orders": chain.transactions.height, "events": events.height}


def run(engine: str, folder: Path) -> dict:
    import polars as pl
    from campaign_lab.bandit import ThompsonBeta, assign, init_state, update
    from campaign_lab.contracts import default_parameters, validate
    from campaign_lab.segments import Segmenter, assign_segments, features
    from campaign_lab.settings import load_settings
    settings = load_settings(ROOT)
    params = default_parameters(settings.chain_opened_at)
    seg = Segmenter.from_json((folder / "segmenter.json").read_text())
    arms = pl.read_parquet(folder / "arms.parquet")
    pol = ThompsonBeta()
    state = init_state(arms, pol)
    out, t = {}, time.perf_counter
    if engine == "polars":
        s = t(); tx = pl.read_parquet(folder / "transactions.parquet"); cust = pl.read_parquet(folder / "customers.parquet"); out["read"] = t() - s
        s = t(); r = validate("transactions", tx, settings.contracts_dir, params, references={"customers": cust}); out["contracts"] = t() - s
        assert r.success, r.failures
        s = t(); feats = features(tx, cust, as_of=AS_OF); labels = assign_segments(seg, feats); out["segment_apply"] = t() - s
        audience = pl.read_parquet(folder / "audience.parquet")
        s = t(); w = assign(state, audience, policy=pol, holdout=0.1, seed=SEED, wave=0, campaign_id="c"); out["assign"] = t() - s
        events = pl.read_parquet(folder / "events.parquet")
        s = t(); new = update(state, events, reward="conversion"); out["update"] = t() - s
        out["rows"] = {"labels": labels.len(), "assignments": w.height, "state": new.table.height}
        return out
    from campaign_lab.spark import (assign_segments_spark, assign_spark, features_spark, spark_session, to_polars, update_spark,
                                    validate_spark)
    s = t(); spark = spark_session(settings); out["session_start"] = t() - s
    s = t(); tx = spark.read.parquet(str(folder / "transactions.parquet")); tx.count(); out["first_stage"] = t() - s
    cust = spark.read.parquet(str(folder / "customers.parquet"))
    s = t(); r = validate_spark("transactions", tx, settings.contracts_dir, params, references={"customers": cust}); out["contracts"] = t() - s
    assert r.success, r.failures
    s = t(); labels = to_polars(assign_segments_spark(seg, features_spark(tx, cust, as_of=AS_OF))); out["segment_apply"] = t() - s
    audience = spark.read.parquet(str(folder / "audience.parquet"))
    s = t(); w = to_polars(assign_spark(state, audience, policy=pol, holdout=0.1, seed=SEED, wave=0, campaign_id="c")); out["assign"] = t() - s
    events = spark.read.parquet(str(folder / "events.parquet"))
    s = t(); new = update_spark(state, events, reward="conversion"); out["update"] = t() - s
    out["rows"] = {"labels": labels.height, "assignments": w.height, "state": new.table.height}
    spark.stop()
    return out


def child(args) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if res.returncode != 0: raise SystemExit(res.stderr[-4000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--prepare", nargs=2)
    ap.add_argument("--run", nargs=2)
    a = ap.parse_args()
    if a.prepare: print(json.dumps(prepare(int(a.prepare[0]), Path(a.prepare[1])))); return
    if a.run: print(json.dumps(run(a.run[0], Path(a.run[1])))); return
    print("one wave's heavy steps: polars engine (in process, 2 threads) vs Spark engine (local[2]), same machine, same run")
    measured = []
    for n in sorted(a.sizes):
        folder = Path(tempfile.mkdtemp(prefix="spark-bench-"))
        info = child(["--prepare", str(n), str(folder)])
        p, s = child(["--run", "polars", str(folder)]), child(["--run", "spark", str(folder)])
        assert p["rows"] == s["rows"], (p["rows"], s["rows"])
        print(f"\n{info['customers']:,} customers, {info['orders']:,} orders, {info['events']:,} events")
        print(f"  Spark fixed overhead: session start {s['session_start']:.1f} s, first stage (count the log) {s['first_stage']:.1f} s")
        print(f"  {'step':<16} {'polars s':>9} {'spark s':>9} {'spark/polars':>13}")
        for k in ("contracts", "segment_apply", "assign", "update"):
            print(f"  {k:<16} {p[k]:>9.2f} {s[k]:>9.2f} {s[k] / max(p[k], 1e-9):>12.1f}x")
        tp, ts = sum(p[k] for k in ("contracts", "segment_apply", "assign", "update")), sum(s[k] for k in ("contracts", "segment_apply", "assign", "update"))
        print(f"  {'total':<16} {tp:>9.2f} {ts:>9.2f} {ts / tp:>12.1f}x   (+ {s['session_start'] + s['first_stage']:.1f} s Spark start-up)")
        import shutil; shutil.rmtree(folder, ignore_errors=True)
        measured.append((info, s))
    if len(measured) >= 2: project(measured[0], measured[-1])


STEPS = {"contracts": "orders", "segment_apply": "orders", "assign": "customers", "update": "events"}

def project(small, large, cores: int = 2):
    "Marginal Spark rates between two sizes (fixed per-job costs cancel) and the core-seconds they imply at 100M and 1B customers."
    (i0, s0), (i1, s1) = small, large
    print(f"\nSpark marginal rates between {i0['customers']:,} and {i1['customers']:,} customers (local[{cores}]):")
    rate = {}
    for k, unit in STEPS.items():
        rows, secs = i1[unit] - i0[unit], s1[k] - s0[k]
        if secs <= 0:
            print(f"  {k:<16} no measurable growth ({secs:+.2f} s): sizes too close or too small to project from"); return
        rate[k] = rows / secs / cores
        print(f"  {k:<16} {rate[k] / 1e3:>8,.0f}k {unit}/s per core   ({rows:,} more {unit} in {secs:.1f} s more)")
    per = {u: i1[u] / i1["customers"] for u in ("orders", "events")} | {"customers": 1.0}
    print("extrapolated per-wave work (same per-core rates, same orders and events per customer; not measured on a cluster):")
    for n in (100_000_000, 1_000_000_000):
        cs = {k: n * per[u] / rate[k] for k, u in STEPS.items()}
        tot = sum(cs.values())
        print(f"  {n:>13,} customers: {tot:>9,.0f} core-s ({', '.join(f'{k} {v:,.0f}' for k, v in cs.items())});"
              f" on 64 cores {tot / 64 / 60:.1f} min, on 256 cores {tot / 256 / 60:.1f} min, before shuffle and driver costs")


if __name__ == "__main__":
    main()
