"""Waves 1 and 10 of a 12M-customer campaign: does a wave cost the same however many came before?

The lake grows by appended parts (assignments, events, the bandit's seen event ids and states), so a wave and its
feedback should read only what they need: this wave's rows and the ids of this batch, not the whole history. This
benchmark runs the wave pipeline's and the feedback pipeline's library calls (`waves.assign_wave`, `waves.wave_rows`,
`waves.fold_feedback`, each published through a run context into a real lake, contract checks and commits included)
for `--waves` consecutive waves of one campaign, each step in its own process (its peak memory is its own, as a
pipeline kernel's would be). The synthetic chain answers each wave (`synth.respond`, not timed). The baseline of each
wave is the first wave measured in the same run: the ratio of wave k to wave 1 should stay near 1.

    .venv/bin/python benchmarks/waves.py [--customers 12000000] [--waves 10] [--work DIR]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261126
CAMPAIGN = "spring_menu"
SETTINGS = """[campaign_lab]
lake_dir = lake
runs_dir = runs
contracts_dir = {contracts}
pipelines_dir = {pipelines}
seed = {seed}
kernel_name = python3
holdout_share = 0.1
chain_opened_at = 2019-01-01
n_customers = 1000
cell_timeout = 3600
"""


def hwm_gb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def prepare(work: Path, n: int) -> None:
    "A lake with the chain's customers, segments, the campaign's variants and arms (written directly: not timed); the truth kept outside."
    import polars as pl
    from campaign_lab.lake import write_table
    from campaign_lab.segments import assign_segments, features, fit_segmenter, profile
    from campaign_lab.synth import generate_chain
    from campaign_lab.variants import build_catalogue, eligible_arms, load_spec
    (work / "lake").mkdir(parents=True); (work / "runs").mkdir()
    (work / "settings.ini").write_text(SETTINGS.format(contracts=ROOT / "data_contracts", pipelines=ROOT / "nbs" / "pipelines", seed=SEED))
    chain = generate_chain(n, seed=SEED)
    lake = work / "lake"
    write_table(lake, "customers", chain.customers)
    chain.truth.write_parquet(work / "truth.parquet")     # the world's, not the lake's
    as_of = dt.date(2026, 11, 1)
    feats = features(chain.transactions.lazy(), chain.customers.lazy(), as_of=as_of)
    seg = fit_segmenter(feats.sample(min(n, 200_000), seed=1), k=8, seed=SEED, as_of=as_of)
    labels = assign_segments(seg, feats)
    write_table(lake, "segments", feats.select("customer_id").with_columns(segmenter_version=pl.lit(seg.version), segment=labels,
                                                                          assigned_at=pl.lit(dt.datetime(2026, 11, 1), pl.Datetime("us"))))
    cat = build_catalogue(load_spec(ROOT / "campaigns" / "spring.yaml"))
    write_table(lake, "variants", cat.variants)
    write_table(lake, "arms", eligible_arms(cat, profile(feats, labels)))


def step(name: str, work: Path, wave: int) -> dict:
    "One timed step in this process: the wave's assignment, or its feedback (the synthetic answers drawn first, not timed)."
    import polars as pl
    from campaign_lab.context import open_run
    from campaign_lab import waves
    os.environ["CAMPAIGN_LAB_CLOCK"] = (dt.datetime(2026, 11, 2, 9) + dt.timedelta(days=7 * wave)).isoformat()
    out: dict = {}
    if name == "wave":
        t0 = time.perf_counter()
        ctx = open_run(str(work), "", "wave")
        eng = waves.open_engine("polars", ctx.settings)
        pol = ctx.policy("thompson_beta", reward="conversion", floor=0.0)
        w = ctx.publish_step(lambda: waves.assign_wave(eng, ctx, campaign_id=CAMPAIGN, wave=wave, policy=pol, holdout=0.1, seed=SEED))
        out["rows"] = w.rows.height
    else:
        from campaign_lab.synth import respond
        ctx = open_run(str(work), "", "feedback")
        batch = waves.wave_rows(ctx, campaign_id=CAMPAIGN, wave=wave)
        events = respond(batch.rows, batch.variants, pl.read_parquet(work / "truth.parquet"), seed=SEED + wave)
        del batch
        t0 = time.perf_counter()
        ctx = open_run(str(work), "", "feedback")
        batch = waves.wave_rows(ctx, campaign_id=CAMPAIGN, wave=wave)
        fb = ctx.publish_step(lambda: waves.fold_feedback(waves.open_engine("polars", ctx.settings), ctx, batch, events, reward="conversion"))
        out["events"], out["new"] = events.height, fb.n_new
    out |= {"seconds": round(time.perf_counter() - t0, 2), "peak_gb": round(hwm_gb(), 2)}
    return out


def run_step(name: str, work: Path, wave: int) -> dict:
    r = subprocess.run([sys.executable, __file__, "--step", name, "--work", str(work), "--wave", str(wave)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f"step {name} of wave {wave} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=12_000_000)
    p.add_argument("--waves", type=int, default=10)
    p.add_argument("--work", help="keep the lake here (default: a temporary folder, removed at the end)")
    p.add_argument("--step"); p.add_argument("--wave", type=int)
    a = p.parse_args()
    if a.step:
        print(json.dumps(step(a.step, Path(a.work), a.wave))); return
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench-waves-"))
    try:
        if work.exists() and any(work.iterdir()): raise SystemExit(f"{work}: not empty (the benchmark starts from a fresh lake)")
        t0 = time.perf_counter()
        prepare(work, a.customers)
        print(f"lake prepared in {time.perf_counter() - t0:.0f} s (not timed) at {a.customers:,} customers; campaign {CAMPAIGN}, "
              f"{a.waves} waves, each step in its own process", flush=True)
        print(f"{'wave':>4} {'assign s':>9} {'peak GB':>8} {'feedback s':>11} {'peak GB':>8} {'total s':>8} {'vs wave 1':>9}", flush=True)
        res = []
        for k in range(a.waves):
            w, f = run_step("wave", work, k), run_step("feedback", work, k)
            res.append({"wave": k + 1, "assign": w, "feedback": f})
            total = w["seconds"] + f["seconds"]
            base = res[0]["assign"]["seconds"] + res[0]["feedback"]["seconds"]
            print(f"{k + 1:>4} {w['seconds']:>9.2f} {w['peak_gb']:>8.2f} {f['seconds']:>11.2f} {f['peak_gb']:>8.2f} {total:>8.2f} "
                  f"{total / base:>8.2f}x", flush=True)
        last, first = res[-1], res[0]
        tot = lambda r: r["assign"]["seconds"] + r["feedback"]["seconds"]
        print(f"\nwave {a.waves} against wave 1 (the baseline, same run): {tot(last):.1f} s against {tot(first):.1f} s, "
              f"ratio {tot(last) / tot(first):.2f} (target: the same time); {last['feedback']['events']:,} events a wave")
        print(json.dumps(res))
    finally:
        if not a.work: shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
