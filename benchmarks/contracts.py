"""Contract validation at scale: campaign_lab.contracts.validate against plain great-expectations usage.

Measured, each in a fresh subprocess so that peak memory (VmHWM) is its own:

- ours: `validate("customers", df, ...)` on a polars frame read from parquet, the suite from
  data_contracts/ (ranges as column min/max), with each engine: `polars` (the default: the suite's
  rules as polars expressions, no great-expectations at all) and `gx` (great-expectations on one pandas
  copy, no whole-frame batch hash);
- baseline: the plain usage the docs show: the same rules on a pandas copy, ranges as per-row
  `expect_column_values_to_be_between`, the default batch (with its md5 of the whole frame);
- transactions: our `validate` on the full transaction log of the same chain (about 10 rows per
  customer), to say what a weekly run costs.

Peak memory is the whole process (Python, polars, the frame and great-expectations included);
the frame's own size is printed beside it.

    .venv/bin/python benchmarks/contracts.py [--customers 12000000] [--skip-transactions]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S, TARGET_GB = 15.0, 3.0


def _rss_gb() -> float:
    "Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def ours(table: str, path: str, refs: str, engine: str) -> dict:
    import polars as pl
    from campaign_lab.contracts import default_parameters, validate
    if engine == "gx": import great_expectations  # noqa: F401  (import cost is not validation cost)
    df = pl.read_parquet(path)
    references = {"customers": pl.read_parquet(refs)} if refs else None
    base = _rss_gb()
    t0 = time.perf_counter()
    r = validate(table, df, ROOT / "data_contracts", default_parameters(dt.date(2019, 1, 1)), references=references, engine=engine)
    return {"seconds": time.perf_counter() - t0, "success": r.success, "rows": r.n_rows, "rules": r.n_rules,
            "peak_gb": _rss_gb(), "before_gb": base, "frame_gb": df.estimated_size() / 1e9}


def baseline(path: str) -> dict:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import polars as pl
    from great_expectations.data_context.types.base import ProgressBarsConfig
    pdf = pl.read_parquet(path).to_pandas()
    base = _rss_gb()
    t0 = time.perf_counter()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = gx.ExpectationSuite(name="customers", expectations=[
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(pdf.columns)),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"), gxe.ExpectColumnValuesToBeUnique(column="customer_id"),
        gxe.ExpectColumnValuesToBeBetween(column="customer_id", min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="email"),
        gxe.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
        gxe.ExpectColumnValuesToNotBeNull(column="signup_date"),
        gxe.ExpectColumnValuesToBeBetween(column="signup_date", min_value=dt.datetime(2019, 1, 1), max_value=dt.datetime.now()),
        gxe.ExpectColumnValuesToNotBeNull(column="home_store"), gxe.ExpectColumnValuesToBeBetween(column="home_store", min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="email_opt_in")])
    bd = ctx.data_sources.add_pandas("pd").add_dataframe_asset("customers").add_batch_definition_whole_dataframe("all")
    r = bd.get_batch(batch_parameters={"dataframe": pdf}).validate(suite)
    return {"seconds": time.perf_counter() - t0, "success": r.success, "rows": len(pdf), "rules": len(suite.expectations),
            "peak_gb": _rss_gb(), "before_gb": base, "frame_gb": float(pdf.memory_usage(deep=True).sum()) / 1e9}


def _sub(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True)
    if out.returncode != 0: raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000_000)
    ap.add_argument("--skip-transactions", action="store_true")
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        kind, *rest = a.one
        res = ours(*rest) if kind == "ours" else baseline(*rest)
        print(json.dumps(res)); return
    from campaign_lab.synth import generate_chain
    with tempfile.TemporaryDirectory() as tmp:
        chain = generate_chain(a.customers, seed=20261126)
        cpath, tpath = f"{tmp}/customers.parquet", f"{tmp}/transactions.parquet"
        chain.customers.write_parquet(cpath)
        if not a.skip_transactions: chain.transactions.write_parquet(tpath)
        del chain
        rows = []
        b = _sub("baseline", cpath); rows.append(("customers", "plain GX on pandas (baseline)", b))
        g = _sub("ours", "customers", cpath, "", "gx"); rows.append(("customers", "campaign_lab.validate, engine=gx", g))
        o = _sub("ours", "customers", cpath, "", "polars"); rows.append(("customers", "campaign_lab.validate, engine=polars", o))
        if not a.skip_transactions:
            t = _sub("ours", "transactions", tpath, cpath, "polars")
            rows.append(("transactions", "validate, engine=polars (+ reference to customers)", t))
    print(f"{'table':<13} {'engine':<48} {'rows':>12} {'rules':>5} {'seconds':>8} {'rows/s':>11} {'peak GB':>8} {'frame GB':>9} {'pass':>5}")
    for table, name, r in rows:
        print(f"{table:<13} {name:<48} {r['rows']:>12,} {r['rules']:>5} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>11,.0f} "
              f"{r['peak_gb']:>8.2f} {r['frame_gb']:>9.2f} {str(r['success']):>5}")
    for name, r in (("engine=gx", g), ("engine=polars", o)):
        print(f"customers, {name}: {r['seconds']:.2f} s vs baseline {b['seconds']:.2f} s = {b['seconds'] / r['seconds']:.1f}x faster; "
              f"peak {r['peak_gb']:.2f} GB vs {b['peak_gb']:.2f} GB (targets: < {TARGET_S:.0f} s, < {TARGET_GB:.0f} GB)")


if __name__ == "__main__":
    main()
