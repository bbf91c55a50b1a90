"Simulation: regret ordering and off-policy estimators against the simulated truth."
import numpy as np
import polars as pl
import pytest

from campaign_lab.bandit import ThompsonBeta, Uniform
from campaign_lab.contextual import ContextualThompson
from campaign_lab.simulate import capture_by_wave, compare_policies, off_policy_value, policy_value, simulate


def world(n_seg=3, n_var=6, seed=0):
    rng = np.random.default_rng(seed)
    rates = pl.DataFrame({"segment": np.repeat(np.arange(n_seg), n_var).astype(np.int16),
                          "variant_id": [f"v{i}" for i in range(n_var)] * n_seg,
                          "rate": rng.uniform(0.01, 0.08, n_seg * n_var)})
    audience = pl.DataFrame({"customer_id": np.arange(1, 15_001), "segment": rng.integers(0, n_seg, 15_000).astype(np.int16)})
    return rates, audience


def test_thompson_beats_uniform_and_finds_the_best():
    rates, audience = world()
    runs = compare_policies({"ts": ThompsonBeta(), "ab": Uniform()}, rates, audience, waves=6, seeds=[1, 2])
    last = runs.filter(wave=5).group_by("policy").agg(pl.col("cumulative_regret").mean(), pl.col("best_share").mean())
    d = {r["policy"]: r for r in last.iter_rows(named=True)}
    assert d["ts"]["cumulative_regret"] < 0.5 * d["ab"]["cumulative_regret"]
    assert d["ts"]["best_share"] > 0.6 and abs(d["ab"]["best_share"] - 1 / 6) < 0.05


def test_off_policy_estimates_recover_the_true_value():
    rates, audience = world(seed=4)
    _, log = simulate(Uniform(), rates, audience, waves=4, seed=3)
    best = rates.sort("rate", descending=True).group_by("segment", maintain_order=True).head(1).with_columns(pi=pl.lit(1.0))
    share = audience.group_by("segment").len().with_columns(share=pl.col("len") / pl.col("len").sum()).select("segment", "share")
    truth = policy_value(rates, best.select("segment", "variant_id", "pi"), share)
    est = off_policy_value(log, best.select("segment", "variant_id", "pi"))
    # standard error of IPS with weights 6 on a 1/6 sample: about sqrt(6 p / n)
    se = np.sqrt(6 * truth / log.height)
    for k in ("ips", "snips", "dr"):
        assert abs(est[k] - truth) < 4 * se, (k, est[k], truth, se)
    # logging the target itself: weights are 1 and every estimator is the plain mean
    same = off_policy_value(log, rates.select("segment", "variant_id").with_columns(pi=pl.lit(1 / 6)))
    assert abs(same["ips"] - log["converted"].mean()) < 1e-12 and same["ess"] == log.height


def test_expected_rewards_are_refused_for_a_policy_that_learns_from_events():
    empty = pl.DataFrame({"customer_id": [1], "segment": [0]})
    with pytest.raises(ValueError, match="expected rewards are for contextual policies; per-segment"):
        capture_by_wave(empty, empty, pl.DataFrame({"variant_id": ["v1"]}), {"ctx": ContextualThompson(), "per-segment": ThompsonBeta()},
                        expected=True)


def test_a_small_campaign_learning_from_a_big_one_starts_ahead():
    """learn_from in simulation: after three waves of the spring catalogue to 20,000 customers, a 28-variant win-back campaign
    to 3,000 of them starts from what spring learned: its first wave already captures part of the per-customer best gain,
    where on its own the first wave is even (0%); the same campaign key, so the same holdout and outcomes."""
    import datetime as dt
    from conftest import REPO
    from campaign_lab.segments import assign_segments, features, fit_segmenter
    from campaign_lab.synth import generate_chain
    from campaign_lab.variants import build_catalogue, load_spec
    chain = generate_chain(20_000, seed=5)
    as_of = dt.date(2026, 11, 1)
    f = features(chain.transactions, chain.customers, as_of=as_of)
    f = f.with_columns(segment=pl.Series(assign_segments(fit_segmenter(f, seed=5, as_of=as_of), f)).cast(pl.Int16))
    truth = chain.truth.join(f.select("customer_id", "segment"), on="customer_id")
    spring, win_back = (build_catalogue(load_spec(REPO / "campaigns" / f"{c}.yaml")).variants for c in ("spring", "win_back"))
    states = {}
    capture_by_wave(truth, f, spring, {"spring": ContextualThompson()}, waves=3, seed=5, states=states)
    space, stats, _ = states["spring"]
    assert stats.n.sum() == pytest.approx(3 * 0.9 * 20_000, rel=0.02) and len(space.variants) == 352
    small = f["customer_id"].sample(3000, seed=1)
    ts, fs = truth.filter(pl.col("customer_id").is_in(small.implode())), f.filter(pl.col("customer_id").is_in(small.implode()))
    alone = capture_by_wave(ts, fs, win_back, {"win_back": ContextualThompson()}, waves=1, seed=5)
    warm = capture_by_wave(ts, fs, win_back, {"win_back": ContextualThompson()}, waves=1, seed=5, learned={"win_back": states["spring"]})
    assert alone["captured"][0] == pytest.approx(0.0, abs=1e-9) and warm["captured"][0] > 0.15, warm
