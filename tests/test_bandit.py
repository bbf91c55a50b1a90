"Bandit core: exactness, determinism, idempotent associative updates, floors, holdout, bad input."
import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import stats

from campaign_lab.bandit import (EpsilonGreedy, ThompsonBeta, ThompsonGaussian, UCB1, Uniform, allocation, assign,
                                 init_state, prob_best_beta, prob_best_normal, summarize, update)
from campaign_lab.contracts import default_parameters, validate
from campaign_lab.draws import keyed_uniform
from conftest import REPO

AT = dt.datetime(2026, 11, 2, 9)


def arms(n_seg=3, n_var=5, campaign="c1"):
    return pl.DataFrame({"campaign_id": campaign, "segment": np.repeat(np.arange(n_seg), n_var).astype(np.int16),
                         "variant_id": [f"v{i}" for i in range(n_var)] * n_seg})


def audience(n=50_000, n_seg=3, seed=0):
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"customer_id": np.arange(1, n + 1), "segment": rng.integers(0, n_seg, n).astype(np.int16)})


def events_for(wave_df, rates, seed=1, reward="conversion"):
    sent = wave_df.filter(arm="treatment")
    u = keyed_uniform(seed, wave_df["wave"][0], sent["customer_id"].to_numpy())
    r = np.array([rates[(s, v)] for s, v in zip(sent["segment"].to_list(), sent["variant_id"].to_list())])
    base = sent.select("campaign_id", "wave", "customer_id", "segment", "variant_id")
    return pl.concat([base.with_columns(event_type=pl.lit("send"), revenue=pl.lit(0.0)),
                      base.filter(pl.Series(u < r)).with_columns(event_type=pl.lit(reward), revenue=pl.lit(15.0 if reward == "conversion" else 0.0))]
                     ).with_columns(event_id=pl.format("{}-{}-{}-{}", "campaign_id", "wave", "customer_id", "event_type"))


def test_prob_best_matches_monte_carlo_and_closed_forms():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(20, 200, 12), rng.uniform(800, 3000, 12)
    p = prob_best_beta(a, b)
    draws = rng.beta(a, b, size=(400_000, 12)).argmax(axis=1)
    mc = np.bincount(draws, minlength=12) / len(draws)
    assert abs(p.sum() - 1) < 1e-12 and np.abs(p - mc).max() < 4 * np.sqrt(0.25 / len(draws))
    # two Betas: P(X2 > X1) in closed form (Evan Miller's sum) for integer parameters
    from scipy.special import betaln
    a1, b1, a2, b2 = 30, 970, 38, 962
    exact = sum(np.exp(betaln(a1 + i, b1 + b2) - np.log(b2 + i) - betaln(1 + i, b2) - betaln(a1, b1)) for i in range(a2))
    assert abs(prob_best_beta([a1, a2], [b1, b2])[1] - exact) < 1e-7
    assert abs(prob_best_normal([0, 0.3], [1, 1])[1] - stats.norm.cdf(0.3 / np.sqrt(2))) < 1e-7


def test_assign_is_exact_deterministic_and_order_free():
    st = init_state(arms(), ThompsonBeta(), at=AT)
    rng = np.random.default_rng(1)
    n = rng.integers(100, 3000, st.table.height); s = rng.binomial(n, 0.03)
    st = st._replace(table=st.table.with_columns(alpha=pl.Series(1.0 + s), beta=pl.Series(1.0 + n - s)))
    aud = audience(300_000)
    a1 = assign(st, aud, policy=ThompsonBeta(), holdout=0.2, seed=5, wave=2, at=AT)
    a2 = assign(st, aud.reverse(), policy=ThompsonBeta(), holdout=0.2, seed=5, wave=2, at=AT)
    assert a1.sort("customer_id").equals(a2.sort("customer_id"))
    a3 = assign(st, aud, policy=ThompsonBeta(), holdout=0.2, seed=5, wave=3, at=AT)
    assert not a1["variant_id"].equals(a3["variant_id"])
    # realised shares match the allocation within multinomial noise, per segment
    alloc = allocation(st, ThompsonBeta())
    got = a1.filter(arm="treatment").group_by("segment", "variant_id").len()
    j = alloc.join(got, on=["segment", "variant_id"], how="left").fill_null(0)
    for seg, g in j.group_by("segment"):
        n_seg = g["len"].sum()
        chi2 = (((g["len"] - n_seg * g["p"]) ** 2) / (n_seg * g["p"]).clip(1e-12)).filter(g["p"] > 1e-6).sum()
        assert stats.chi2.sf(chi2, (g["p"] > 1e-6).sum() - 1) > 1e-4, (seg, chi2)
    # propensities are what the allocation says
    t = a1.filter(arm="treatment").join(alloc, on=["campaign_id", "segment", "variant_id"])
    assert np.allclose(t["propensity"], 0.8 * t["p"])
    assert (a1.filter(arm="holdout")["propensity"] == 0.2).all()
    # holdout share within binomial noise in every segment
    h = a1.group_by("segment").agg(share=(pl.col("arm") == "holdout").mean(), n=pl.len())
    assert ((h["share"] - 0.2).abs() < 4 * np.sqrt(0.16 / h["n"])).all()


