"Lift statistics against scipy and statsmodels on generated data."
import numpy as np
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.proportion import test_proportions_2indep as wald_test_2indep  # not collected by pytest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
import statsmodels.api as sm

from campaign_lab.lift import (adjust_pvalues, bayesian, compare, mde, project, sample_size, srm, suggest_holdout,
                               variant_effects, binary_sd)

COLS = ["metric", "n_treatment", "n_control", "mean_treatment", "mean_control", "abs_lift", "abs_ci_low", "abs_ci_high",
        "rel_lift", "rel_ci_low", "rel_ci_high", "p_value", "p_adjusted"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 30_000
    arm = np.where(rng.random(n) < 0.2, "control", "treatment")
    x = rng.gamma(2, 10, n)
    y = 0.5 * x + rng.normal(5, 8, n) + (arm == "treatment") * 0.8
    conv = (rng.random(n) < np.where(arm == "treatment", 0.06, 0.05)).astype(int)
    return pl.DataFrame({"arm": arm, "y": y, "x": x, "conv": conv, "segment": rng.integers(0, 5, n)})


def test_column_names_and_order_are_stable(data):
    assert compare(data, "y").columns[:13] == COLS
    r = compare(data, "y", by="segment", covariate="x", cap=0.99)
    assert r.columns[:14] == ["segment", *COLS] and {"theta", "variance_reduction", "cap_value"} <= set(r.columns)


def test_welch_matches_scipy_and_statsmodels(data):
    r = compare(data, "y").row(0, named=True)
    t = data.filter(arm="treatment")["y"].to_numpy(); c = data.filter(arm="control")["y"].to_numpy()
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    lo, hi = CompareMeans(DescrStatsW(t), DescrStatsW(c)).tconfint_diff(usevar="unequal")
    assert (r["abs_ci_low"], r["abs_ci_high"]) == (pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6))
    # delta method for the relative lift, by hand
    vt, vc = t.var(ddof=1), c.var(ddof=1)
    se_rel = np.sqrt(vt / (len(t) * c.mean() ** 2) + t.mean() ** 2 * vc / (len(c) * c.mean() ** 4))
    q = (hi - (t.mean() - c.mean())) / np.sqrt(vt / len(t) + vc / len(c))
    assert r["rel_ci_high"] - r["rel_lift"] == pytest.approx(q * se_rel, rel=1e-6)


def test_binary_metric_uses_p_times_1_minus_p(data):
    r = compare(data, "conv").row(0, named=True)
    t = data.filter(arm="treatment")["conv"].to_numpy(); c = data.filter(arm="control")["conv"].to_numpy()
    lo, hi = confint_proportions_2indep(t.sum(), len(t), c.sum(), len(c), method="wald", compare="diff")
    z = stats.norm.ppf(0.975)
    assert r["se"] == pytest.approx((hi - lo) / (2 * z), rel=1e-9)          # same standard error
    ref = wald_test_2indep(t.sum(), len(t), c.sum(), len(c), method="wald", compare="diff")
    assert r["abs_lift"] / r["se"] == pytest.approx(ref.statistic, rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=5e-3)   # Welch t (df about 8,000) against the normal


def test_multiple_testing_matches_statsmodels():
    p = np.random.default_rng(1).uniform(0, 0.2, 12)
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")):
        assert np.allclose(adjust_pvalues(p, ours), multipletests(p, method=theirs)[1], rtol=0, atol=1e-12)


def test_by_group_adjusts_across_groups(data):
    r = compare(data, "y", by="segment")
    assert np.allclose(r["p_adjusted"], multipletests(r["p_value"].to_numpy(), method="holm")[1])
    for seg, g in data.group_by("segment"):
        row = r.filter(segment=seg[0]).row(0, named=True)
        ref = stats.ttest_ind(g.filter(arm="treatment")["y"], g.filter(arm="control")["y"], equal_var=False)
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)


def test_cuped_matches_ols(data):
    r = compare(data, "y", covariate="x").row(0, named=True)
    y, x = data["y"].to_numpy(), data["x"].to_numpy()
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    assert r["theta"] == pytest.approx(slope, rel=1e-9)
    adj = y - slope * (x - x.mean())
    treat = (data["arm"] == "treatment").to_numpy().astype(float)
    coef = sm.OLS(adj, sm.add_constant(treat)).fit().params[1]
    assert r["abs_lift"] == pytest.approx(coef, rel=1e-9)
    plain = compare(data, "y").row(0, named=True)
    assert r["variance_reduction"] > 0.3 and (r["abs_ci_high"] - r["abs_ci_low"]) < (plain["abs_ci_high"] - plain["abs_ci_low"])


