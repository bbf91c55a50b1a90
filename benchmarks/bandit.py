"""Bandit core at 12M customers, 8 segments x 200 variants, against baselines measured in the same run.

Prints medians over repeats:
- assign: campaign_lab.bandit.assign (allocation table included) for 12M customers, beside its floor
  (drawing 12M keyed uniforms and gathering 12M variant ids), a per-customer numpy Thompson loop and
  mabwiser's Thompson sampling `predict` (if installed: `pip install mabwiser`), both at 100k
  customers and extrapolated to 12M;
- update: campaign_lab.bandit.update from 12M events (dedup included), beside a pandas groupby of
  the same counts and mabwiser's `partial_fit`;
- allocation quality: total variation between the realised allocation of 12M customers and the exact
  Thompson probabilities, beside the distance an exact multinomial sample of the same size gets, and
  the error of a 10k-draw Monte Carlo estimate of the probabilities;
- peak memory per customer during assign (VmHWM growth above input and output).

    .venv/bin/python benchmarks/bandit.py [--customers 12000000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import numpy as np
import polars as pl

from campaign_lab.bandit import ThompsonBeta, allocation, assign, init_state, prob_best_beta, update
from campaign_lab.draws import keyed_uniform, stream_key


def hwm_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
    return 0


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")   # resets VmHWM to the current RSS
    except OSError: pass


def timed(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def make_state(rng, segments=8, variants=200):
    "A state after several waves: every arm has thousands of sends, true rates spread from 1% to 6%."
    arms = pl.DataFrame({"campaign_id": "bench", "segment": np.repeat(np.arange(segments), variants).astype(np.int16),
                         "variant_id": [f"v{i:03d}" for i in range(variants)] * segments})
    st = init_state(arms, ThompsonBeta(), at=dt.datetime(2026, 11, 1))
    n = rng.integers(2_000, 20_000, arms.height)
    rate = rng.uniform(0.01, 0.06, arms.height)
    s = rng.binomial(n, rate)
    table = st.table.with_columns(alpha=pl.Series(1.0 + s), beta=pl.Series(1.0 + n - s), n=pl.Series(n), successes=pl.Series(s))
    return st._replace(table=table), rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    N = a.customers
    rng = np.random.default_rng(0)
    state, true_rate = make_state(rng)
    policy = ThompsonBeta()
    audience = pl.DataFrame({"customer_id": np.arange(1, N + 1, dtype=np.int64),
                             "segment": rng.integers(0, 8, N).astype(np.int16)})
    rows = []

    # --- assign -------------------------------------------------------------------------------
    before = hwm_bytes()
    reset_hwm(); base_rss = hwm_bytes()
    t_assign, out = timed(lambda: assign(state, audience, policy=policy, holdout=0.1, seed=1, wave=3,
                                         at=dt.datetime(2026, 11, 2)), a.repeats)
    peak = hwm_bytes()
    out_bytes = out.estimated_size()
    rows.append(("assign (allocation + 12M draws)", N, t_assign, None))
    t_alloc, alloc = timed(lambda: allocation(state, policy), a.repeats)
    rows.append(("  of which allocation table (8 x 200, exact)", 1600, t_alloc, None))
    ids = audience["customer_id"].to_numpy()
    vids = pl.Series([f"v{i:03d}" for i in range(200)])
    def floor():
        u = keyed_uniform(1, stream_key("bench", 3, "variant"), ids)
        return vids.gather((u * 200).astype(np.int64))
    t_floor, _ = timed(floor, a.repeats)
    rows.append(("floor: 12M keyed uniforms + gather 12M ids", N, t_floor, None))

    # per-customer numpy loop (one Thompson draw per customer), at 100k, extrapolated
    n_small = 100_000
    al, be = state.table["alpha"].to_numpy().reshape(8, 200), state.table["beta"].to_numpy().reshape(8, 200)
    seg_small = audience["segment"].to_numpy()[:n_small]
    def loop():
        g = np.random.default_rng(1)
        return [int(np.argmax(g.beta(al[s], be[s]))) for s in seg_small]
    t_loop, _ = timed(loop, 1)
    rows.append(("per-customer numpy loop (100k, extrapolated)", N, t_loop * N / n_small, t_loop))
    try:
        from mabwiser.mab import MAB, LearningPolicy
        arms_ids = list(range(200))
        mab = MAB(arms=arms_ids, learning_policy=LearningPolicy.ThompsonSampling(), seed=1)
        mab.fit(decisions=np.repeat(arms_ids, 50), rewards=rng.binomial(1, 0.03, 200 * 50))
        t_mab, _ = timed(lambda: mab.predict(np.zeros((n_small, 1))), 1)   # one Thompson draw per row
        rows.append(("mabwiser Thompson predict (100k, one segment, extrapolated)", N, t_mab * N / n_small, t_mab))
    except ImportError:
        rows.append(("mabwiser Thompson predict: not installed (pip install mabwiser)", N, float("nan"), None))

    # --- allocation quality ----------------------------------------------------------------------
    treated = out.filter(arm="treatment")
    counts = treated.group_by("segment", "variant_id").len()
    exact = alloc.join(counts, on=["segment", "variant_id"], how="left").fill_null(0)
    tv_ours, tv_multi, tv_mc = [], [], []
    for s in range(8):
        e = exact.filter(segment=s).sort("variant_id")
        p, c = e["p"].to_numpy(), e["len"].to_numpy()
        tv_ours.append(0.5 * np.abs(c / c.sum() - p).sum())
        m = rng.multinomial(c.sum(), p)
        tv_multi.append(0.5 * np.abs(m / m.sum() - p).sum())
        draws = rng.beta(al[s][None, :], be[s][None, :], size=(10_000, 200))
        mc = np.bincount(draws.argmax(axis=1), minlength=200) / 10_000
        tv_mc.append(0.5 * np.abs(mc - p).sum())

    # --- update ----------------------------------------------------------------------------------
    sends = treated.select("campaign_id", "wave", "customer_id", "segment", "variant_id")
    u = keyed_uniform(2, 1, sends["customer_id"].to_numpy())
    conv_rate = pl.Series(true_rate).gather(sends.select(pl.col("segment").cast(pl.Int64) * 200 + pl.col("variant_id").str.slice(1).cast(pl.Int64)).to_series())
    conv = sends.filter(pl.Series(u < conv_rate.to_numpy()))
    n_conv_target = N - sends.height
    extra = sends.head(max(n_conv_target - conv.height, 0))
    events = pl.concat([sends.with_columns(event_type=pl.lit("send"), revenue=pl.lit(0.0)),
                        conv.with_columns(event_type=pl.lit("conversion"), revenue=pl.lit(20.0)),
                        extra.with_columns(event_type=pl.lit("open"), revenue=pl.lit(0.0))]).head(N)
    events = events.with_columns(event_id=pl.format("{}-{}-{}", "customer_id", "wave", "event_type"))
    t_upd, new = timed(lambda: update(state, events, reward="conversion", at=dt.datetime(2026, 11, 3)), a.repeats)
    rows.append((f"update from {events.height / 1e6:.1f}M events (dedup included)", events.height, t_upd, None))
    direct = events.unique("event_id").filter(event_type="send").group_by("segment", "variant_id").len()
    check = new.table.join(state.table.select("segment", "variant_id", n0=pl.col("n")), on=["segment", "variant_id"]).join(
        direct, on=["segment", "variant_id"], how="left").fill_null(0)
    exact_counts = bool((check["n"] - check["n0"] == check["len"]).all())
    pdf = events.to_pandas()
    def pandas_update():
        d = pdf.drop_duplicates("event_id")
        return (d[d.event_type == "send"].groupby(["segment", "variant_id"]).size(),
                d[d.event_type == "conversion"].groupby(["segment", "variant_id"]).size())
    t_pd, _ = timed(pandas_update, 1)
    rows.append(("pandas groupby of the same counts (dedup included)", events.height, t_pd, None))
    try:
        from mabwiser.mab import MAB, LearningPolicy
        mab = MAB(arms=list(range(200)), learning_policy=LearningPolicy.ThompsonSampling(), seed=1)
        mab.fit(decisions=[0], rewards=[0])
        k = 1_000_000
        dec = rng.integers(0, 200, k); rew = rng.binomial(1, 0.03, k)
        t_pf, _ = timed(lambda: mab.partial_fit(decisions=dec, rewards=rew), 1)
        rows.append(("mabwiser partial_fit (1M events, extrapolated)", events.height, t_pf * events.height / k, t_pf))
    except ImportError:
        rows.append(("mabwiser partial_fit: not installed", events.height, float("nan"), None))

    print(f"{'step':<58} {'rows':>12} {'seconds':>9} {'per second':>12} {'vs ours':>8}")
    ours = {"assign": t_assign, "update": t_upd}
    for name, n, secs, measured in rows:
        ref = ours["update"] if ("update" in name or "groupby" in name or "partial_fit" in name) else ours["assign"]
        ratio = "" if secs != secs else f"{secs / ref:7.1f}x"
        note = f"  (measured {measured:.2f} s)" if measured is not None else ""
        print(f"{name:<58} {n:>12,} {secs:>9.3f} {n / secs if secs == secs and secs > 0 else float('nan'):>12,.0f} {ratio:>8}{note}")
    print(f"\nupdate counts exact: {exact_counts}")
    print(f"allocation total variation vs exact Thompson, mean over 8 segments: realised {np.mean(tv_ours):.5f}, "
          f"exact multinomial of the same size {np.mean(tv_multi):.5f}, 10k-draw Monte Carlo estimate {np.mean(tv_mc):.5f}")
    transient = max(peak - base_rss - out_bytes, 0)
    print(f"assign peak memory above input: {(peak - base_rss) / N:.0f} bytes/customer, of which output {out_bytes / N:.0f}; "
          f"transient {transient / N:.0f} bytes/customer (target < 128)")
    print(f"targets: assign < 0.5 s ({t_assign:.3f} s), update < 1.0 s ({t_upd:.3f} s)")


if __name__ == "__main__":
    main()