def test_assignments_pass_their_contract():
    st = init_state(arms(), ThompsonBeta(), at=AT)
    a = assign(st, audience(2000), policy=ThompsonBeta(), holdout=0.1, seed=1, wave=0, at=AT)
    variants = pl.DataFrame({"variant_id": [f"v{i}" for i in range(5)]})
    customers = audience(2000).select("customer_id")
    r = validate("assignments", a, REPO / "data_contracts", default_parameters(dt.date(2019, 1, 1)),
                 references={"variants": variants, "customers": customers})
    assert r.success, r._repr_markdown_()


def test_update_exact_idempotent_associative():
    st = init_state(arms(), ThompsonBeta(), at=AT)
    rates = {(s, f"v{i}"): 0.01 * (i + 1) for s in range(3) for i in range(5)}
    w = assign(st, audience(), policy=ThompsonBeta(), holdout=0.1, seed=2, wave=0, at=AT)
    ev = events_for(w, rates)
    # duplicates inside the batch and a repeated click on one send count once
    dup = pl.concat([ev, ev.head(100), ev.filter(event_type="conversion").head(5).with_columns(event_id=pl.col("event_id") + "-again")])
    one = update(st, dup, reward="conversion", at=AT)
    direct = w.filter(arm="treatment").group_by("segment", "variant_id").len()
    conv = ev.filter(event_type="conversion").group_by("segment", "variant_id").agg(c=pl.len())
    chk = one.table.join(direct, on=["segment", "variant_id"], how="left").join(conv, on=["segment", "variant_id"], how="left").fill_null(0)
    assert (chk["n"] == chk["len"]).all() and (chk["successes"] == chk["c"]).all()
    assert np.allclose(chk["alpha"], 1 + chk["c"]) and np.allclose(chk["beta"], 1 + chk["len"] - chk["c"])
    again = update(one, ev, reward="conversion", at=AT)
    assert again.table.drop("version").equals(one.table.drop("version"))
    k = ev.height // 3
    split = update(update(st, ev[:k], reward="conversion", at=AT), ev[k:], reward="conversion", at=AT)
    assert split.table.drop("version").equals(one.table.drop("version"))


def test_discount_and_revenue():
    st = init_state(arms(1, 2), ThompsonBeta(), at=AT)
    w = assign(st, audience(20_000, 1), policy=ThompsonBeta(), holdout=0.0, seed=2, wave=0, at=AT)
    ev = events_for(w, {(0, "v0"): 0.1, (0, "v1"): 0.1})
    s1 = update(st, ev, reward="conversion", at=AT)
    w2 = w.with_columns(wave=pl.lit(1, pl.Int32))
    s2 = update(s1, events_for(w2, {(0, "v0"): 0.1, (0, "v1"): 0.1}), reward="conversion", discount=0.5, at=AT)
    eff = (s2.table["alpha"] + s2.table["beta"] - 2).to_numpy()
    assert np.allclose(eff, 0.5 * (s1.table["alpha"] + s1.table["beta"] - 2).to_numpy() + w2.filter(arm="treatment").group_by("variant_id").len().sort("variant_id")["len"].to_numpy())
    assert (s2.table["n"] == 2 * s1.table["n"]).all()
    rv = update(st, ev, reward="revenue", at=AT)
    assert np.allclose(rv.table["reward_sum"], rv.table["successes"] * 15.0)
    assert allocation(rv, ThompsonGaussian())["p"].sum() == pytest.approx(1.0)


