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


def test_the_doubly_robust_estimate_is_unbiased_under_a_wrong_model_and_tighter_under_a_good_one():
    """`waves.policy_estimate` on logged sends drawn with known propensities (10% holdout): over 300 replications, the doubly
    robust estimate of a deterministic target centres on its true value with a wrong reward model (a constant) as with the true
    one, its 95% interval holds the truth about 95% of the time, and the true model makes it vary less than IPS."""
    from campaign_lab.waves import policy_estimate
    rng = np.random.default_rng(11)
    rate = rng.uniform(0.02, 0.2, (4, 3)) * rng.uniform(5, 30, (4, 3))   # expected reward of (context, variant)
    logging = rng.dirichlet(np.ones(3) * 2, 4)                               # the logging policy's propensities, given treatment
    best = rate.argmax(1)
    truth = rate[np.arange(4), best].mean()                                    # contexts equally likely
    out = {k: [] for k in ("ips", "wrong", "true")}
    held = []
    for _ in range(300):
        x = rng.integers(0, 4, 4000)
        a = (rng.random(4000)[:, None] > np.cumsum(logging[x], 1)).sum(1)
        r = rng.exponential(rate[x, a])                                        # heavy-ish tails, the right mean
        p, q = 0.9 * logging[x, a], (a == best[x]).astype(float)
        out["ips"].append(policy_estimate(p, q, r, holdout=0.1)["value"])
        wrong = policy_estimate(p, q, r, holdout=0.1, direct=np.full(4000, 5.0), fitted=np.full(4000, 5.0))
        out["wrong"].append(wrong["value"])
        true = policy_estimate(p, q, r, holdout=0.1, direct=rate[x, best[x]], fitted=rate[x, a])
        out["true"].append(true["value"]); held.append(true["low"] <= truth <= true["high"])
    for k, v in out.items():
        assert abs(np.mean(v) - truth) < 4 * np.std(v) / np.sqrt(len(v)), (k, np.mean(v), truth)
    assert np.std(out["true"]) < 0.8 * np.std(out["ips"]), (np.std(out["true"]), np.std(out["ips"]))
    assert 0.9 < np.mean(held) < 0.99, np.mean(held)


def test_adaptive_weights_keep_the_interval_honest_where_a_later_wave_sent_the_target_at_its_floor():
    """Two waves of logged sends (10% holdout): the first even over 30 variants, the second learned and sending each context's
    truly best variant only at its exploration floor (1% over 30, about 3 of its 10,000 sends). Per send, IPS leans on a handful
    of weights near 3,000: over 300 replications its interval held the truth 73% of the time. With each wave weighted by
    1 / sqrt(its mean square weight) (`wave_weights`) the estimate varied a quarter as much (sd 0.50 against 1.98) and its
    interval held the truth 91% of the time. The weights come from which variants were sent, so they can lean the estimate:
    -0.9% here; +3.1% (9 standard errors) with 2,000 sends a wave, where the second wave sends the target less than once."""
    from campaign_lab.waves import policy_estimate, wave_weights
    rng = np.random.default_rng(12)
    K, V, n = 4, 30, 20_000
    rate = rng.uniform(0.02, 0.2, (K, V)) * rng.uniform(5, 30, (K, V))   # expected reward of (context, variant)
    best = rate.argmax(1)
    truth = rate[np.arange(K), best].mean()
    later = np.full((K, V), 0.01 / V); later[np.arange(K), (best + 1) % V] += 0.99
    loggers = np.stack([np.full((K, V), 1 / V), later])
    out = {"send": [], "wave": []}; held = {"send": [], "wave": []}
    for _ in range(300):
        x, k = rng.integers(0, K, n), np.repeat([0, 1], n // 2)
        P = loggers[k, x]
        a = (rng.random(n)[:, None] > np.cumsum(P, 1)).sum(1)
        r = rng.exponential(rate[x, a])
        p, q = 0.9 * P[np.arange(n), a], (a == best[x]).astype(float)
        for name, h in (("send", None), ("wave", wave_weights(k, q * 0.9 / p))):
            e = policy_estimate(p, q, r, holdout=0.1, weights=h)
            out[name].append(e["value"]); held[name].append(e["low"] <= truth <= e["high"])
    assert abs(np.mean(out["send"]) - truth) < 4 * np.std(out["send"]) / np.sqrt(300)     # per send: unbiased ...
    assert np.mean(held["send"]) < 0.8, np.mean(held["send"])                             # ... but its interval too narrow
    assert np.std(out["wave"]) < np.std(out["send"]) / 3, (np.std(out["wave"]), np.std(out["send"]))
    assert 0.87 < np.mean(held["wave"]) < 0.99 and np.mean(held["wave"]) > np.mean(held["send"]) + 0.1, np.mean(held["wave"])
    assert abs(np.mean(out["wave"]) / truth - 1) < 0.05, np.mean(out["wave"]) / truth
