"The wave and feedback pipelines: a few waves end to end on a small synthetic chain, idempotent reruns."
import datetime as dt

import polars as pl
import pytest

from campaign_lab.lake import read_table, table_versions, write_table
from campaign_lab.execute import execute
from campaign_lab.synth import TYPE_NAMES


T0 = dt.datetime(2026, 11, 1)   # the world's first campaign week (its year of orders ends the day before)
WEEK = dt.timedelta(days=7)


def feedback_params(root, w):
    return {"wave": w, "events_path": str(root / "inbox" / "events" / f"spring_menu_wave{w}.parquet"),
            "mapping": str(root / "inbox" / "events" / "mapping.yaml")}


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    "Two waves of spring_menu through files, week by week: wave, export, the world answers, ingest of its orders, feedback."
    import shutil
    from conftest import REPO, SETTINGS, clock, world_answers
    root = tmp_path_factory.mktemp("cycle")
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    runs = []
    with clock(T0):
        assert execute("synth", {"n_customers": 8000, "seed": 3}, root=root).ok
        assert execute("variants", root=root).ok
        truth = pl.read_parquet(root / "world" / "customer_truth.parquet")   # segments by the world's truth: a known-good segmentation
        write_table(root / "lake", "segments", truth.select(
            "customer_id", segmenter_version=pl.lit("truth-demo"),
            segment=pl.col("behaviour_type").replace_strict({t: i for i, t in enumerate(TYPE_NAMES)}, return_dtype=pl.Int16),
            assigned_at=pl.lit(T0, pl.Datetime("us"))))
    for w in range(3):
        with clock(T0 + w * WEEK):
            if w:
                runs.append(execute("ingest", {"table": "transactions", "paths": [str(got.orders)]}, root=root))
                runs.append(execute("feedback", feedback_params(root, w - 1), root=root))
            if w == 2: break
            runs.append(execute("wave", {"wave": w, "seed": 9}, root=root))
            runs.append(execute("export", {"campaign_id": "spring_menu", "wave": w, "formats": "csv"}, root=root))
        got = world_answers(root, T0 + (w + 1) * WEEK)
    return root, runs


def test_waves_learn_and_record(cycle):
    root, runs = cycle
    assert all(r.ok for r in runs), [r.manifest["error"] for r in runs if not r.ok]
    a = read_table(root / "lake", "assignments")
    assert sorted(a["wave"].unique().to_list()) == [0, 1]
    assert a.filter(wave=1)["state_version"].unique().to_list() == [1]
    state = read_table(root / "lake", "bandit_state")
    assert sorted(state["version"].unique().to_list()) == [0, 1, 2]
    sends = read_table(root / "lake", "events").filter(event_type="send").height
    assert state.filter(version=2)["n"].sum() == sends == a.filter(arm="treatment").height
    assert (runs[0].run_dir / "send_list.parquet").exists()
    sl = pl.read_csv(root / "outbox" / "spring_menu" / "wave0" / "csv" / "spring_menu_wave0.csv")
    assert "email" not in sl.columns and sl.height == a.filter(wave=0, arm="treatment").height - runs[1].manifest["metrics"]["opted_out_since"]


def test_reruns_are_noops(cycle):
    root, _ = cycle
    before = {t: len(table_versions(root / "lake", t)) for t in ("assignments", "bandit_state", "events", "bandit_seen")}
    f = execute("feedback", feedback_params(root, 1), root=root)
    w = execute("wave", {"wave": 1, "seed": 9}, root=root)
    assert f.ok and w.ok and f.manifest["metrics"]["new_events"] == 0
    assert {t: len(table_versions(root / "lake", t)) for t in before} == before
    bad = execute("wave", {"wave": 1, "seed": 9, "holdout": 0.3}, root=root)
    assert bad.status == "failed" and "never reassigned" in bad.manifest["error"]["evalue"]


def test_feedback_from_a_file_with_unknown_customer_fails_the_contract(cycle, tmp_path):
    root, _ = cycle
    ev = read_table(root / "lake", "events").filter(wave=1).head(50).with_columns(
        customer_id=pl.col("customer_id") + 10**8, event_id=pl.col("event_id") + "-x")
    path = tmp_path / "events.parquet"; ev.write_parquet(path)
    r = execute("feedback", {"wave": 1, "events_path": str(path)}, root=root)
    assert r.status == "failed" and r.manifest["error"]["ename"] == "ContractError"
    assert "the event is for a customer assigned in that campaign and wave" in r.manifest["error"]["evalue"]


def test_wave_without_segments_says_what_to_run(project):
    assert execute("synth", {"n_customers": 500, "seed": 1}, root=project).ok
    assert execute("variants", root=project).ok
    r = execute("wave", root=project)
    assert r.status == "failed" and "run the segment_apply pipeline first" in r.manifest["error"]["evalue"]


def test_pipelines_parse_cleanly_under_papermill():
    import papermill
    from conftest import REPO
    from campaign_lab.pipelines import notebook_parameters
    for nb in (REPO / "nbs" / "pipelines").glob("*.ipynb"):
        ours = notebook_parameters(nb)
        theirs = papermill.inspect_notebook(str(nb))
        assert set(theirs) == set(ours), nb.name


def test_lift_pipeline_reports_against_the_truth(cycle):
    from conftest import clock, world_answers
    root, _ = cycle
    early = execute("lift", {"wave": 1}, root=root)
    assert early.status == "failed" and "ingest the orders up to then" in early.manifest["error"]["evalue"]
    end = T0 + WEEK + dt.timedelta(days=28)
    rest = world_answers(root, end)          # the chain's orders through the end of wave 1's window
    with clock(end):
        assert execute("ingest", {"table": "transactions", "paths": [str(rest.orders)]}, root=root).ok
        r = execute("lift", {"wave": 1, "truth_path": str(root / "world" / "truth" / "spring_menu_wave1.json")}, root=root)
    assert r.ok, r.manifest["error"]
    m = r.manifest["metrics"]
    assert {"visits_rel_lift", "spend_rel_lift", "true_spend_rel_lift", "srm_p_value", "projected_52w_spend"} <= set(m)
    assert m["srm_flagged"] is False and m["visits_rel_ci"][0] < m["visits_rel_lift"] < m["visits_rel_ci"][1]
    assert m["window_complete"] is True and m["true_spend_rel_lift"] > 0
    page = (r.run_dir / "report.html").read_text()
    assert "In plain words" in page and "Sample-ratio check" in page and "Assumptions:" in page and "true lifts" in page
    bad = execute("lift", {"wave": 9}, root=root)
    assert bad.status == "failed" and "has no wave 9" in bad.manifest["error"]["evalue"]


def test_holdout_is_the_same_customers_in_every_wave(cycle):
    root, _ = cycle
    a = read_table(root / "lake", "assignments")
    h0 = set(a.filter(wave=0, arm="holdout")["customer_id"].to_list())
    h1 = set(a.filter(wave=1, arm="holdout")["customer_id"].to_list())
    assert h0 == h1 and len(h0) > 0
