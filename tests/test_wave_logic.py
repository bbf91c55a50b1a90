"The wave logic as a library, without a kernel: audience conflicts, never-reassign, feedback merge, allocation record."
import polars as pl
import pytest

from campaign_lab.bandit import make_policy
from campaign_lab.contracts import ContractError
from campaign_lab.samples import sample_tables
from campaign_lab.waves import (ALLOCATION_FILE, PolarsEngine, Tables, WaveMetrics, allocation_record, assign_wave, build_audience,
                                fold_feedback, read_allocation, wave_metrics, wave_rows, write_allocation)
from conftest import REPO

CONTRACTS = REPO / "data_contracts"
POL = make_policy("thompson_beta")


@pytest.fixture
def lake():
    "The sample lake with a second campaign, autumn, whose arms cover segments 0-3."
    t = sample_tables(1500, seed=4)
    autumn = t["arms"].filter(pl.col("segment") < 4).with_columns(campaign_id=pl.lit("autumn"))
    return Tables(t | {"arms": pl.concat([t["arms"], autumn])}, CONTRACTS)


def test_audience_keeps_one_email_per_customer_per_wave_and_records_conflicts(lake):
    t = lake.tables
    spring_w0 = t["assignments"]                       # spring emailed everyone in wave 0
    aud = build_audience(t["customers"], t["segments"], t["arms"].filter(campaign_id="autumn"), spring_w0, campaign_id="autumn", wave=0)
    eligible = t["customers"].filter("email_opt_in").join(t["segments"].filter(pl.col("segment") < 4), on="customer_id")
    assert aud.n_customers == 0 and aud.n_taken == eligible.height
    assert aud.conflicts.rows() == [("spring", eligible.height)]
    nxt = build_audience(t["customers"], t["segments"], t["arms"].filter(campaign_id="autumn"), spring_w0, campaign_id="autumn", wave=1)
    assert nxt.n_customers == eligible.height and nxt.conflicts.is_empty()
    assert set(nxt.customers["segment"].unique()) <= {0, 1, 2, 3}


def test_audience_uses_the_latest_segmenter_and_consent(lake):
    t = lake.tables
    newer = t["segments"].with_columns(segmenter_version=pl.lit("seg-v2"), segment=pl.lit(0, pl.Int16),
                                       assigned_at=pl.col("assigned_at") + pl.duration(days=1))
    aud = build_audience(t["customers"], pl.concat([t["segments"], newer]), t["arms"].filter(campaign_id="autumn"), None,
                         campaign_id="autumn", wave=0)
    assert aud.segmenter_version == "seg-v2" and aud.customers["segment"].unique().to_list() == [0]
    assert aud.n_customers == t["customers"]["email_opt_in"].sum()


def test_a_wave_is_never_reassigned(lake):
    w = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=1, policy=POL, holdout=0.1, seed=3)
    assert not w.reused and sorted(w.tables) == ["assignments", "bandit_state"]     # version 0 goes with the first wave
    lake.publish(w.tables, append=w.append)
    again = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=1, policy=POL, holdout=0.1, seed=3)
    assert again.reused and again.tables == {} and again.rows.equals(w.rows)
    with pytest.raises(ValueError, match="never reassigned"):
        assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=1, policy=make_policy("uniform"), holdout=0.1, seed=3)
    second = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=2, policy=POL, holdout=0.1, seed=3)
    assert sorted(second.tables) == ["assignments"]                                  # the prior is already in the lake
    held = lambda rows: set(rows.filter(arm="holdout")["customer_id"])
    assert held(second.rows) == held(w.rows)                                           # the holdout is per campaign, not per wave


def test_an_empty_audience_says_why(lake):
    with pytest.raises(ValueError, match=r"no eligible customer left in wave 0: \d[\d,]* were already emailed this wave by other campaigns"):
        assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=0, policy=POL, holdout=0.1, seed=3)


def test_feedback_merge_counts_each_event_once(lake):
    batch = wave_rows(lake, campaign_id="spring", wave=0)
    ev = lake.tables["events"]
    same = fold_feedback(PolarsEngine(), lake, batch, ev, reward="click")
    assert same.n_new == 0 and same.tables == {}                                       # the sample state has folded these in
    late = ev.filter(event_type="click").head(7).with_columns(event_id=pl.col("event_id") + "-late",
                                                              event_type=pl.lit("conversion").cast(ev["event_type"].dtype), revenue=pl.lit(9.5))
    fb = fold_feedback(PolarsEngine(), lake, batch, pl.concat([late, ev.head(3)]), reward="conversion")
    assert fb.n_new == 7 and fb.state.version == fb.before.version + 1
    assert fb.tables["events"].height == 7 and fb.tables["bandit_seen"].height == 7          # only the new rows: appended as a part
    assert fb.state.table["successes"].sum() - fb.before.table["successes"].sum() == 7
    lake.publish(fb.tables, append=fb.append)
    assert lake.tables["events"].height == ev.height + 7
    assert fold_feedback(PolarsEngine(), lake, batch, late, reward="conversion").tables == {}