def test_capping_and_fieller(data):
    r = compare(data, "y", cap=0.95).row(0, named=True)
    thr = float(np.quantile(data["y"].to_numpy(), 0.95))
    assert r["cap_value"] == pytest.approx(thr, rel=1e-9)
    assert r["mean_control"] == pytest.approx(np.minimum(data.filter(arm="control")["y"].to_numpy(), thr).mean(), rel=1e-9)
    f = compare(data, "y", relative_ci="fieller").row(0, named=True)
    d = compare(data, "y").row(0, named=True)
    assert f["rel_ci_low"] < f["rel_lift"] < f["rel_ci_high"] and abs(f["rel_ci_low"] - d["rel_ci_low"]) < 0.01
    noisy = pl.DataFrame({"arm": ["treatment"] * 50 + ["control"] * 50,
                          "y": np.r_[np.random.default_rng(2).normal(1, 5, 50), np.random.default_rng(3).normal(0.1, 5, 50)]})
    u = compare(noisy, "y", relative_ci="fieller").row(0, named=True)
    assert u["rel_ci_low"] is None and "Fieller interval undefined" in u["note"]


def test_srm_matches_chisquare():
    res = srm({"treatment": 9100, "control": 900}, {"treatment": 0.9, "control": 0.1})
    ref = stats.chisquare([9100, 900], [9000, 1000])
    assert res["chi2"] == pytest.approx(ref.statistic) and res["p_value"] == pytest.approx(ref.pvalue) and res["flagged"]
    with pytest.raises(ValueError, match="no expected share"): srm({"x": 1}, {"treatment": 1.0})


def test_bayesian_and_projection(data):
    b = bayesian(compare(data, "y")).row(0, named=True)
    assert b["chance_to_beat_control"] == pytest.approx(stats.norm.cdf(b["abs_lift"] / b["se"]))
    draws = np.random.default_rng(0).normal(b["abs_lift"], b["se"], 2_000_000)
    assert b["risk_treatment"] == pytest.approx(np.maximum(0, -draws).mean(), abs=1e-3 * b["se"] + 1e-6)
    p = project(2.0, 1.0, 3.0, population=1000, window_days=28)
    assert p["per_day"] == pytest.approx(2000 / 28) and p["per_52_weeks_ci"] == (pytest.approx(1000 / 28 * 364), pytest.approx(3000 / 28 * 364))
    assert len(p["assumptions"]) >= 3


def test_power_round_trip():
    sd = binary_sd(0.05)
    n = sample_size(0.004, sd, holdout=0.1)
    assert mde(n, sd, holdout=0.1) <= 0.004 < mde(n - 50, sd, holdout=0.1)
    assert sample_size(0.004, sd, holdout=0.1, tests=8) > n
    h = suggest_holdout(2_000_000, 0.004, sd, tests=8)
    assert h is not None and mde(2_000_000, sd, holdout=h, tests=8) <= 0.004


def test_post_stratified_variant_effects_remove_segment_bias():
    rng = np.random.default_rng(5)
    n = 60_000
    seg = rng.integers(0, 2, n)
    base = np.where(seg == 1, 50.0, 10.0)                    # segment 1 spends much more
    hold = rng.random(n) < 0.2
    variant = np.where(hold, None, np.where(seg == 1, np.where(rng.random(n) < 0.9, "a", "b"), np.where(rng.random(n) < 0.9, "b", "a")))
    y = base + rng.normal(0, 3, n) + np.where(variant == "a", 1.0, 0.0) + np.where(variant == "b", 2.0, 0.0)
    df = pl.DataFrame({"segment": seg, "arm": np.where(hold, "holdout", "treatment"), "variant_id": variant, "y": y})
    eff = variant_effects(df, "y")
    a, b = eff.filter(variant_id="a").row(0, named=True), eff.filter(variant_id="b").row(0, named=True)
    assert a["ci_low"] < 1.0 < a["ci_high"] and b["ci_low"] < 2.0 < b["ci_high"]
    naive_a = df.filter(variant_id="a")["y"].mean() - df.filter(arm="holdout")["y"].mean()
    assert abs(naive_a - 1.0) > 10                          # the naive comparison is badly biased


def test_bad_input(data):
    with pytest.raises(ValueError, match="column 'spend' not in the frame"): compare(data, "spend")
    with pytest.raises(ValueError, match="has null values"): compare(data.with_columns(y=pl.lit(None, pl.Float64)), "y")
    with pytest.raises(ValueError, match="cap must be"): compare(data, "y", cap=99)


def test_anytime_valid_intervals_hold_under_peeking_where_fixed_horizon_ones_do_not():
    "Issue 18 item 4: a look after each of 8 waves, drifting and data-following lift: the confidence sequence covers at every look."
    from campaign_lab.simulate import peeking_coverage
    cov = peeking_coverage(sims=300, seed=7)
    print(f"coverage at every one of {cov['looks']} looks, {cov['sims']} campaigns: anytime-valid {cov['anytime']:.1%}, fixed-horizon {cov['fixed']:.1%}")
    assert cov["anytime"] >= 0.94                  # the promise: 95% simultaneously over the looks
    assert cov["fixed"] < 0.90                     # the trap it avoids: a 95% interval read 8 times


def test_anytime_valid_refuses_bad_tuning():
    import pytest
    from campaign_lab.lift import cs_multiplier
    with pytest.raises(ValueError, match="n_tune"): cs_multiplier(100, n_tune=0)
    with pytest.raises(ValueError, match="alpha"): cs_multiplier(100, alpha=1.5, n_tune=10)
