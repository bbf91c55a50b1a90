"Segmentation: features, the segmenter as a value, stable labels, pipelines, promotion, bad input."
import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from campaign_lab.lake import read_table, table_versions, write_table
from campaign_lab.execute import execute
from campaign_lab.registry import promote, resolve_alias
from campaign_lab.segments import FEATURES, Segmenter, assign_segments, features, fit_segmenter, profile
from campaign_lab.synth import generate_chain

AS_OF = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def data():
    chain = generate_chain(12_000, seed=4)
    return chain, features(chain.transactions, chain.customers, as_of=AS_OF)


def test_features_defined_for_everyone_and_blind_to_the_future(data):
    chain, f = data
    assert f.height == chain.customers.height and f.null_count().sum_horizontal().item() == 0
    earlier = features(chain.transactions, chain.customers, as_of=dt.date(2026, 6, 1))
    manual = (chain.transactions.filter(pl.col("ordered_at") < dt.datetime(2026, 6, 1))
              .group_by("customer_id").agg(last=pl.col("ordered_at").max().dt.date()))
    j = earlier.join(manual, on="customer_id")
    expected = j.select((pl.lit(dt.date(2026, 6, 1)) - pl.col("last")).dt.total_days().cast(pl.Float64).alias("r"))["r"]
    assert (expected == j["recency_days"]).all()
    no_orders = f.join(chain.transactions.select("customer_id").unique(), on="customer_id", how="anti")
    assert (no_orders["frequency"] == 0).all() and (no_orders["avg_ticket"] == 0).all()
    share_cols = [c for c in FEATURES if c.endswith("_share") and c not in ("offer_share", "weekend_share")]
    with_orders = f.join(chain.transactions.select("customer_id").unique(), on="customer_id", how="semi")
    assert np.allclose(with_orders.select(share_cols).sum_horizontal().to_numpy(), 1.0)


def test_segmenter_is_a_reproducible_value(data):
    _, f = data
    a = fit_segmenter(f, k=6, seed=3, sample=5000, as_of=AS_OF)
    b = fit_segmenter(f, k=6, seed=3, sample=5000, as_of=AS_OF)
    assert a == b and a.version == b.version
    back = Segmenter.from_json(a.to_json())
    assert back == a and assign_segments(back, f).equals(assign_segments(a, f))
    assert assign_segments(a, f, chunk=777).equals(assign_segments(a, f))   # blocks do not change the answer


def test_refit_keeps_labels(data):
    _, f = data
    a = fit_segmenter(f, k=6, seed=3, sample=6000, as_of=AS_OF)
    lab = assign_segments(a, f)
    b = fit_segmenter(f, k=6, seed=9, sample=6000, as_of=AS_OF, previous=a)
    c = fit_segmenter(f, k=6, seed=9, sample=6000, as_of=AS_OF)
    moved, moved_raw = (assign_segments(b, f) != lab).mean(), (assign_segments(c, f) != lab).mean()
    assert moved < moved_raw and moved < 0.4
    # the same centroids in any order are matched back exactly
    perm = np.array([3, 0, 5, 1, 4, 2])
    shuffled = Segmenter(**{**a.__dict__, "centroids": tuple(a.centroids[i] for i in perm)})
    from campaign_lab.segments import match_labels
    assert (match_labels(np.array(shuffled.centroids), np.array(a.centroids)) == perm).all()


def test_profile_names_and_shares(data):
    _, f = data
    a = fit_segmenter(f, k=8, seed=1, sample=8000, as_of=AS_OF)
    p = profile(f, assign_segments(a, f))
    assert p["name"].is_unique().all() and abs(p["share"].sum() - 1) < 1e-9 and abs(p["spend_share"].sum() - 1) < 1e-9


def test_pipelines_promotion_and_apply(project):
    assert execute("synth", {"n_customers": 6000, "seed": 2}, root=project).ok
    with pytest.raises(FileNotFoundError, match="campaign-lab promote segmenter RUN_ID"):
        resolve_alias(project / "runs", "segmenter")
    fit = execute("segment_fit", {"sample": 5000, "bootstraps": 1, "truth_path": str(project / "world" / "customer_truth.parquet")}, root=project)
    assert fit.ok, fit.manifest["error"]
    assert (fit.run_dir / "segmenter.json").exists() and not table_versions(project / "lake", "segments")  # a candidate only
    assert 0 < fit.manifest["metrics"]["ari_vs_truth"] <= 1
    no = execute("segment_apply", root=project)
    assert no.status == "failed" and "no segmenter is promoted as 'champion'" in no.manifest["error"]["evalue"]
    synth_run = [r for r in json.loads((project / "runs" / "index.json").read_text()) if r["pipeline"] == "synth"][0]["run_id"]
    with pytest.raises(ValueError, match="has no segmenter.json"): promote(project / "runs", "segmenter", synth_run)
    with pytest.raises(ValueError, match="unknown kind"): promote(project / "runs", "segmentor", fit.run_id)
    entry = promote(project / "runs", "segmenter", "latest")
    assert entry["run_id"] == fit.run_id
    app = execute("segment_apply", root=project)
    assert app.ok, app.manifest["error"]
    seg = read_table(project / "lake", "segments")
    assert seg.height == 6000 and seg["segmenter_version"].unique().to_list() == [fit.manifest["metrics"]["segmenter_version"]]
    assert read_table(project / "lake", "segment_profiles").height == 8
    # a refit is matched to the champion
    refit = execute("segment_fit", {"sample": 5000, "bootstraps": 1, "seed": 5}, root=project)
    assert refit.ok and refit.manifest["metrics"]["changed_vs_champion"] < 0.5
    # a tampered artefact is refused
    (fit.run_dir / "segmenter.json").write_text((fit.run_dir / "segmenter.json").read_text().replace("0", "1", 1))
    bad = execute("segment_apply", root=project)
    assert bad.status == "failed" and "changed since it was promoted" in bad.manifest["error"]["evalue"]


def test_bad_transactions_fail_the_fit_and_write_nothing(project):
    assert execute("synth", {"n_customers": 3000, "seed": 2}, root=project).ok
    early = execute("segment_fit", {"as_of": "2020-01-01", "sample": 2000}, root=project)
    assert early.status == "failed" and "on or before the first order" in early.manifest["error"]["evalue"]
    tx = read_table(project / "lake", "transactions")
    write_table(project / "lake", "transactions", tx.with_columns(
        customer_id=pl.when(pl.col("transaction_id") == 1).then(10**9).otherwise(pl.col("customer_id")),
        amount=pl.when(pl.col("transaction_id") == 2).then(-4.0).otherwise(pl.col("amount"))))
    r = execute("segment_fit", {"sample": 2000, "bootstraps": 1}, root=project)
    assert r.status == "failed" and r.manifest["error"]["ename"] == "ContractError"
    assert "amount is never negative" in r.manifest["error"]["evalue"] and "customer_id refers to a known customer" in r.manifest["error"]["evalue"]
    assert not (r.run_dir / "segmenter.json").exists()