def test_policies_and_floor():
    st = init_state(arms(1, 4), ThompsonBeta(), at=AT)
    t = st.table.with_columns(alpha=pl.Series([10.0, 30.0, 20.0, 5.0]), beta=pl.Series([990.0, 970.0, 980.0, 995.0]))
    st = st._replace(table=t)
    assert allocation(st, Uniform())["p"].to_list() == [0.25] * 4
    assert allocation(st, EpsilonGreedy(epsilon=0.2))["p"].to_list() == pytest.approx([0.05, 0.85, 0.05, 0.05])
    assert allocation(st, UCB1())["p"].to_list() == [0.0, 1.0, 0.0, 0.0]
    p = allocation(st, ThompsonBeta(floor=0.05))["p"].to_numpy()
    base = allocation(st, ThompsonBeta())["p"].to_numpy()
    assert np.allclose(p, 0.8 * base + 0.05) and p.min() >= 0.05
    with pytest.raises(ValueError, match="floor' = 0.3 is too large for 4 variants"): allocation(st, ThompsonBeta(floor=0.3))
    untried = init_state(arms(1, 3), UCB1(), at=AT)
    assert allocation(untried, UCB1())["p"].to_list() == pytest.approx([1 / 3] * 3)


def test_bad_input_names_the_column():
    st = init_state(arms(), ThompsonBeta(), at=AT)
    w = assign(st, audience(1000), policy=ThompsonBeta(), holdout=0.1, seed=2, wave=0, at=AT)
    ev = events_for(w, {(s, f"v{i}"): 0.5 for s in range(3) for i in range(5)})
    cases = [(ev.drop("revenue"), "missing column(s) revenue"),
             (ev.with_columns(event_id=pl.lit(None, pl.String)), "column 'event_id' has"),
             (ev.with_columns(segment=pl.lit(9, pl.Int16)), "not arms of the state (first: c1, 9,"),
             (ev.with_columns(event_type=pl.lit("bounce")), "column 'event_type' has unknown value(s) ['bounce']"),
             (ev.with_columns(revenue=pl.lit(-2.0)), "column 'revenue' has"),
             (ev.with_columns(revenue=pl.lit(3.0)), "positive on")]
    for bad, words in cases:
        with pytest.raises(ValueError) as e: update(st, bad, reward="conversion")
        assert words in str(e.value), (words, str(e.value))
    aud = audience(1000)
    with pytest.raises(ValueError, match=r"segment\(s\) \[7\] have no arms"):
        assign(st, aud.with_columns(segment=pl.lit(7, pl.Int16)), policy=ThompsonBeta(), holdout=0.1, seed=1, wave=0)
    with pytest.raises(ValueError, match="appears more than once"):
        assign(st, pl.concat([aud, aud.head(1)]), policy=ThompsonBeta(), holdout=0.1, seed=1, wave=0)
    with pytest.raises(ValueError, match="holdout must be in"):
        assign(st, aud, policy=ThompsonBeta(), holdout=1.0, seed=1, wave=0)
    with pytest.raises(ValueError, match="field 'epsilon'"): EpsilonGreedy(epsilon=-0.1)


def test_converges_to_best_variant_per_segment():
    st = init_state(arms(2, 5), ThompsonBeta(), at=AT)
    rates = {(0, f"v{i}"): r for i, r in enumerate([0.02, 0.03, 0.05, 0.025, 0.02])}
    rates |= {(1, f"v{i}"): r for i, r in enumerate([0.04, 0.02, 0.02, 0.02, 0.03])}
    aud = audience(40_000, 2)
    for wv in range(6):
        w = assign(st, aud, policy=ThompsonBeta(), holdout=0.1, seed=3, wave=wv, at=AT)
        st = update(st, events_for(w, rates, seed=wv + 10), reward="conversion", at=AT)
    last = allocation(st, ThompsonBeta())
    best = last.sort("p", descending=True).group_by("segment", maintain_order=True).first().sort("segment")
    assert best["variant_id"].to_list() == ["v2", "v0"] and (best["p"] > 0.9).all()
    s = summarize(st, ThompsonBeta())
    assert ((s["ci_low"] <= s["mean"]) & (s["mean"] <= s["ci_high"])).all()
