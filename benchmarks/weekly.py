"""The real weekly cycle through kernels: the demo at N customers (default 12M), two campaigns, one wave, then each
step's duration and kernel peak from its run's manifest.

It runs `campaign-lab-world demo --campaign campaigns/win_back.yaml --campaign campaigns/spring.yaml --waves 1
--n-customers N` in a scratch project (settings pointing at this repository's contracts and pipelines), the way
`make demo` runs it, every step a papermill kernel with its HTML report. The demo spreads one wave's steps over the
world's weeks (the wave, then its feedback a week later, then its lift after the 28-day window); a week of the
cycle in steady state runs all of them, so the weekly figure is: segment_apply (the median over the weeks it ran),
both campaigns' variants, wave, export, feedback and lift, and the week's ingest of the customer snapshot and the new
orders (the median of the weekly ones, the first year's ingest excluded). The cycle's `validate` of the whole lake
runs every week before segment_apply and is printed beside it; segment_fit and the first ingest run once.

The baseline is not in the same run (it is old code): session 3 measured the same steps, without export and ingest,
at 279 s with kernel peaks up to 15.3 GB (README, "Scaling").

    .venv/bin/python benchmarks/weekly.py [--customers 12000000] [--work DIR] [--policy contextual_thompson --reward revenue]

`make demo` runs its waves with the contextual policy on revenue (POLICY, REWARD in the Makefile); without `--policy` the
waves run the wave pipeline's default, today's per-segment Thompson.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """[campaign_lab]
lake_dir = lake
runs_dir = runs
contracts_dir = {root}/data_contracts
pipelines_dir = {root}/nbs/pipelines
seed = 20261126
kernel_name = python3
holdout_share = 0.1
chain_opened_at = 2019-01-01
n_customers = {n}
cell_timeout = 3600
"""
BEFORE = {"seconds": 279.3, "peak_gb": 15.3}   # session 3, the same steps without export and ingest (README)


def make_demo(project: Path, customers: int, waves: int, *, policy: str | None = None, reward: str | None = None) -> float:
    "The demo (both campaigns, `waves` waves) in a fresh scratch project; its wall time in seconds."
    if project.exists() and any(project.iterdir()): raise SystemExit(f"{project}: not empty (the benchmark starts from a fresh project)")
    project.mkdir(parents=True, exist_ok=True)
    (project / "settings.ini").write_text(SETTINGS.format(root=ROOT, n=customers))
    shutil.copytree(ROOT / "campaigns", project / "campaigns")
    t0 = time.perf_counter()
    demo = subprocess.run([str(Path(sys.executable).parent / "campaign-lab-world"), "demo", "--campaign", "campaigns/win_back.yaml",
                           "--campaign", "campaigns/spring.yaml", "--waves", str(waves), "--n-customers", str(customers),
                           *(["--policy", policy] if policy else []), *(["--reward", reward] if reward else [])],
                          cwd=project, env=os.environ | {"CAMPAIGN_LAB_ROOT": str(project)}, capture_output=True, text=True)
    if demo.returncode: raise SystemExit(f"the demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}")
    return time.perf_counter() - t0


def runs(project: Path) -> list[dict]:
    "Every pipeline run of the demo: week, pipeline, what it ran on, seconds, kernel peak."
    out = []
    for m in sorted((project / "runs").glob("*/manifest.json")):
        r = json.loads(m.read_text())
        if r.get("pipeline") == "cycle" or r.get("status") != "succeeded": continue
        p = r.get("parameters", {})
        out.append({"week": m.parent.name[:8], "pipeline": r["pipeline"], "on": str(p.get("campaign_id") or p.get("table") or p.get("tables") or p.get("spec", "")),
                    "seconds": float(r["duration_s"]), "peak_gb": float(r.get("kernel_peak_gb") or 0.0)})
    return out


def weekly(rs: list[dict]) -> tuple[list[tuple[str, float, float]], dict]:
    "The steps of one steady-state week, and the once-only and validate runs beside them."
    first = min(r["week"] for r in rs)
    med = lambda xs: (statistics.median(r["seconds"] for r in xs), max(r["peak_gb"] for r in xs))
    pick = lambda name, week=None: [r for r in rs if r["pipeline"] == name and (week is None or r["week"] == week)]
    steps = [("segment_apply (median over weeks)", *med(pick("segment_apply")))]
    for r in pick("variants", first): steps.append((f"variants {Path(r['on']).name}", r["seconds"], r["peak_gb"]))
    for name in ("wave", "export", "feedback", "lift"):
        for r in pick(name): steps.append((f"{name} {r['on']}", r["seconds"], r["peak_gb"]))
    for table in ("customers", "transactions"):
        weekly_ingests = [r for r in pick("ingest") if r["on"] == table and r["week"] != first]
        if weekly_ingests: steps.append((f"ingest of the week's {table} (median)", *med(weekly_ingests)))
    other = {"validate (every week, median)": med(pick("validate")) if pick("validate") else None,
             "segment_fit (once)": med(pick("segment_fit")) if pick("segment_fit") else None,
             "ingest of the first year (once)": med([r for r in pick("ingest") if r["week"] == first and r["on"] == "transactions"])}
    return steps, other


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000_000)
    ap.add_argument("--work", help="the scratch project (kept); default: a temporary folder, removed at the end")
    ap.add_argument("--policy", help="the waves' policy, e.g. contextual_thompson (default: the wave pipeline's)")
    ap.add_argument("--reward", choices=("conversion", "revenue", "margin"), help="what the policy learns from")
    a = ap.parse_args()
    project = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench-weekly-"))
    try:
        wall = make_demo(project, a.customers, 1, policy=a.policy, reward=a.reward)
        steps, other = weekly(runs(project))
        print(f"the weekly cycle at {a.customers:,} customers, 2 campaigns, {a.policy or 'the default'} policy, every step a kernel with its report (the demo took "
              f"{wall:.0f} s in all, the synthetic world included)")
        print(f"{'step':<58} {'seconds':>8} {'kernel peak GB':>15}")
        for name, s, gb in steps: print(f"{name:<58} {s:>8.1f} {gb:>15.2f}")
        total, peak = sum(s for _, s, _ in steps), max(gb for _, _, gb in steps)
        print(f"{'segment_apply through lift':<58} {total:>8.1f} {peak:>15.2f}   target < 150 s, no kernel above 10 GB")
        print(f"{'before (session 3, same steps without export and ingest)':<58} {BEFORE['seconds']:>8.1f} {BEFORE['peak_gb']:>15.2f}   not this run: old code")
        for name, v in other.items():
            if v: print(f"{name:<58} {v[0]:>8.1f} {v[1]:>15.2f}")
        print(json.dumps({"steps": steps, "total_s": round(total, 1), "peak_gb": peak, "other": other}))
    finally:
        if not a.work: shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