def test_feedback_for_a_customer_not_in_the_wave_breaks_the_contract(lake):
    batch = wave_rows(lake, campaign_id="spring", wave=0)
    stray = lake.tables["events"].head(1).with_columns(customer_id=pl.lit(10 ** 9, pl.Int64), event_id=pl.lit("stray"))
    with pytest.raises(ContractError, match="assigned in that campaign and wave"):
        fold_feedback(PolarsEngine(), lake, batch, stray, reward="conversion")
    with pytest.raises(ValueError, match="has no assignments"): wave_rows(lake, campaign_id="spring", wave=5)


def test_allocation_record_round_trip_and_metrics(lake, tmp_path):
    w = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=1, policy=POL, holdout=0.1, seed=3)
    rec = allocation_record(w.rows, lake.tables["variants"])
    assert abs(sum(r.share for r in rec) - 1) < 1e-9 and rec == sorted(rec, key=lambda r: -r.share)
    assert all(" / " in r.label for r in rec)
    assert read_allocation(write_allocation(tmp_path / ALLOCATION_FILE, rec)) == rec
    assert read_allocation(tmp_path / "missing.json") is None
    m = wave_metrics(w, PolarsEngine(), POL)
    assert WaveMetrics.from_metrics(m.to_json()) == m and m.n_treated + m.n_holdout == w.rows.height


def test_a_discounted_state_gives_back_its_prior_without_every_send(lake):
    """Feedback with discount 0.5 in two batches: taking out every send leaves each arm's Beta(1, 1) and no sums (the fold is taken out at
    the share of evidence the discount left, not in full: until session 21 alpha and beta fell to 1e-9)."""
    from campaign_lab.waves import without_sends
    w1 = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=1, policy=POL, holdout=0.1, seed=3)
    lake.publish(w1.tables, append=w1.append)
    sent = w1.rows.filter(arm="treatment")
    et = lake.tables["events"]["event_type"].dtype
    at = pl.col("assigned_at")   # sent when assigned (the clock is real: a later time would be in the future)
    ev = pl.concat([sent.select(event_id=pl.format("s-{}", "customer_id"), campaign_id="campaign_id", wave="wave", customer_id="customer_id",
                                variant_id="variant_id", event_type=pl.lit("send").cast(et), revenue=pl.lit(0.0), occurred_at=at),
                    sent.filter(pl.col("customer_id") % 4 == 0).select(
                        event_id=pl.format("c-{}", "customer_id"), campaign_id="campaign_id", wave="wave", customer_id="customer_id",
                        variant_id="variant_id", event_type=pl.lit("conversion").cast(et), revenue=(pl.col("customer_id") % 7 + 10).cast(pl.Float64),
                        occurred_at=at)]).select(lake.tables["events"].columns)
    batch = wave_rows(lake, campaign_id="autumn", wave=1)
    for part in (ev.filter(pl.col("customer_id") % 2 == 0), ev.filter(pl.col("customer_id") % 2 == 1)):
        fb = fold_feedback(PolarsEngine(), lake, batch, part, reward="revenue", discount=0.5)
        assert fb.n_new == part.height
        lake.publish(fb.tables, append=fb.append)
    w2 = assign_wave(PolarsEngine(), lake, campaign_id="autumn", wave=2, policy=make_policy("thompson_gaussian", reward="revenue"), holdout=0.1, seed=3)
    t = w2.state.table
    assert (t["alpha"] + t["beta"] - 2 < t["n"] - 0.5).any()           # the discount shrank the first batch's evidence
    none = without_sends(w2, sent.select("wave", "customer_id", "segment", "variant_id"), lake.tables["events"], reward="revenue").state.table
    assert none["n"].sum() == 0 and none["successes"].sum() == 0
    assert (none["alpha"] - 1).abs().max() < 1e-9 and (none["beta"] - 1).abs().max() < 1e-9
    assert none["reward_sum"].abs().max() < 1e-6 and none["reward_sq_sum"].abs().max() < 1e-6
