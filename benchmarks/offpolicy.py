"""Champion and challenger against the truth: are the wave report's off-policy estimates honest?

Before a wave is sent, its report weighs candidate policies on the earlier waves' logged sends (`waves.champion_challenger`).
A candidate that learned from the very sends it is weighed on is credited for the noise it chased, so the report
cross-fits: each fold of customers is weighed with what the candidates learned without its sends. This script measures
both against the synthetic chain's truth, on a demo project: one it makes in a scratch folder (`campaign-lab-world demo`,
both campaigns, contextual on revenue, `--waves` waves at `--customers`), or an existing one (`--project`, e.g. after `make demo`):

- it draws the campaign's next wave from the lake as it is (not published), with the campaign's contextual policy;
- it weighs the wave's own policy and the per-segment baseline on the logged sends of that wave's customers: in-sample
  (`folds=1`: learned from every send) and cross-fitted (2 and 5 folds), each by IPS and doubly robust (`estimator=`:
  the reward model each fold's held-out statistics give), every send alike or each wave's sends weighted adaptively
  (`weighting=`), each with its 95% interval;
- beside each estimate it prints the truth: the expected revenue per send (conversion probability times what the
  customer pays, from the world's `customer_truth`) of the very allocation weighed, on the same logged customers;
- and the paired difference the report's verdict rests on (baseline minus the wave's own), beside the true one.

An honest estimate's interval holds the truth. Production code never reads the truth; this script may.

    .venv/bin/python benchmarks/offpolicy.py [--customers 200000] [--waves 2] [--work DIR] [--campaign spring_menu]
    .venv/bin/python benchmarks/offpolicy.py --project .      # a demo made before (`make demo`): its lake and world
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from campaign_lab import bandit, waves
from campaign_lab.contextual import ContextualThompson, allocation as context_allocation
from campaign_lab.lake import read_table, table_versions
from campaign_lab.records import CLOCK_ENV
from campaign_lab.synth import response_probabilities
from weekly import make_demo   # benchmarks/weekly.py: the demo in a scratch project


PAIRED = "baseline - the wave's (paired)"


class LakeReader:
    "The lake's latest tables, as the wave functions read them."
    def __init__(self, lake: Path): self.lake = lake
    def has(self, table: str) -> bool: return bool(table_versions(self.lake, table))
    def version(self, table: str) -> int | None: return vs[-1].version if (vs := table_versions(self.lake, table)) else None
    def read(self, table: str, *, validate: bool = True, lazy: bool = False): return read_table(self.lake, table, lazy=lazy)


def truth_matrix(truth: pl.DataFrame, variants: pl.DataFrame, reward: str) -> np.ndarray:
    "(customers, variants): each pair's expected reward per send, from the world's truth."
    n, out = truth.height, np.empty((truth.height, variants.height))
    for j, v in enumerate(variants.iter_rows(named=True)):
        p = response_probabilities(truth, [v["tonality"]] * n, [v["offer_type"]] * n, [v["offer_value"]] * n)
        out[:, j] = (p["p_conversion"] * (p["revenue_if_converted"] if reward == "revenue" else 1.0)).to_numpy()
    return out


def allocation_matrix(w: waves.Wave, logged: pl.DataFrame, policy, variants: list[str]) -> np.ndarray:
    "(logged sends, variants): the candidate's probability of every variant for each logged send's customer, as `candidate_probabilities` gives the logged one."
    c, col = w.context, {v: j for j, v in enumerate(variants)}
    where = logged.select("customer_id").join(w.rows.select("customer_id", "segment").with_columns(cell=pl.Series(c.cell)),
                                              on="customer_id", how="left", maintain_order="left")
    seg_alloc = bandit.allocation(w.state, waves.feedback_policy(policy.reward) if isinstance(policy, ContextualThompson) else policy)
    per_segment = np.zeros((int(seg_alloc["segment"].max()) + 1, len(variants)))
    per_segment[seg_alloc["segment"].to_numpy(), [col[v] for v in seg_alloc["variant_id"].to_list()]] = seg_alloc["p"].to_numpy()
    out = per_segment[where["segment"].to_numpy()]
    if isinstance(policy, ContextualThompson):
        probs = c.probs if policy == c.policy else context_allocation(c.space, c.stats, policy, seed=c.key[0], campaign_id=c.key[1],
                                                                      wave=c.key[2], eligible=c.eligible)
        cell = where["cell"].to_numpy()
        out[cell >= 0] = probs[cell[cell >= 0]][:, [c.space.variants.index(v) for v in variants]]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="an existing demo project (its lake/ and world/); default: make one")
    ap.add_argument("--customers", type=int, default=200_000, help="the scratch demo's customers")
    ap.add_argument("--waves", type=int, default=2, help="the scratch demo's waves: the next one is drawn and weighed")
    ap.add_argument("--work", type=Path, help="the scratch project (kept); default: a temporary folder, removed at the end")
    ap.add_argument("--campaign", default="spring_menu")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--holdout", type=float, default=0.1)
    a = ap.parse_args(argv)
    if a.project: return measure(a)
    a.project = a.work or Path(tempfile.mkdtemp(prefix="bench-offpolicy-"))
    try:
        wall = make_demo(a.project, a.customers, a.waves, policy="contextual_thompson", reward="revenue")
        print(f"demo: {a.customers:,} customers, {a.waves} wave(s) of both campaigns, contextual on revenue, in {wall:.0f} s ({a.project})")
        return measure(a)
    finally:
        if not a.work: shutil.rmtree(a.project, ignore_errors=True)


def measure(a) -> int:
    "Draw the campaign's next wave and weigh its candidates, in-sample and cross-fitted, beside the truth."
    reader = LakeReader(a.project / "lake")
    known = waves.context_space(reader, a.campaign)
    if known is None: sys.exit(f"{a.project / 'lake'}: campaign '{a.campaign}' never ran contextual_thompson (run `make demo` first)")
    space, policy = known
    own = reader.read("assignments").filter(campaign_id=a.campaign)
    nxt = int(own["wave"].max()) + 1
    os.environ[CLOCK_ENV] = (own["assigned_at"].max() + dt.timedelta(days=14)).isoformat()   # every earlier window closed
    t0 = time.perf_counter()
    w = waves.assign_wave(waves.PolarsEngine(), reader, campaign_id=a.campaign, wave=nxt, policy=policy, holdout=a.holdout, seed=a.seed)
    print(f"{a.campaign} wave {nxt} drawn (not published) in {time.perf_counter() - t0:.1f} s: {w.rows.height:,} customers, "
          f"policy {policy.name} on {policy.reward}")
    events = reader.read("events", lazy=True)
    rewards = waves.reward_per_send(events, a.campaign, reward=policy.reward)
    judged = own.filter(pl.col("wave") < nxt)
    cells = reader.read("context_cells").filter(campaign_id=a.campaign)
    logged = (judged.filter(arm="treatment").join(rewards, on=["wave", "customer_id"])
              .join(w.rows.select("customer_id"), on="customer_id", how="semi").sort("wave", "customer_id"))
    candidates = {f"{policy.name} (the wave's)": policy, "per-segment thompson (baseline)": waves.feedback_policy(policy.reward)}
    catalogue = (read_table(a.project / "lake", "variants").filter(pl.col("variant_id").is_in(list(space.variants)))
                 .unique("variant_id").sort("variant_id"))
    names = catalogue["variant_id"].to_list()
    customers = logged.select("customer_id").unique(maintain_order=True)
    truth = customers.join(pl.read_parquet(a.project / "world" / "customer_truth.parquet"), on="customer_id", how="left", maintain_order="left")
    if truth["behaviour_type"].null_count(): sys.exit("the world's truth lacks some logged customers: is --project the demo that wrote this lake?")
    t0 = time.perf_counter()
    mu = truth_matrix(truth, catalogue, policy.reward)[customers.with_row_index("i").join(logged.select("customer_id"), on="customer_id",
                                                                                             how="right", maintain_order="right")["i"].to_numpy()]
    print(f"truth of {customers.height:,} customers x {len(names)} variants in {time.perf_counter() - t0:.1f} s; "
          f"{logged.height:,} logged sends of waves {sorted(set(logged['wave'].to_list()))} to this wave's customers")
    chosen = np.array([names.index(v) for v in logged["variant_id"].to_list()])
    print(f"logged mean reward per send {logged['reward'].mean():.3f}; the truth of the logged sends {mu[np.arange(len(chosen)), chosen].mean():.3f}; "
          f"uniform {mu.mean(1).mean():.3f}; each customer's best variant {mu.max(1).mean():.3f}\n")
    print(f"{'candidate':34s} {'weighed':18s} {'estimate':>9s} {'95% interval':>18s} {'ESS':>6s} {'truth':>7s}  holds the truth")
    for folds in (1, 2, 5):
        fold = (np.zeros(logged.height, dtype=int) if folds == 1 else
                waves.crossfit_folds(logged["customer_id"].to_numpy(), seed=a.seed, campaign_id=a.campaign, wave=nxt, folds=folds))
        held = [w] if folds == 1 else [waves.without_sends(w, logged.filter(pl.Series(fold == k)), events, reward=policy.reward, cells=cells)
                                       for k in range(folds)]
        qs = []   # each candidate's allocation for every logged send's customer
        for pol in candidates.values():
            q = np.zeros((logged.height, len(names)))
            for k, wk in enumerate(held):
                m = fold == k
                q[m] = allocation_matrix(wk, logged.filter(pl.Series(m)), pol, names)
            check = waves.candidate_probabilities(held[0], logged.filter(pl.Series(fold == 0)), pol)   # the matrix is the library's allocation
            assert np.allclose(q[fold == 0][np.arange((fold == 0).sum()), chosen[fold == 0]], check), "allocation_matrix disagrees with candidate_probabilities"
            qs.append(q)
        for estimator, weighting in ((e, g) for g in ("send", "wave") for e in ("ips", "dr")):
            t0 = time.perf_counter()
            cc = waves.champion_challenger(w, judged, rewards, candidates, holdout=a.holdout, events=events, seed=a.seed, folds=folds,
                                           estimator=estimator, weighting=weighting, cells=cells)
            took = time.perf_counter() - t0
            label = f"{'in-sample' if folds == 1 else f'{folds}-fold'} {estimator.upper()} {weighting}"
            if weighting == "wave":   # the truth of the same weighted mean over the logged customers: the wave weights count them
                h = waves.wave_weights(logged["wave"].to_numpy(), *(q[np.arange(len(chosen)), chosen] * (1 - a.holdout) / logged["propensity"].to_numpy() for q in qs))
                trues = [float((h * (q * mu).sum(1)).sum() / h.sum()) for q in qs]
            else: trues = [float((q * mu).sum(1).mean()) for q in qs]
            for r, true in zip(cc.iter_rows(named=True), trues):
                print(f"{r['policy']:34s} {label:18s} {r['value']:9.3f} [{r['low']:7.3f}, {r['high']:7.3f}] {r['ess']:6.0f} {true:7.3f}  "
                      f"{'yes' if r['low'] <= true <= r['high'] else 'NO'}")
            r, d = cc.row(1, named=True), trues[1] - trues[0]   # what the report's verdict rests on: the paired difference
            print(f"{PAIRED:34s} {label:18s} {r['difference']:9.3f} [{r['difference_low']:7.3f}, {r['difference_high']:7.3f}] "
                  f"{'':6s} {d:7.3f}  {'yes' if r['difference_low'] <= d <= r['difference_high'] else 'NO'}; weighed in {took:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
