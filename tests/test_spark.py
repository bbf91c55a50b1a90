"""The Spark engine through the pipelines: the same answers as the polars engine, clear failures.

One small project is prepared once (synthetic chain, champion segmenter, both demo campaigns'
variants) and copied: the copy runs segment_apply, wave (per segment and contextual) and feedback with `engine=spark`, the
original with `engine=polars`, and the lake tables must agree (a contextual campaign that learns from another included). Spark runs on `local[2]` (Java 17 is
on the machine; `make test` installs the `spark` extra).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import BIN, REPO, SETTINGS, cli_env, world_answers

pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no Java: the Spark engine cannot run here", allow_module_level=True)


SENT = "2026-11-02T09:00:00"      # the wave's time on a pinned clock; the world answers a week later
ANSWERED = "2026-11-09T09:00:00"
LATER = "2026-11-16T09:00:00"     # the contextual wave's answers


def cli(root: Path, *args, env=None, at: str = SENT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "campaign-lab"), *args], capture_output=True, text=True,
                          env=(env or cli_env(root)) | {"CAMPAIGN_LAB_CLOCK": at}, timeout=900)


def feedback_args(root: Path, campaign: str, events: Path | None = None, wave: int = 0) -> list[str]:
    box = root / "inbox" / "events"
    return ["run", "feedback", "-p", f"campaign_id={campaign}", "-p", f"wave={wave}", "-p", f"events_path={events or box / f'{campaign}_wave{wave}.parquet'}",
            "-p", f"mapping={box / 'mapping.yaml'}"]


def ok(res):
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def versions(root: Path) -> dict[str, int]:
    return {p.name: len(list(p.glob("v*.json"))) for p in (root / "lake").iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    "Two copies of a project ready for waves: (polars, spark)."
    root = tmp_path_factory.mktemp("spark") / "polars"
    root.mkdir()
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts")
                                       .replace("n_customers = 2000", "n_customers = 3000") + "programme_holdout = 0.05\n")
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    ok(cli(root, "run", "synth"))
    ok(cli(root, "run", "segment_fit"))
    ok(cli(root, "promote", "segmenter", "latest"))
    other = root.parent / "spark"
    shutil.copytree(root, other)
    return root, other


@pytest.mark.slow
def test_spark_pipelines_give_the_polars_answers(pair):
    from campaign_lab.lake import read_table, table_versions
    a, b = pair
    # win_back's steps run on polars in both projects; spring_menu's wave (which must skip the customers win_back
    # took) and feedback run on Spark in the second (each Spark run starts a session and checks its inputs on Spark)
    for root, engine in ((a, "polars"), (b, "spark")):
        ok(cli(root, "run", "segment_apply", "-p", f"engine={engine}"))
        ok(cli(root, "run", "variants", "-p", "spec=campaigns/win_back.yaml"))
        ok(cli(root, "run", "variants", "-p", "spec=campaigns/spring.yaml"))
        ok(cli(root, "run", "wave", "-p", "campaign_id=win_back", "-p", "wave=0", "-p", "engine=polars"))
        ok(cli(root, "run", "wave", "-p", "campaign_id=spring_menu", "-p", "wave=0", "-p", f"engine={engine}"))
        for c in ("win_back", "spring_menu"): ok(cli(root, "run", "export", "-p", f"campaign_id={c}", "-p", "wave=0"))
        got = world_answers(root, dt.datetime.fromisoformat(ANSWERED))   # the CRM's events files, through the inbox
        ok(cli(root, *feedback_args(root, "win_back"), "-p", "engine=polars", at=ANSWERED))
        ok(cli(root, *feedback_args(root, "spring_menu"), "-p", f"engine={engine}", at=ANSWERED))
        # wave 1 after the feedback: the customers the CRM reported unsubscribing are left out on both engines
        ok(cli(root, "run", "wave", "-p", "campaign_id=win_back", "-p", "wave=1", "-p", "engine=polars", at=ANSWERED))
        ok(cli(root, "run", "wave", "-p", "campaign_id=spring_menu", "-p", "wave=1", "-p", f"engine={engine}", at=ANSWERED))
        # contextual waves, the same cells and keyed draws: wave 2 reads the features segment_apply stored (computed on Spark in
        # the second project); after the answered orders are ingested they are stale, and wave 3 computes them (on Spark)
        ctx_wave = lambda w: ok(cli(root, "run", "wave", "-p", "campaign_id=win_back", "-p", f"wave={w}", "-p", "policy=contextual_thompson",
                                    "-p", "reward=revenue", "-p", f"engine={engine}", at=ANSWERED))
        ctx_wave(2)
        ok(cli(root, "run", "ingest", "-p", "table=transactions", "-p", f"paths=[{got.orders}]", at=ANSWERED))
        ctx_wave(3)
        # the contextual feedback (its statistics), then spring_menu's first contextual wave learning from win_back (learn_from):
        # on Spark, the same prior in its frozen space and the same draws
        ok(cli(root, "run", "export", "-p", "campaign_id=win_back", "-p", "wave=3", at=ANSWERED))
        world_answers(root, dt.datetime.fromisoformat(LATER))
        ok(cli(root, *feedback_args(root, "win_back", wave=3), "-p", f"engine={engine}", at=LATER))
        ok(cli(root, "run", "wave", "-p", "campaign_id=spring_menu", "-p", "wave=2", "-p", "policy=contextual_thompson", "-p", "reward=revenue",
               "-p", "learn_from=win_back", "-p", f"engine={engine}", at=LATER))
    same = lambda t, drop, keys: read_table(a / "lake", t).drop(drop).sort(keys).equals(read_table(b / "lake", t).drop(drop).sort(keys))
    assert same("segments", "assigned_at", "customer_id")                              # the same segment labels
    pa, pb = (read_table(r / "lake", "segment_profiles") for r in (a, b))
    assert pa.select("segment", "name", "n_customers").equals(pb.select("segment", "name", "n_customers"))
    assert same("assignments", "assigned_at", ["campaign_id", "wave", "customer_id"])  # the same assignments, customer by customer
    assert read_table(b / "lake", "assignments").filter(pl.col("wave") >= 2)["policy"].unique().to_list() == ["contextual_thompson"]
    stamp = read_table(b / "lake", "customer_features").select("transactions_version").unique().item()
    assert stamp < table_versions(b / "lake", "transactions")[-1].version      # so wave 3 computed its features from the orders, on Spark
    assert same("context_cells", [], ["campaign_id", "wave", "customer_id"]) and same("context_space", "created_at", "campaign_id")
    learned = read_table(b / "lake", "context_space").filter(campaign_id="spring_menu")
    assert learned.height == 1 and json.loads(learned["space"].item())["prior_from"].startswith("win_back@context_state v")   # the prior, on both
    def same_sums(table, keys):   # statistics: counts identical, revenue sums equal to floating-point rounding (summation order)
        x, y = (read_table(r / "lake", table).drop("updated_at").sort(keys) for r in (a, b))
        sums = ["reward_sum", "reward_sq_sum"]
        return x.height > 0 and x.drop(sums).equals(y.drop(sums)) and np.allclose(x.select(sums).to_numpy(), y.select(sums).to_numpy(), rtol=1e-12)
    assert same_sums("context_state", ["campaign_id", "version", "wave", "cell", "variant_id"])   # the contextual feedback on each engine
    from campaign_lab.waves import programme_holdout
    ids = read_table(b / "lake", "assignments")["customer_id"].to_numpy()
    assert len(ids) and not programme_holdout(ids, share=0.05, seed=11).any()          # the programme holdout, kept out on both engines
    assert same_sums("bandit_state", ["campaign_id", "version", "segment", "variant_id"])   # the same state after update
    assert same("bandit_seen", [], ["campaign_id", "event_id"])
    manifests = [json.loads(p.read_text()) for p in (b / "runs").glob("*/manifest.json")]
    manifests = [m for m in manifests if m["metrics"].get("engine") == "spark"]
    assert sorted(m["pipeline"] for m in manifests) == ["feedback", "feedback", "segment_apply", "wave", "wave", "wave", "wave", "wave"]
    gone = read_table(b / "lake", "events").filter(pl.col("event_type").cast(pl.String).is_in(["unsubscribe", "complaint"]), campaign_id="spring_menu")
    w1 = read_table(b / "lake", "assignments").filter(wave=1)
    assert gone.height and w1.height and w1.join(gone.select("customer_id"), on="customer_id", how="semi").is_empty()
    import nbformat
    noise = [(p.parent.name, o.get("text", "")[:200]) for p in sorted((b / "runs").glob("*/report.ipynb"))
             for c in nbformat.read(p, 4).cells for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"]
    assert noise == [], noise                                                          # no JVM or PySpark warning in a Spark run's report
    spark_checks = [c for m in manifests for c in m["contracts"] if c["source"].endswith("(spark)")]
    assert spark_checks and all(c["success"] for c in spark_checks)                    # inputs were checked on Spark


@pytest.mark.slow
def test_contract_failure_on_spark_reads_like_polars(pair, tmp_path):
    a, b = pair
    messages = {}
    for root, engine in ((a, "polars"), (b, "spark")):
        events = pl.read_parquet(root / "inbox" / "events" / "spring_menu_wave0.parquet")    # the CRM's file the first test fed
        bad = events.with_columns(price=pl.when(pl.col("event_type") == "users.behaviors.Purchase").then(-1.0), id=pl.col("id") + "-late")
        path = tmp_path / f"{engine}.parquet"
        bad.write_parquet(path)
        before = versions(root)
        res = cli(root, *feedback_args(root, "spring_menu", path), "-p", f"engine={engine}", at=ANSWERED)
        assert res.returncode == 1 and versions(root) == before, res.stdout
        m = json.loads(max((root / "runs").glob("*_feedback_*/manifest.json"), key=lambda p: p.stat().st_mtime).read_text())
        messages[engine] = [l for l in m["error"]["evalue"].splitlines() if "revenue" in l]
    strip = lambda lines: [l.split(" e.g.")[0].split(" at ")[0] for l in lines]
    assert messages["polars"] and strip(messages["polars"]) == strip(messages["spark"]), messages


@pytest.mark.slow   # two pipeline runs that start Spark's JVM to fail (36 s): with the other Spark checks, in make test-slow
def test_spark_that_cannot_start_fails_before_writing(project):
    b = project
    ok(cli(b, "run", "synth", "-p", "n_customers=500"))
    before = versions(b)
    bad_master = cli(b, "run", "segment_apply", "-p", "engine=spark", env=cli_env(b) | {"CAMPAIGN_LAB_SPARK_MASTER": "bogus://nowhere"})
    assert bad_master.returncode == 1 and "Spark session could not start (master 'bogus://nowhere')" in bad_master.stdout, bad_master.stdout
    no_java = cli_env(b) | {"PATH": str(BIN), "JAVA_HOME": "/nonexistent"}
    res = cli(b, "run", "wave", "-p", "campaign_id=win_back", "-p", "wave=5", "-p", "engine=spark", env=no_java)
    assert res.returncode == 1 and "needs Java 17 or newer" in res.stdout, res.stdout
    assert versions(b) == before
    bad_engine = cli(b, "run", "wave", "-p", "engine=dask")   # a closed set: refused before a kernel starts, nothing run
    assert bad_engine.returncode == 2 and "parameter 'engine' must be one of 'default', 'polars', 'spark', got 'dask'" in bad_engine.stderr, bad_engine.stderr
    assert versions(b) == before


def test_without_pyspark_the_error_says_how_to_install():
    code = ("import sys; sys.modules['pyspark'] = None\n"
            "from campaign_lab.spark import spark_session, EngineError\n"
            "from campaign_lab.settings import load_settings\n"
            "try: spark_session(load_settings())\n"
            "except EngineError as e: print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "pip install 'campaign_lab[spark]'" in res.stdout, res.stdout + res.stderr


@pytest.mark.slow
def test_spark_reads_parts_written_before_an_added_column(tmp_path):
    "A decisions part written before `cell` was declared reads it as null on Spark too, beside a newer part that has it."
    from campaign_lab.lake import commit, write_table
    from campaign_lab.samples import sample_tables
    from campaign_lab.settings import load_settings
    from campaign_lab.spark import read_lake, spark_session, to_polars
    (tmp_path / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    settings = load_settings(tmp_path, env={})
    old = sample_tables()["decisions"].head(3)
    v1 = write_table(settings.lake_dir, "decisions", old)
    pl.read_parquet(v1.path).drop("cell").write_parquet(v1.path)
    commit(settings.lake_dir, {"decisions": old.head(1).with_columns(decision_id=pl.lit("d-new"), cell=pl.lit(4, pl.Int32))}, append={"decisions"})
    sdf, _ = read_lake(spark_session(settings, master="local[1]"), settings, "decisions")
    got = to_polars(sdf, "decisions").sort("decision_id")
    assert got.height == 4 and dict(zip(got["decision_id"], got["cell"])) == {**{d: None for d in old["decision_id"]}, "d-new": 4}
