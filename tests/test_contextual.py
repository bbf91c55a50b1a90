"""The contextual Thompson policy without a kernel: bad configs and bad tables refused with the field named, the space as a
value, idempotent and associative updates, exact propensities, draws that do not depend on row order."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from conftest import REPO

from campaign_lab import contextual as cx
from campaign_lab.bandit import Uniform, assign, init_state
from campaign_lab.variants import build_catalogue, load_spec


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(4)
    n = 20_000
    feats = pl.DataFrame({"customer_id": np.arange(1, n + 1), "segment": rng.integers(0, 5, n).astype(np.int16),
                          "avg_ticket": rng.lognormal(3, 0.5, n), "offer_share": rng.random(n), "recency_days": rng.exponential(30, n)})
    variants = build_catalogue(load_spec(REPO / "campaigns" / "spring.yaml")).variants
    pol = cx.ContextualThompson()
    return feats, variants, pol, cx.fit_space(feats, variants, pol)


@pytest.mark.parametrize("field,value", [("reward", "profit"), ("epsilon", -0.1), ("draws", 0), ("prior_precision", 0.0),
                                         ("reward_cap", 0.0), ("exploration", 0.0), ("context", (("avg_ticket", "four"),)),
                                         ("factors", ("colour",))])
def test_bad_configs_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        cx.ContextualThompson(**{field: value})


def test_bad_tables_name_the_column(world):
    feats, variants, pol, space = world
    with pytest.raises(ValueError, match="missing column.*offer_share"):
        cx.fit_space(feats.drop("offer_share"), variants, pol)
    s = cx.empty_stats(space)
    with pytest.raises(ValueError, match="missing column.*reward"):
        cx.update_stats(s, space, pl.DataFrame({"send_id": ["a"], "cell": [0], "variant_id": [space.variants[0]]}), pol)
    with pytest.raises(ValueError, match="cell out of range"):
        cx.update_stats(s, space, pl.DataFrame({"send_id": ["a"], "cell": [space.n_cells], "variant_id": [space.variants[0]], "reward": [1.0]}), pol)
    with pytest.raises(ValueError, match="negative reward"):
        cx.update_stats(s, space, pl.DataFrame({"send_id": ["a"], "cell": [0], "variant_id": [space.variants[0]], "reward": [-1.0]}), pol)
    with pytest.raises(ValueError, match="in no cell"):
        cx.assign_cells(np.full((space.n_cells, len(space.variants)), 1 / len(space.variants)), np.array([-1]), np.array([1]),
                        holdout=0.1, seed=1, campaign_id="c", wave=0)


def test_updates_are_idempotent_and_associative(world):
    feats, variants, pol, space = world
    rng = np.random.default_rng(9)
    def batch(lo, hi):
        k = hi - lo
        return pl.DataFrame({"send_id": [f"s{i}" for i in range(lo, hi)], "cell": rng.integers(0, space.n_cells, k),
                             "variant_id": np.array(space.variants)[rng.integers(0, len(space.variants), k)],
                             "reward": np.where(rng.random(k) < 0.05, rng.lognormal(3, 1.5, k), 0.0)})
    a, b, c = batch(0, 4000), batch(4000, 7000), batch(7000, 9000)
    s0 = cx.empty_stats(space)
    seq = cx.update_stats(cx.update_stats(cx.update_stats(s0, space, a, pol), space, b, pol), space, c, pol)
    grouped = cx.update_stats(cx.update_stats(s0, space, a, pol), space, pl.concat([b, c]), pol)
    replay = cx.update_stats(seq, space, pl.concat([c, a]), pol)          # at least once delivery: nothing counted twice
    for x in (grouped, replay):
        for k in ("n", "s", "ss"): np.testing.assert_array_equal(getattr(seq, k), getattr(x, k))
    assert seq.s.max() <= pol.reward_cap * seq.n.max()
    p1 = cx.allocation(space, seq, pol, seed=3, campaign_id="c", wave=1)
    p2 = cx.allocation(space, replay, pol, seed=3, campaign_id="c", wave=1)
    np.testing.assert_array_equal(p1, p2)


def test_propensities_are_exact_and_draws_independent_of_row_order(world):
    feats, variants, pol, space = world
    p = cx.allocation(space, cx.empty_stats(space), pol, seed=3, campaign_id="c", wave=0)
    cell = cx.cells(space, feats)
    ids = feats["customer_id"].to_numpy()
    h, v, prop = cx.assign_cells(p, cell, ids, holdout=0.1, seed=3, campaign_id="c", wave=0)
    np.testing.assert_array_equal(prop[~h], (1 - 0.1) * p[cell[~h], v[~h]])
    assert (prop[h] == 0.1).all()
    # realised shares within the noise of an exact sample: 300,000 customers in three cells
    many = np.arange(1, 300_001)
    c3 = many % 3
    hh, vv, _ = cx.assign_cells(p, c3, many, holdout=0.1, seed=5, campaign_id="c", wave=0)
    expected = np.zeros_like(p); np.add.at(expected, c3[~hh], p[c3[~hh]])
    got = np.zeros_like(p); np.add.at(got, (c3[~hh], vv[~hh]), 1.0)
    z = (got - expected) / np.sqrt(np.maximum(expected * (1 - p), 1e-12))
    big = expected >= 20                                      # where a normal approximation holds; the rest pooled
    assert big.sum() > 10 and np.abs(z[big]).max() < 5
    small = ~big & (expected > 0)
    assert abs(got[small].sum() - expected[small].sum()) < 5 * np.sqrt(expected[small].sum())
    perm = np.random.default_rng(1).permutation(len(ids))
    h2, v2, p2 = cx.assign_cells(p, cx.cells(space, feats[perm]), ids[perm], holdout=0.1, seed=3, campaign_id="c", wave=0)
    np.testing.assert_array_equal(v2, v[perm]); np.testing.assert_array_equal(h2, h[perm])
    # the holdout is the campaign's, whatever the policy: the same customers as today's bandit holds out
    arms = pl.DataFrame({"segment": np.arange(5, dtype=np.int16)}).join(variants.select("variant_id"), how="cross").with_columns(campaign_id=pl.lit("c"))
    today = assign(init_state(arms, Uniform()), feats.select("customer_id", "segment"), policy=Uniform(), holdout=0.1, seed=3, wave=0)
    np.testing.assert_array_equal(today.sort("customer_id")["arm"].cast(pl.String).to_numpy() == "holdout", h)


def test_the_space_is_a_value(world):
    feats, variants, pol, space = world
    assert cx.ContextSpace.from_json(space.to_json()) == space
    again = cx.fit_space(feats.sample(fraction=1.0, shuffle=True, seed=2), variants.reverse(), pol)
    assert again == space                                     # fitted from the same customers and variants in any order
