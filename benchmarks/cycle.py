"""One full wave of the campaign cycle at 12M customers and two campaigns: time and peak memory per step.

The wave is what a scheduled week does after the lake has been validated: segment_apply (features
from the transaction log as of the run date, the champion segmenter, profiles; segments checked
against their contract and written to the lake), the two demo campaigns' arms, `wave` for both
campaigns in priority order (`waves.assign_wave`: audience, never-reassign check, holdout, Thompson
allocation; assignments checked and written), the synthetic chain's answers (`respond`), and
`waves.fold_feedback` for both campaigns (events checked against their contract with their
references, the bandit states updated; all checked and written). These are the functions the wave
and feedback pipelines call, on an in-memory reader (`waves.Tables`) instead of a run context, in one
process, without papermill's kernel start (`benchmarks/steps.py` measures that fixed cost).

Each step's peak memory is the process's VmHWM during the step (reset before it), which includes
what earlier steps still hold: tables stay in the process until the last step that reads them
(customers and segments until the waves, the truth until feedback; assignments and events to the
end), so the peak is higher than in the pipelines, where each step is its own kernel. The baseline beside each step is the same
step at 1M customers in the same run (the ratio says whether the cost grows linearly), and the IO
floor of reading the transaction log.

    .venv/bin/python benchmarks/cycle.py [--customers 12000000] [--small 1000000]
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
SEED = 20261126


def hwm_gb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
    except OSError: pass


def one_wave(n: int) -> dict:
    import polars as pl
    from campaign_lab.bandit import make_policy
    from campaign_lab.contracts import default_parameters, validate
    from campaign_lab.lake import read_table, write_table
    from campaign_lab.segments import assign_segments, features, fit_segmenter, profile
    from campaign_lab.synth import generate_chain, respond
    from campaign_lab.variants import build_catalogue, eligible_arms, load_spec
    from campaign_lab.waves import PolarsEngine, Tables, assign_wave, fold_feedback, wave_rows

    contracts = ROOT / "data_contracts"
    params = lambda: default_parameters(dt.date(2019, 1, 1))   # "now" taken at each check, as a run does
    lake = Path(tempfile.mkdtemp(prefix="cycle-bench-"))
    t0 = time.perf_counter()
    chain = generate_chain(n, seed=SEED)
    for name, df in (("customers", chain.customers), ("transactions", chain.transactions), ("customer_truth", chain.truth)):
        write_table(lake, name, df)
    orders = chain.transactions.height
    setup_s = time.perf_counter() - t0
    del chain
    as_of = dt.date(2026, 11, 1)
    customers = read_table(lake, "customers")
    seg = fit_segmenter(features(pl.scan_parquet(lake / "transactions" / "v000001.parquet"), customers.lazy(), as_of=as_of).sample(
        min(n, 200_000), seed=1), k=8, seed=SEED, as_of=as_of)
    out: dict = {"customers": n, "orders": orders, "setup_s": round(setup_s, 1), "steps": {}}

    def step(name, fn):
        reset_hwm()
        t = time.perf_counter()
        res = fn()
        out["steps"][name] = {"s": time.perf_counter() - t, "peak_gb": hwm_gb()}
        return res

    def read_floor():
        return pl.read_parquet(lake / "transactions" / "v000001.parquet", columns=["customer_id", "ordered_at", "amount"]).height
    step("io floor: read transaction log", read_floor)

    def segment_apply():
        feats = features(pl.scan_parquet(lake / "transactions" / "v000001.parquet"), customers.lazy(), as_of=as_of)
        labels = assign_segments(seg, feats)
        segments = feats.select("customer_id").with_columns(segmenter_version=pl.lit(seg.version), segment=labels,
                                                             assigned_at=pl.lit(dt.datetime(2026, 11, 2), pl.Datetime("us")))
        prof = profile(feats, labels).with_columns(segmenter_version=pl.lit(seg.version))
        res = validate("segments", segments, contracts, params(), references={"customers": customers})
        assert res.success, res.failures
        write_table(lake, "segments", segments); write_table(lake, "segment_profiles", prof)
        return segments, prof
    segments, prof = step("segment_apply (features, assign, check, write)", segment_apply)

    specs = sorted((load_spec(ROOT / "campaigns" / f) for f in ("spring.yaml", "win_back.yaml")), key=lambda s: s.priority)
    def variants_and_arms():
        cats = [build_catalogue(s) for s in specs]
        return [c.variants for c in cats], [eligible_arms(c, prof) for c in cats]
    variants, arms = step("variants and arms (2 campaigns)", variants_and_arms)
    variants_all = pl.concat(variants)
    pol = make_policy("thompson_beta", reward="conversion")
    # the in-memory lake the wave functions read, exactly as the wave and feedback pipelines read the real one
    mem = Tables({"customers": customers, "segments": segments, "variants": variants_all, "arms": pl.concat(arms)}, contracts)
    engine = PolarsEngine()

    def waves():
        for spec in specs:   # priority order: the first campaign to assign a customer keeps them this wave
            w = assign_wave(engine, mem, campaign_id=spec.campaign_id, wave=0, policy=pol, holdout=0.1, seed=SEED)
            mem.publish(w.tables, append=w.append)
        write_table(lake, "assignments", mem.read("assignments"))
        return mem.read("assignments")
    assignments = step("wave: 2 campaigns assign_wave, check, write", waves)
    del segments, customers   # later steps do not read them (a pipeline's kernel would not hold them either)
    mem.tables.pop("segments"); mem.tables.pop("customers")
    truth = read_table(lake, "customer_truth")

    def feedback():
        batches = {}
        for spec in specs:
            batch = wave_rows(mem, campaign_id=spec.campaign_id, wave=0)
            batches[spec.campaign_id] = (batch, respond(batch.rows, batch.variants, truth, seed=SEED))
        return batches
    batches = step("feedback: synthetic answers", feedback)
    del truth

    def updates():
        for batch, events in batches.values():
            fb = fold_feedback(engine, mem, batch, events, reward="conversion")
            mem.publish(fb.tables, append=fb.append)
        for t in ("events", "bandit_state", "bandit_seen"): write_table(lake, t, mem.read(t))
        return mem.read("events")
    events = step("feedback: fold_feedback (check events, update), check, write", updates)
    out |= {"treated": int((assignments["arm"] == "treatment").sum()), "events": events.height,
            "per_campaign": {c: int(k) for c, k in assignments.group_by("campaign_id").len().iter_rows()},
            "process_peak_gb": hwm_gb()}
    import shutil; shutil.rmtree(lake, ignore_errors=True)
    return out


def measure(n: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True)
    if res.returncode != 0: raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000_000)
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--child", type=int)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_wave(a.child))); return
    small, big = measure(a.small), measure(a.customers)
    print(f"one wave, 2 campaigns: {big['customers']:,} customers ({big['orders']:,} orders; setup {big['setup_s']} s, not timed) "
          f"beside {small['customers']:,} in the same run")
    print(f"{'step':<50} {big['customers'] / 1e6:>5.1f}M s  peak GB | {small['customers'] / 1e6:>4.1f}M s  ratio")
    total = 0.0
    for name, m in big["steps"].items():
        s = small["steps"][name]
        if not name.startswith("io floor"): total += m["s"]
        print(f"{name:<50} {m['s']:>8.2f} {m['peak_gb']:>8.2f} | {s['s']:>7.2f} {m['s'] / max(s['s'], 1e-9):>6.1f}x")
    print(f"{'wave total (io floor excluded)':<50} {total:>8.2f} {big['process_peak_gb']:>8.2f} | target < 60 s, < 12 GB")
    print(f"treated+holdout per campaign: {big['per_campaign']}; events {big['events']:,}")


if __name__ == "__main__":
    main()
