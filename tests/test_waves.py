"The wave and feedback pipelines: a few waves end to end on a small synthetic chain, idempotent reruns."
import datetime as dt

import polars as pl
import pytest

from campaign_lab.lake import read_table, table_versions, write_table
from campaign_lab.execute import execute
from campaign_lab.synth import TYPE_NAMES


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    import shutil
    from conftest import REPO, SETTINGS
    root = tmp_path_factory.mktemp("cycle")
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    assert execute("synth", {"n_customers": 8000, "seed": 3}, root=root).ok
    assert execute("variants", root=root).ok
    truth = read_table(root / "lake", "customer_truth")
    write_table(root / "lake", "segments", truth.select(
        "customer_id", segmenter_version=pl.lit("truth-demo"),
        segment=pl.col("behaviour_type").replace_strict({t: i for i, t in enumerate(TYPE_NAMES)}, return_dtype=pl.Int16),
        assigned_at=pl.lit(dt.datetime(2026, 11, 1), pl.Datetime("us"))))
    runs = []
    for w in range(2):
        runs.append(execute("wave", {"wave": w, "seed": 9}, root=root))
        runs.append(execute("feedback", {"wave": w, "seed": 9}, root=root))
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
    sl = pl.read_parquet(runs[0].run_dir / "send_list.parquet")
    assert "email" not in sl.columns and sl.height == a.filter(wave=0, arm="treatment").height


def test_reruns_are_noops(cycle):
    root, _ = cycle
    before = {t: len(table_versions(root / "lake", t)) for t in ("assignments", "bandit_state", "events", "bandit_seen")}
    f = execute("feedback", {"wave": 1, "seed": 9}, root=root)
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
    r = execute("feedback", {"wave": 1, "source": "file", "events_path": str(path)}, root=root)
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
    root, _ = cycle
    r = execute("lift", {"wave": 1}, root=root)
    assert r.ok, r.manifest["error"]
    m = r.manifest["metrics"]
    assert {"visits_rel_lift", "spend_rel_lift", "true_spend_rel_lift", "srm_p_value", "projected_52w_spend"} <= set(m)
    assert m["srm_flagged"] is False and m["visits_rel_ci"][0] < m["visits_rel_lift"] < m["visits_rel_ci"][1]
    page = (r.run_dir / "report.html").read_text()
    assert "In plain words" in page and "Sample-ratio check" in page and "Assumptions:" in page
    bad = execute("lift", {"wave": 9}, root=root)
    assert bad.status == "failed" and "has no wave 9" in bad.manifest["error"]["evalue"]


def test_holdout_is_the_same_customers_in_every_wave(cycle):
    root, _ = cycle
    a = read_table(root / "lake", "assignments")
    h0 = set(a.filter(wave=0, arm="holdout")["customer_id"].to_list())
    h1 = set(a.filter(wave=1, arm="holdout")["customer_id"].to_list())
    assert h0 == h1 and len(h0) > 0
