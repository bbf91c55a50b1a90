import datetime as dt

import numpy as np
import polars as pl
import pytest

from campaign_lab.lake import TABLES, write_table
from campaign_lab.draws import keyed_uniform
from campaign_lab.synth import (BEHAVIOUR_TYPES, OFFER_TYPES, TONALITIES, default_response_model, draw_window_outcomes,
                                expected_outcomes, generate_chain, response_model_frame,
                                response_model_from_frame, response_probabilities, typical_customers)


@pytest.fixture(scope="module")
def chain():
    return generate_chain(30_000, seed=3)


def test_same_seed_same_bytes(tmp_path, chain):
    again = generate_chain(30_000, seed=3, threads=1)
    for name, a, b in [("transactions", chain.transactions, again.transactions), ("customers", chain.customers, again.customers),
                       ("customer_truth", chain.truth, again.truth)]:
        va = write_table(tmp_path / "a", name, a)
        vb = write_table(tmp_path / "b", name, b)
        assert va.fingerprint == vb.fingerprint, name
    assert not generate_chain(30_000, seed=4).transactions.equals(chain.transactions)


def test_tables_match_lake_schemas_and_keys(chain):
    assert chain.customers.schema == TABLES["customers"].schema
    assert chain.transactions.schema == TABLES["transactions"].schema
    assert chain.truth.schema == TABLES["customer_truth"].schema
    assert chain.customers["customer_id"].is_unique().all()
    assert chain.transactions["transaction_id"].is_unique().all()
    assert chain.transactions["customer_id"].is_in(chain.customers["customer_id"].implode()).all()


def test_orders_fall_inside_each_customers_active_window(chain):
    tx = chain.transactions.join(chain.customers, on="customer_id").join(chain.truth, on="customer_id")
    day = tx["ordered_at"].dt.date()
    assert (day >= tx["signup_date"]).all()
    assert (day >= dt.date(2025, 11, 1)).all() and (day <= dt.date(2026, 10, 31)).all()
    lapsed = tx.filter(pl.col("active_until").is_not_null())
    assert (lapsed["ordered_at"].dt.date() <= lapsed["active_until"]).all()
    assert (tx["amount"] > 0).all() and (tx["items"] >= 1).all()
    assert chain.customers["signup_date"].min() >= dt.date(2019, 1, 1)


def test_type_mix_matches_declared_shares(chain):
    shares = chain.truth["behaviour_type"].value_counts(normalize=True)
    got = dict(zip(shares["behaviour_type"], shares["proportion"]))
    for t in BEHAVIOUR_TYPES: assert abs(got[t.name] - t.share) < 0.01, t.name


def test_bad_arguments():
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_customers must be a positive integer"): generate_chain(bad, seed=1)
    with pytest.raises(ValueError, match="opened"): generate_chain(10, seed=1, opened=dt.date(2026, 1, 1))


def test_response_model_round_trips_through_its_table():
    m = default_response_model()
    df = response_model_frame(m)
    assert df.schema == TABLES["response_model"].schema
    back = response_model_from_frame(df)
    for a, b in zip(m, back):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_response_is_a_function_of_customer_and_variant():
    typ = typical_customers()
    deal = typ.filter(behaviour_type="deal_seeker")
    big = typ.filter(behaviour_type="big_spender")
    pct = lambda df, v: response_probabilities(df, ["friendly"], ["percent_off"], [v])["p_conversion"][0]
    # deal seekers answer bigger discounts more, big spenders less
    assert pct(deal, 10) < pct(deal, 20) < pct(deal, 40)
    assert pct(big, 10) > pct(big, 40)
    # every probability in (0, 1), for every level
    pairs = typ.join(pl.DataFrame({"tonality": list(TONALITIES)}), how="cross").join(
        pl.DataFrame({"offer_type": list(OFFER_TYPES), "offer_value": [0, 20, 5, 0, 0, 300]}), how="cross")
    p = response_probabilities(pairs, pairs["tonality"], pairs["offer_type"], pairs["offer_value"])
    for c in ("p_open", "p_click", "p_convert", "p_conversion"):
        assert p[c].is_between(0, 1, closed="none").all()
    # and the best variant differs between types
    best = pairs.hstack(p).sort("p_conversion", descending=True).group_by("behaviour_type", maintain_order=True).first()
    assert best.select("tonality", "offer_type").n_unique() >= 4


def test_unknown_variant_level_is_an_error():
    with pytest.raises(ValueError, match=r"tonality: unknown value\(s\) \['shouty'\]"):
        response_probabilities(typical_customers().head(1), ["shouty"], ["none"], [0])


def test_baseline_and_increment(chain):
    t = chain.truth
    n = t.height
    w = dict(window_start=dt.date(2026, 11, 2), days=28)
    base = expected_outcomes(t, **w)
    assert (base["inc_visits"] == 0).all()
    lapsed = t["active_until"].is_not_null().to_numpy()
    assert (base["base_visits"].to_numpy()[lapsed] == 0).all()          # lapsed before the window
    assert (base["base_visits"].to_numpy()[~lapsed] > 0).all()
    email = expected_outcomes(t, **w, tonality=["urgent"] * n, offer_type=["percent_off"] * n, offer_value=[20] * n)
    assert (email["inc_visits"] > 0).all() and np.allclose(email["base_visits"], base["base_visits"])
    # lapsed customers can be won back only by the email
    assert (email["inc_visits"].to_numpy()[lapsed] > 0).all()


def test_drawn_outcomes_do_not_depend_on_row_order(chain):
    t = chain.truth
    n = t.height
    exp = expected_outcomes(t, window_start=dt.date(2026, 11, 2), days=28, tonality=["friendly"] * n,
                            offer_type=["bogo"] * n, offer_value=[0] * n)
    treated = keyed_uniform(1, 5, t["customer_id"].to_numpy()) < 0.5
    a = draw_window_outcomes(exp, seed=9, treated=treated)
    perm = np.random.default_rng(0).permutation(n)
    b = draw_window_outcomes(exp[perm], seed=9, treated=treated[perm])
    assert a.sort("customer_id").equals(b.sort("customer_id"))
    # realised means recover the expectations
    assert abs(a["visits"].mean() - (exp["base_visits"] + np.where(treated, exp["inc_visits"], 0)).mean()) < 0.02
