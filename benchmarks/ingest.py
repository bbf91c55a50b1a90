"""The real loop's data paths at 12M customers: ingest of a chain's exports, the weekly append, a wave's export, lift from orders.

Every step runs in a fresh process (`--step`), so its peak memory (VmHWM) is its own, the way a pipeline's kernel would see it.
The exports are written once by the synthetic world (not timed). Steps, each beside a baseline measured in the same run:

- ingest: 12M customers and the year of orders (~113M) from parquet exports through `ingest_files` and a run context's
  `publish` (contract checks on every new row, references, the lake commit), beside the IO floor: reading both
  exports and writing them once as parquet.
- append: a week of ~2M new orders added to a lake holding 1 week of history, and to one holding the year plus 10 weekly
  parts: the ratio says whether the append depends on the history's size.
- export: one wave of 12M customers (90% treated) in all four formats, beside Braze's rate limit for the same updates
  (about 75,000 a second: 160 s for 12M) and the IO floor of writing the recipients once as parquet.
- lift: `orders_window` (visits and spend in the 28 days after the wave, spend in the 28 before, from the lake's
  orders) and `measure_lift` at 12M customers, beside a bare scan of the orders' time and amount columns.

    .venv/bin/python benchmarks/ingest.py [--customers 12000000] [--work DIR] [--only ingest,floor_ingest,...]

With `--work DIR` the prepared exports and lakes are kept in DIR and reused by the next call (the steps that write start
from a fresh copy each time), so one step can be measured again after a change without preparing 12M customers anew.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """[campaign_lab]
lake_dir = lake
runs_dir = runs
contracts_dir = {contracts}
pipelines_dir = {pipelines}
seed = 1
kernel_name = python3
holdout_share = 0.1
chain_opened_at = 2019-01-01
n_customers = 1000
cell_timeout = 3600
"""
SENT = dt.datetime(2026, 11, 2, 9)


def hwm_gb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.ini").write_text(SETTINGS.format(contracts=ROOT / "data_contracts", pipelines=ROOT / "nbs" / "pipelines"))
    for d in ("lake", "runs"): (folder / d).mkdir(exist_ok=True)
    return folder


def step(name: str, work: Path, n: int) -> dict:
    "Run one step in this process; return its seconds and peak memory."
    import polars as pl
    from campaign_lab.context import open_run
    from campaign_lab.ingest import ingest_files
    ex = work / "exports"
    t0 = time.perf_counter()
    out = {}
    if name == "floor_ingest":
        c, t = pl.read_parquet(ex / "customers.parquet"), pl.read_parquet(ex / "orders.parquet")
        c.write_parquet(work / "floor_c.parquet"); t.write_parquet(work / "floor_t.parquet")
        out["rows"] = c.height + t.height
    elif name == "ingest":
        ctx = open_run(str(work / "big"), "", "ingest")
        for table, f in (("customers", "customers.parquet"), ("transactions", "orders.parquet")):
            ing = ingest_files(ctx, table, [ex / f])
            ctx.publish(ing.tables, append=ing.append)
            out[table] = ing.added.height
    elif name.startswith("append_"):
        ctx = open_run(str(work / f"run_{name}"), "", "ingest")
        ing = ingest_files(ctx, "transactions", [ex / "week_new.parquet"])
        ctx.publish(ing.tables, append=ing.append)
        out["added"], out["history_rows"] = ing.added.height, ing.total_rows - ing.added.height
        from campaign_lab.lake import table_version
        out["parts"] = len(table_version(work / f"run_{name}" / "lake", "transactions").files)
    elif name == "export":
        from campaign_lab.export import FORMATS, export_wave
        from campaign_lab.waves import Tables
        lake = Tables({"assignments": pl.read_parquet(ex / "assignments.parquet"), "variants": pl.read_parquet(ex / "variants.parquet"),
                       "customers": pl.read_parquet(ex / "customers.parquet")}, ROOT / "data_contracts")
        t0 = time.perf_counter()   # the reads are the lake's, not the export's
        done, m = export_wave(lake, campaign_id="spring_menu", wave=0, formats=list(FORMATS), out_dir=work / "outbox")
        out |= {"recipients": m.recipients, "files": m.files, "gb": round(m.bytes / 1e9, 2)}
    elif name == "floor_export":
        from campaign_lab.export import send_rows
        a, v, c = (pl.read_parquet(ex / f) for f in ("assignments.parquet", "variants.parquet", "customers.parquet"))
        t0 = time.perf_counter()
        rec, _ = send_rows(a, v, c)
        rec.write_parquet(work / "floor_recipients.parquet")
        out["recipients"] = rec.height
    elif name == "lift":
        from campaign_lab.lake import read_table
        from campaign_lab.lift import lift_frame, measure_lift, orders_window
        rows = pl.read_parquet(ex / "assignments.parquet")
        ow = orders_window(read_table(work / "lift" / "lake", "transactions", lazy=True), rows, window_days=28, pre_days=28)
        a = measure_lift(lift_frame(rows, ow.outcomes, ow.pre), design=0.1, window_days=28)
        out |= {"customers": ow.outcomes.height, "complete": ow.complete, "rel_spend": round(a.row("spend")["rel_lift"], 4)}
    elif name == "floor_lift":
        from campaign_lab.lake import read_table
        s = read_table(work / "lift" / "lake", "transactions", lazy=True).select("customer_id", "ordered_at", "amount").collect()
        out["rows"] = s.height
    out |= {"seconds": round(time.perf_counter() - t0, 2), "peak_gb": round(hwm_gb(), 2)}
    return out


def run_step(name: str, work: Path, n: int) -> dict:
    import os
    env = os.environ | {"CAMPAIGN_LAB_CLOCK": "2027-02-01T00:00:00"}   # a clock after every week the world drew
    r = subprocess.run([sys.executable, __file__, "--step", name, "--work", str(work), "--customers", str(n)], capture_output=True, text=True, env=env)
    if r.returncode: raise SystemExit(f"step {name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def prepare(work: Path, n: int) -> None:
    "The world's exports (not timed): customers, the year of orders, a week of new orders, one wave's assignments."
    import numpy as np
    import polars as pl
    from campaign_lab.lake import TABLES, write_table
    from campaign_lab.world import SENDS_SCHEMA, create_world, orders_between
    ex = work / "exports"
    ex.mkdir(parents=True)
    w = create_world(work / "world", work / "inbox", n_customers=n, seed=7)
    shutil.move(next((work / "inbox" / "customers").glob("*.parquet")), ex / "customers.parquet")
    shutil.move(next((work / "inbox" / "orders").glob("*.parquet")), ex / "orders.parquet")
    no_sends = pl.DataFrame(schema=SENDS_SCHEMA)
    first = w.state["next_transaction_id"]
    weeks = []
    for k in range(12):   # week 0..10 of history after the year, week 11 the new one
        start = dt.datetime(2026, 11, 1) + dt.timedelta(days=7 * k)
        tx = orders_between(w, no_sends, start, start + dt.timedelta(days=7), first_id=first)
        first += tx.height
        weeks.append(tx)
    weeks[-1].write_parquet(ex / "week_new.parquet")
    rng = np.random.default_rng(3)
    ids = w.customers["customer_id"]
    variants = pl.DataFrame({"variant_id": [f"spring_menu-v{i:03d}" for i in range(200)], "campaign_id": "spring_menu",
                             "tonality": "friendly", "offer_type": "percent_off", "offer_value": 10.0,
                             "subject": [f"Spring menu: {i}% off your next lunch" for i in range(200)],
                             "preheader": "New dishes this week", "subject_template": "t", "cta": "Order now", "has_discount": True})
    variants.write_parquet(ex / "variants.parquet")
    treated = rng.random(n) >= 0.1
    pl.DataFrame({"campaign_id": "spring_menu", "wave": pl.Series([0] * n, dtype=pl.Int32), "customer_id": ids,
                  "segment": pl.Series(rng.integers(0, 8, n), dtype=pl.Int16),
                  "arm": pl.Series(np.where(treated, "treatment", "holdout")).cast(pl.Enum(("treatment", "holdout"))),
                  "variant_id": pl.Series(np.array(variants["variant_id"])[rng.integers(0, 200, n)]).set(pl.Series(~treated), None),
                  "propensity": np.where(treated, 0.9 / 200, 0.1), "policy": "thompson_beta", "state_version": 0,
                  "assigned_at": SENT}, schema_overrides={"state_version": pl.Int64}).write_parquet(ex / "assignments.parquet")
    # the append lakes: one week of history; the year plus ten weekly parts (written straight to the lake: not timed)
    small, big10 = project(work / "small"), project(work / "big10")
    cust = pl.read_parquet(ex / "customers.parquet")
    for lake in (small, big10): write_table(lake / "lake", "customers", cust)
    write_table(small / "lake", "transactions", weeks[0], append=True)
    write_table(big10 / "lake", "transactions", pl.read_parquet(ex / "orders.parquet"), append=True)
    for tx in weeks[:10]: write_table(big10 / "lake", "transactions", tx, append=True)
    # the lift lake: the year and the four weeks after the wave
    lift = project(work / "lift")
    write_table(lift / "lake", "transactions", pl.read_parquet(ex / "orders.parquet"), append=True)
    for tx in weeks[:5]: write_table(lift / "lake", "transactions", tx, append=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=12_000_000)
    p.add_argument("--step", help="run one step in this process (what the benchmark does in a child)")
    p.add_argument("--work", help="with --step: the prepared folder; alone: prepare it here once and keep it")
    p.add_argument("--only", help="comma-separated steps to run (a step and its floor print together)")
    args = p.parse_args()
    if args.step:
        print(json.dumps(step(args.step, Path(args.work), args.customers))); return
    keep = args.work is not None
    work = Path(args.work) if keep else Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t0 = time.perf_counter()
        if not (work / "exports").exists():
            prepare(work, args.customers)
            print(f"exports and lakes prepared in {time.perf_counter() - t0:.0f} s (not timed below) at {args.customers:,} customers")
        steps = ("floor_ingest", "ingest", "append_small", "append_big10", "floor_export", "export", "floor_lift", "lift")
        only = set(args.only.split(",")) if args.only else set(steps)
        if bad := only - set(steps): raise SystemExit(f"--only: unknown steps {sorted(bad)}; known: {', '.join(steps)}")
        r = {}
        for s in (s for s in steps if s in only):
            if s == "ingest" or s.startswith("append_"):   # these write: each run starts from the prepared lake
                src, dst = (None, work / "big") if s == "ingest" else (work / s.split("_", 1)[1], work / f"run_{s}")
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst) if src else project(dst)
            r[s] = run_step(s, work, args.customers)
        print()
        if {"ingest", "floor_ingest"} <= r.keys():
            i, f = r["ingest"], r["floor_ingest"]
            print(f"ingest {i['customers']:,} customers + {i['transactions']:,} orders: {i['seconds']:.1f} s, peak {i['peak_gb']:.1f} GB "
                  f"(target < 90 s, < 8 GB); IO floor (read both exports, write them once) {f['seconds']:.1f} s, peak {f['peak_gb']:.1f} GB: "
                  f"{i['seconds'] / f['seconds']:.1f}x the floor")
        if {"append_small", "append_big10"} <= r.keys():
            a, b = r["append_small"], r["append_big10"]
            print(f"weekly append of {a['added']:,} orders: {a['seconds']:.2f} s onto {a['history_rows']:,} rows of history ({a['parts']} parts), "
                  f"{b['seconds']:.2f} s onto {b['history_rows']:,} rows ({b['parts']} parts): ratio {b['seconds'] / a['seconds']:.2f} "
                  f"(target < 10 s, independent of the history); peaks {a['peak_gb']:.1f} / {b['peak_gb']:.1f} GB")
        if {"export", "floor_export"} <= r.keys():
            e, fe = r["export"], r["floor_export"]
            braze = e["recipients"] / 75_000     # Braze's /users/track takes about 75,000 attribute updates a second: 160 s for 12M
            print(f"export of {e['recipients']:,} recipients in 4 formats ({e['files']} files, {e['gb']} GB): {e['seconds']:.1f} s, peak "
                  f"{e['peak_gb']:.1f} GB (target < 30 s); Braze's rate limit for the same updates {braze:.0f} s ({braze / e['seconds']:.1f}x "
                  f"the export); recipients once as parquet {fe['seconds']:.1f} s")
        if {"lift", "floor_lift"} <= r.keys():
            l, fl = r["lift"], r["floor_lift"]
            print(f"lift from the lake's orders at {l['customers']:,} customers: {l['seconds']:.1f} s, peak {l['peak_gb']:.1f} GB (target < 20 s); "
                  f"a bare scan of {fl['rows']:,} orders' customer, time and amount {fl['seconds']:.1f} s")
        print(json.dumps(r))
    finally:
        if not keep: shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
