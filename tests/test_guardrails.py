"""Guardrails, unsubscribes, the programme holdout and the decision status, on the library (no kernel)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from campaign_lab.bandit import ThompsonBeta, assign, init_state, update
from campaign_lab.draws import keyed_uniform, stream_key
from campaign_lab.lift import decision_status
from campaign_lab.samples import sample_tables
from campaign_lab.variants import Decision, Guardrail, SpecError, parse_spec
from campaign_lab.waves import (PolarsEngine, Tables, assign_wave, guard_arms, guardrail_counts, guardrail_status,
                                programme_holdout, unsubscribed)
from conftest import REPO

CAP = Guardrail("unsubscribe", max_per_1000=3.0)


def test_a_simulated_variant_that_drives_unsubscribes_is_stopped_and_the_others_are_not():
    "Six variants over five waves; one unsubscribes 1.5% of its customers (the others 0.1%): it is stopped after the first wave, no other is."
    rates = {"v0": 0.001, "v1": 0.001, "v2": 0.001, "pushy": 0.015, "v4": 0.001, "v5": 0.001}
    arms = pl.DataFrame({"campaign_id": "sim", "segment": np.repeat(np.arange(2, dtype=np.int16), 6), "variant_id": list(rates) * 2})
    audience = pl.DataFrame({"customer_id": np.arange(20_000), "segment": (np.arange(20_000) % 2).astype(np.int16)})
    policy, state, events, stopped_at = ThompsonBeta(), init_state(arms, ThompsonBeta()), [], {}
    for wave in range(5):
        ev = pl.concat(events) if events else None
        left, stopped = guard_arms(arms, guardrail_status(guardrail_counts(ev, "sim"), (CAP,)))
        for v in stopped: stopped_at.setdefault(v, wave)
        st = state._replace(table=state.table.join(left, on=["campaign_id", "segment", "variant_id"], how="semi"))
        rows = assign(st, audience, policy=policy, holdout=0.1, seed=5, wave=wave, campaign_id="sim")
        treated = rows.filter(arm="treatment")
        assert not treated["variant_id"].is_in(stopped).any()                       # a stopped variant is never sent again
        per = treated.group_by("segment", "variant_id").agg(pl.col("propensity").first()).group_by("segment").agg(pl.col("propensity").sum())
        assert np.allclose(per["propensity"].to_numpy(), 0.9, atol=1e-9)            # exact propensities: the variants left share all of it
        u = keyed_uniform(5, stream_key("sim", wave, "unsub"), treated["customer_id"].to_numpy())
        left_ = u < treated["variant_id"].replace_strict(rates).to_numpy()
        sends = treated.select(event_id=pl.format("s-{}-{}", pl.lit(wave), "customer_id"), campaign_id="campaign_id", segment="segment",
                               variant_id="variant_id", event_type=pl.lit("send"), revenue=pl.lit(0.0), customer_id="customer_id", wave="wave")
        unsubs = sends.filter(pl.Series(left_)).with_columns(event_id=pl.format("u-{}-{}", pl.lit(wave), "customer_id"), event_type=pl.lit("unsubscribe"))
        batch = pl.concat([sends, unsubs])
        events.append(batch)
        state = update(state, batch, reward="conversion")
    assert stopped_at == {"pushy": 1}, stopped_at


def test_a_wave_leaves_out_stopped_variants_and_unsubscribed_customers(tmp_path):
    "Through assign_wave on the sample lake: the breaching variant is not allocated; customers who unsubscribed are not in the audience."
    t = sample_tables(600, seed=2)
    ev = t["events"]
    bad = t["variants"]["variant_id"][0]
    # every treated customer of `bad` unsubscribed: about 100 sends, all unsubscribes; one customer of another variant complained
    sent_bad = ev.filter(event_type="send", variant_id=bad)
    other = ev.filter((pl.col("event_type") == "send") & (pl.col("variant_id") != bad)).head(1)
    extra = pl.concat([sent_bad.with_columns(event_id=pl.format("unsub-{}", "customer_id"), event_type=pl.lit("unsubscribe").cast(ev["event_type"].dtype)),
                       other.with_columns(event_id=pl.format("spam-{}", "customer_id"), event_type=pl.lit("complaint").cast(ev["event_type"].dtype))])
    t["events"] = pl.concat([ev, extra])
    reader = Tables(t, REPO / "data_contracts")
    w = assign_wave(PolarsEngine(), reader, campaign_id="spring", wave=1, policy=ThompsonBeta(), holdout=0.1, seed=3)
    assert w.stopped == (bad,) and not w.rows["variant_id"].is_in([bad]).any()
    gone = unsubscribed(t["events"].lazy())["customer_id"]
    assert gone.len() == sent_bad.height + 1 and not w.rows["customer_id"].is_in(gone.implode()).any()
    assert 0 < w.audience.n_unsubscribed <= gone.len()          # those who were still opted in and eligible
    treated = w.rows.filter(arm="treatment")
    assert treated.height and (treated["propensity"] > 0).all()


def test_the_programme_holdout_is_stable_and_independent_of_campaign_and_order():
    ids = np.arange(1, 200_001)
    held = programme_holdout(ids, share=0.05, seed=7)
    assert abs(held.mean() - 0.05) < 0.003
    perm = np.random.default_rng(0).permutation(len(ids))
    assert (programme_holdout(ids[perm], share=0.05, seed=7) == held[perm]).all()     # no order, partition or campaign enters the draw
    assert (programme_holdout(ids[:1000], share=0.05, seed=7) == held[:1000]).all()
    assert (held & ~programme_holdout(ids, share=0.10, seed=7)).sum() == 0            # a larger share keeps everyone held before


def _row(est, lo, hi): return {"rel_lift": est, "rel_cs_low": lo, "rel_cs_high": hi}


@pytest.mark.parametrize("row,waves,breach,verdict,words", [
    (_row(0.05, 0.01, 0.09), 3, False, "ship", "after 3 waves"),
    (_row(-0.05, -0.09, -0.01), 1, False, "stop", "lower"),
    (_row(0.05, 0.01, 0.09), 3, True, "stop", "guardrail"),
    (_row(0.05, 0.01, 0.09), 1, False, "keep running", "too early"),
    (_row(0.002, -0.01, 0.015), 4, False, "stop", "smaller than"),
    (_row(0.01, -0.01, 0.04), 4, False, "keep running", "not clear yet"),
])
def test_decision_status_for_constructed_cases(row, waves, breach, verdict, words):
    g = pl.DataFrame({"variant_id": ["all"], "metric": ["unsubscribe"], "sends": [10_000], "events": [45 if breach else 20],
                      "rate_per_1000": [4.5 if breach else 2.0], "max_per_1000": [3.0], "p_breach": [0.999 if breach else 0.1],
                      "confidence": [0.95], "breached": [breach]})
    v = decision_status(row, decision=Decision("spend", 0.02, 2), waves=waves, guardrails=g)
    assert v.verdict == verdict and words in v.reason, v


def test_a_spec_with_bad_guardrails_or_decision_names_the_line():
    text = (REPO / "campaigns" / "spring.yaml").read_text()
    with pytest.raises(SpecError, match=r"spring.yaml:\d+: guardrails.0.metric: must be one of unsubscribe, complaint"):
        parse_spec(text.replace("{metric: unsubscribe, max_per_1000: 3}", "{metric: bounces, max_per_1000: 3}"), "spring.yaml")
    with pytest.raises(SpecError, match=r"decision.mde: must be a relative lift"):
        parse_spec(text.replace("mde: 0.02", "mde: 2"), "spring.yaml")
    with pytest.raises(SpecError, match=r"decision.primary: unknown key"):
        parse_spec(text.replace("primary_metric: spend", "primary: spend"), "spring.yaml")
