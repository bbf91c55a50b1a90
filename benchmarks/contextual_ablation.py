"""What each change to the contextual policy's defaults bought, on the same simulated worlds (sessions 11 and 15).

    .venv/bin/python benchmarks/contextual_ablation.py [N_CUSTOMERS] [SEEDS] [--waves W] [--keys K] [--expected]
                                                     [--audience A --samples S]
                                                     # default 200000 customers, 5 worlds, 3 waves, 1 campaign key
    .venv/bin/python benchmarks/contextual_ablation.py 200000 5 --keys 3 --audience 13000 --samples 4
                                                     # a small campaign: 20 audiences of 13,000, each with its own outcomes

Each world: a synthetic chain segmented as the pipelines do, the spring catalogue (352 variants), three waves to everyone,
a 10% holdout; `simulate.capture_by_wave` scores each wave's allocation against every customer's own best variant. Every
configuration runs under the same campaign key, so all see the same holdout, outcome and posterior-noise draws (common
random numbers: the differences are less noisy than the spread). The configurations, each beside the one before it:

- session 10's defaults: a fixed ridge prior (precision 1), exploration 0.5, epsilon 2%, the offer share in 2 bins;
- the evidence prior (each block's prior fitted to the data, with its hyperprior), exploration 0.35, epsilon 1%, offer share in 2 bins;
- the same with the evidence alone (no hyperprior, prior_weight 0): what the hyperprior is for;
- session 11's defaults: the evidence prior and the offer share in 3 bins, the model fitted to the sums as sent (balance 0);
- the same fitted to balanced sums: no (cell, variant) counts for more than 3 even shares of its cell (balance 3, no floor);
- today's defaults: balanced, but a pair's first 100 sends always count in full (balance_floor 100).

The first four are fitted as sent (balance 0). `--waves 8` runs eight waves instead of three. `--keys 3` runs every
configuration under three campaign keys (each key draws its own holdout, outcomes and posterior noise) and reports, per
world, the mean over the keys. `--expected` credits every send with its expected reward instead of a drawn outcome: no
noise, so what separates a configuration from the per-customer best is its model's bias (and exploration).
`--audience 13000` emails a random 13,000 of each world's customers instead of all of them (about 11,700 emails a wave),
and `--samples 4` draws four such audiences per world, each with its own outcome draws (the world's seed plus 1000 per
sample): at this size one draw of the outcomes moves a wave by ten points, so the runs' standard error is printed beside
their spread.
"""
from __future__ import annotations

import datetime as dt
import sys
import time

import polars as pl

from campaign_lab.contextual import ContextualThompson
from campaign_lab.segments import assign_segments, features, fit_segmenter
from campaign_lab.settings import find_root
from campaign_lab.simulate import capture_by_wave
from campaign_lab.synth import generate_chain
from campaign_lab.variants import build_catalogue, load_spec

def option(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default
WAVES, KEYS, EXPECTED = option("--waves", 3), option("--keys", 1), "--expected" in sys.argv
AUDIENCE, SAMPLES = option("--audience", 0), option("--samples", 1)
argv = [a for i, a in enumerate(sys.argv) if not a.startswith("--") and (i == 0 or sys.argv[i - 1] not in ("--waves", "--keys", "--audience", "--samples"))]
N = int(argv[1]) if len(argv) > 1 else 200_000
SEEDS = list(range(5, 5 + (int(argv[2]) if len(argv) > 2 else 5)))
TWO = (("avg_ticket", 4), ("offer_share", 2), ("recency_days", 2))
CONFIGS = {
    "session 10 (fixed prior, offer share 2 bins)": ContextualThompson(prior="fixed", exploration=0.5, epsilon=0.02, context=TWO, balance=0),
    "evidence prior, offer share 2 bins": ContextualThompson(context=TWO, balance=0),
    "evidence alone, no hyperprior": ContextualThompson(context=TWO, prior_weight=0.0, balance=0),
    "session 11 (evidence, offer share 3 bins)": ContextualThompson(balance=0),
    "balanced sums, no floor": ContextualThompson(balance_floor=0),
    "defaults (balanced, floor 100 sends)": ContextualThompson(),
}
variants = build_catalogue(load_spec(find_root() / "campaigns" / "spring.yaml")).variants

print(f"revenue per send captured by wave, {WAVES} waves (share of the per-customer best over uniform), {N:,} customers, seeds {SEEDS}, "
      f"{KEYS} campaign key(s){', expected rewards (no outcome noise)' if EXPECTED else ''}"
      f"{f', {SAMPLES} random audience(s) of {AUDIENCE:,} per world' if AUDIENCE else ''}")
runs = []
for s in SEEDS:
    t0 = time.perf_counter()
    chain = generate_chain(N, seed=s)
    as_of = dt.date(2026, 11, 1)
    f = features(chain.transactions, chain.customers, as_of=as_of)
    f = f.with_columns(segment=pl.Series(assign_segments(fit_segmenter(f, seed=s, as_of=as_of), f)).cast(pl.Int16))
    whole = chain.truth.join(f.select("customer_id", "segment"), on="customer_id")
    for a in range(SAMPLES if AUDIENCE else 1):
        keep = f["customer_id"].sample(AUDIENCE, seed=100 * s + a).implode() if AUDIENCE else f["customer_id"].implode()
        truth, aud = whole.filter(pl.col("customer_id").is_in(keep)), f.filter(pl.col("customer_id").is_in(keep))
        for name, pol in CONFIGS.items():   # the same keys for all: every configuration sees the same outcome and holdout draws
            keyed = pl.concat([capture_by_wave(truth, aud, variants, {key: pol}, waves=WAVES, seed=s + 1000 * a, expected=EXPECTED)
                               for key in ["contextual"] + [f"contextual {k}" for k in range(1, KEYS)]])
            runs.append(keyed.group_by("wave").agg(pl.col("captured").mean()).with_columns(policy=pl.lit(name), seed=pl.lit(f"{s}-{a}")))
    print(f"   seed {s}: {time.perf_counter() - t0:.0f} s", flush=True)
table = (pl.concat(runs).group_by("policy", "wave").agg(mean=pl.col("captured").mean(), sd=pl.col("captured").std().fill_null(0.0), n=pl.len()))
for name in CONFIGS:
    g = table.filter(policy=name).sort("wave")
    print(f"   {name:<46}" + "".join(f"  wave {w}: {m:6.1%} ± {sd:4.1%}" for w, m, sd in g.select("wave", "mean", "sd").iter_rows())
          + (f"  (third wave's standard error over {g['n'][0]} runs: {g['sd'][min(2, g.height - 1)] / g['n'][0] ** 0.5:.1%})" if AUDIENCE else ""))
