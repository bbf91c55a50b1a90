"""The campaign cycle end to end, through files, as a scheduler drives it.

One project runs the two demo campaigns for two waves with the synthetic world answering through the
inbox (`campaign-lab-world demo`: exports in, send files out, CRM events and new orders back, week by
week on a pinned clock); the other tests reuse it: no-op reruns, lineage, alerts, promotion of the
policy, events files (missing, corrupted, good, fed twice), a lift that waits for its orders. A
second project is killed in the middle of a step and resumed: its final state must equal the
uninterrupted one.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from conftest import BIN, REPO, SETTINGS, cli_env

# The demo cycle under every test here takes about three minutes: the whole file runs in `make test-slow` (which CI runs too),
# keeping `make test` under its 10-minute budget (10 min 51 s with this file, of which pytest 7 min 50 s, session 11).
pytestmark = pytest.mark.slow

SPECS = ("--campaign", "campaigns/spring.yaml", "--campaign", "campaigns/win_back.yaml")
N_CUSTOMERS = 4000


def new_project(path: Path) -> Path:
    path.mkdir(parents=True)
    text = SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts")
    (path / "settings.ini").write_text(text.replace("n_customers = 2000", f"n_customers = {N_CUSTOMERS}") + "programme_holdout = 0.05\n")
    for d in ("lake", "runs"): (path / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", path / "campaigns")
    return path


def world_clock(root: Path) -> str:
    "The world's clock after the demo: later commands run at the time its data is at."
    return json.loads((root / "world" / "world.json").read_text())["clock"]


def cli(root: Path, *args, timeout=1200, tool="campaign-lab") -> subprocess.CompletedProcess:
    env = cli_env(root)
    if (root / "world" / "world.json").exists() and "clock" in (root / "world" / "world.json").read_text():
        env["CAMPAIGN_LAB_CLOCK"] = world_clock(root)
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env, timeout=timeout)


DEMO = ("demo", *SPECS, "--waves", "2", "--n-customers", str(N_CUSTOMERS))


def final_state(root: Path) -> dict[str, pl.DataFrame]:
    "The lake tables the cycle builds, without the wall-clock columns (assigned_at, updated_at, occurred_at)."
    from campaign_lab.lake import read_table
    lake = root / "lake"
    return {"assignments": read_table(lake, "assignments").drop("assigned_at").sort("campaign_id", "wave", "customer_id"),
            "bandit_state": read_table(lake, "bandit_state").drop("updated_at").sort("campaign_id", "version", "segment", "variant_id"),
            "events": read_table(lake, "events").drop("occurred_at").sort("event_id"),
            "bandit_seen": read_table(lake, "bandit_seen").sort("campaign_id", "event_id"),
            "variants": read_table(lake, "variants").sort("variant_id"),
            "segments": read_table(lake, "segments").drop("assigned_at").sort("customer_id")}


def runs_of(root: Path, pipeline: str) -> list[dict]:
    "Runs of a pipeline in the order they ran (with a pinned clock many share a start time, so the manifests' write times tell)."
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob(f"*_{pipeline}_*/manifest.json"), key=lambda p: p.stat().st_mtime)]


@pytest.fixture(scope="module")
def cycled(tmp_path_factory):
    "A project after the demo loop with both demo campaigns and two waves; its final state is kept."
    root = new_project(tmp_path_factory.mktemp("cycle") / "project")
    res = cli(root, *DEMO, tool="campaign-lab-world")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {"root": root, "stdout": res.stdout, "stderr": res.stderr, "state": final_state(root)}


def test_no_report_or_step_carries_a_warning_or_stray_output(cycled):
    "Reports are for people: no stderr stream, no warning text in any output of any run's report, and no kernel warning in the CLI's output."
    import nbformat
    found = []
    for f in sorted((cycled["root"] / "runs").glob("*/report.ipynb")):
        for i, c in enumerate(nbformat.read(f, 4).cells):
            for o in c.get("outputs", []):
                text = o.get("text", "") + str((o.get("data") or {}).get("text/plain", ""))
                if (o.output_type == "stream" and o.name == "stderr") or "Warning" in text or "WARNING" in text:
                    found.append((f.parent.name, i, text[:200]))
    assert found == [], found
    console = cycled["stdout"] + cycled["stderr"]
    assert "without encryption" not in console and "WARNING" not in console, console[-2000:]


def test_reports_show_numbers_for_people(cycled):
    "No scientific notation, no raw long decimals, no Python lists of floats, no bare printed number in any report."
    import re
    import nbformat
    raw = re.compile(r"\d\.\d+e[+-]\d\d|\b\d+\.\d{5,}\b|\[-?\d+\.\d+, -?\d+\.\d+\]")
    found = []
    for f in sorted((cycled["root"] / "runs").glob("*/report.html")):
        page = re.sub(r"<style.*?</style>|<script.*?</script>|<svg.*?</svg>|data:image/[^\"']+|<code>[^<]*</code>", "", f.read_text(), flags=re.S)
        hits = raw.findall(re.sub(r"<[^>]+>", " ", page))
        if hits: found.append((f.parent.name, hits[:5]))
    for f in sorted((cycled["root"] / "runs").glob("*/report.ipynb")):
        for i, c in enumerate(nbformat.read(f, 4).cells):
            for o in c.get("outputs", []):
                data = o.get("data") or {}
                if o.output_type == "execute_result" and set(data) == {"text/plain"} and re.fullmatch(r"\s*-?[\d.,]+\s*", data["text/plain"]):
                    found.append((f.parent.name, i, data["text/plain"]))
    assert found == [], found


def test_programme_holdout_unsubscribes_and_verdicts(cycled):
    "The programme holdout is never emailed and has its report; unsubscribed customers are not emailed again; each lift opens with its verdict."
    from campaign_lab.lake import read_table
    from campaign_lab.waves import programme_holdout
    root = cycled["root"]
    a, ev = read_table(root / "lake", "assignments"), read_table(root / "lake", "events")
    ids = read_table(root / "lake", "customers")["customer_id"]
    held = ids.filter(pl.Series(programme_holdout(ids.to_numpy(), share=0.05, seed=11)))   # the test settings' seed
    assert 0.03 < held.len() / ids.len() < 0.07
    assert a.join(held.to_frame(), on="customer_id", how="semi").is_empty()          # never emailed, never even held out by a campaign
    prog = runs_of(root, "programme")
    assert prog and prog[-1]["status"] == "succeeded" and prog[-1]["metrics"]["holdout_emailed"] == 0
    assert prog[-1]["metrics"]["programme_holdout_customers"] == held.len()
    gone = ev.filter(pl.col("event_type").cast(pl.String).is_in(["unsubscribe", "complaint"]), wave=0)
    assert gone.height > 0                                                           # the synthetic inbox loses customers
    assert a.filter(wave=1).join(gone.select("customer_id"), on="customer_id", how="semi").is_empty()
    for m in runs_of(root, "lift"):
        assert m["metrics"]["verdict"] in ("ship", "keep running", "stop"), m["metrics"]
        html = (root / "runs" / m["run_id"] / "report.html").read_text()
        assert html.index("Verdict:") < html.index("Parameters")


def test_two_campaigns_share_the_waves_without_double_emails(cycled):
    root, out = cycled["root"], cycled["stdout"]
    assert "promoted the new segmenter as champion" in out and "index:" in out
    a = cycled["state"]["assignments"]
    per = a.group_by("campaign_id", "wave").agg(treated=(pl.col("arm") == "treatment").sum())
    assert per.height == 4 and per["treated"].min() > 0, per            # both campaigns email someone in both waves
    assert a.group_by("wave", "customer_id").len()["len"].max() == 1    # nobody gets two campaign emails in a wave
    # win_back (priority 1) goes first; its audience is the lapsed segments only
    waves = [m for m in runs_of(root, "wave")]
    cycles = sorted((json.loads(p.read_text()) for p in (root / "runs").glob("*_cycle_*/manifest.json")), key=lambda m: m["started_at"])
    order = [(st["params"]["wave"], st["params"]["campaign_id"]) for m in cycles for st in m["steps"]
             if st["pipeline"] == "wave" and st["outcome"] == "succeeded"]    # the clock is pinned: the cycles' step order tells
    assert order == [(0, "win_back"), (0, "spring_menu"), (1, "win_back"), (1, "spring_menu")]
    arms = pl.read_parquet(sorted((root / "lake" / "arms").glob("v*.parquet"))[-1])
    assert arms.filter(campaign_id="win_back")["segment"].n_unique() < arms.filter(campaign_id="spring_menu")["segment"].n_unique()
    spring_w1 = next(m for m in waves if m["parameters"] == m["parameters"] | {"campaign_id": "spring_menu", "wave": 1})
    assert spring_w1["metrics"]["customers_in_other_campaigns"] > 0    # the lapsed customers win_back took are skipped
    # the parent run links every step; the index shows both campaigns' allocation and lift against the truth
    parent = json.loads(max((root / "runs").glob("*_cycle_*/manifest.json"), key=lambda p: p.stat().st_mtime).read_text())
    assert parent["status"] == "succeeded" and parent["exit_code"] == 0
    steps = pl.DataFrame({"pipeline": [st["pipeline"] for st in parent["steps"]]}).group_by("pipeline").len()
    assert dict(steps.iter_rows()) | {"ingest": 0} == {"ingest": 0, "validate": 1, "segment_apply": 1, "variants": 2, "wave": 4, "export": 4,
                                                       "feedback": 4, "lift": 2, "programme": 1}, steps
    assert not (root / "lake" / "customer_truth").exists() and not (root / "lake" / "response_model").exists()
    outbox = sorted(str(p.relative_to(root / "outbox")) for p in (root / "outbox").glob("*/*/*"))
    assert outbox == [f"{c}/wave{w}/braze-csv" for c in ("spring_menu", "win_back") for w in (0, 1)]
    page = (root / "runs" / "index.html").read_text()
    for text in ("Allocation over waves", "Final lift", "win_back", "spring_menu", "True lift (synthetic chain)", "<svg"):
        assert text in page, text


def test_a_rerun_is_a_noop_and_lineage_walks_back_to_the_data(cycled):
    root = cycled["root"]
    n_runs = len(list((root / "runs").iterdir()))
    again = cli(root, *DEMO, tool="campaign-lab-world")
    assert again.returncode == 0, again.stdout[-2000:]
    # every step is already done (the files ingested and the tables validate read have not changed): nothing runs
    assert "succeeded (0 run, " in again.stdout and "already done)" in again.stdout, again.stdout
    assert len(list((root / "runs").iterdir())) == n_runs + 1           # only the cycle's parent folder
    lift = [m for m in runs_of(root, "lift") if m["parameters"]["campaign_id"] == "spring_menu"][-1]
    assert lift["upstream_runs"] and any(t["table"] == "assignments" for t in lift["inputs"])
    tree = cli(root, "runs", "lineage", lift["run_id"])
    assert tree.returncode == 0
    for pipeline in ("(wave,", "(feedback,", "(variants,", "(segment_apply,", "(segment_fit,", "(ingest,"):
        assert pipeline in tree.stdout, (pipeline, tree.stdout[:2000])
    assert "segmenter segmenter.json (champion)" in tree.stdout and "customers v1" in tree.stdout


def test_alerts_and_policy_promotion(cycled):
    root = cycled["root"]
    res = cli(root, "alerts")
    assert res.returncode == 0, res.stdout                              # nothing blocking after a clean cycle
    wave_run = [m for m in runs_of(root, "wave") if m["parameters"]["campaign_id"] == "spring_menu"][-1]["run_id"]
    env = cli_env(root) | {"CAMPAIGN_LAB_USER": "reviewer@example"}
    pro = subprocess.run([str(BIN / "campaign-lab"), "promote", "policy", wave_run, "--alias", "champion", "--note", "ts beta"],
                         capture_output=True, text=True, env=env)
    assert pro.returncode == 0 and "promoted by reviewer@example" in pro.stdout, pro.stdout + pro.stderr
    reg = json.loads((root / "runs" / "registry.json").read_text())
    last = reg["history"][-1]
    assert (last["kind"], last["alias"], last["run_id"], last["promoted_by"], last["note"]) == ("policy", "champion", wave_run, "reviewer@example", "ts beta")
    bad = cli(root, "promote", "policy", [m for m in runs_of(root, "lift")][-1]["run_id"])
    assert bad.returncode == 2 and "has no policy.json" in bad.stderr
    # a blocking rule whose threshold makes it fire: wave 1's reward rate is below 100x wave 0's
    settings = root / "settings.ini"
    extra = "alerts = reward_collapse:block\nreward_collapse_ratio = 100\n"
    settings.write_text(settings.read_text() + extra)
    try:
        blocked = cli(root, "alerts")
        assert blocked.returncode == 1 and "BLOCK reward_collapse" in blocked.stdout and "[win_back]" in blocked.stdout, blocked.stdout
        page_before = (root / "runs" / "index.html").read_text()
        from campaign_lab.reports import build_index
        from campaign_lab.settings import load_settings
        build_index(load_settings(root, env={}))
        assert "BLOCKING: reward_collapse" in (root / "runs" / "index.html").read_text() and "BLOCKING" not in page_before
    finally:
        settings.write_text(settings.read_text().replace(extra, ""))


def test_events_files_missing_corrupted_good_and_fed_twice(cycled):
    "A third wave answered by files: the cycle waits for them, stops at a corrupted one, resumes, and waits for the lift's orders."
    import datetime as dt
    from campaign_lab.lake import read_table, table_versions
    from conftest import world_answers
    root = cycled["root"]
    waiting = cli(root, "cycle", *SPECS, "--waves", "3")
    assert waiting.returncode == 3 and "Waiting for the events of wave 2 of win_back" in waiting.stdout, waiting.stdout[-2000:]
    parent = json.loads(max((root / "runs").glob("*_cycle_*/manifest.json"), key=lambda p: p.stat().st_mtime).read_text())
    assert parent["waiting_for"]["kind"] == "events" and parent["waiting_for"]["wave"] == 2
    clock = dt.datetime.fromisoformat(world_clock(root)) + dt.timedelta(days=7)
    world_answers(root, clock)                                        # the CRM's events of wave 2 (and a week of orders)
    state = json.loads((root / "world" / "world.json").read_text())
    (root / "world" / "world.json").write_text(json.dumps(state | {"clock": clock.isoformat()}))   # a week later
    drop = root / "inbox" / "events"
    good = pl.read_parquet(drop / "win_back_wave2.parquet")
    good.with_columns(price=pl.when(pl.col("event_type") == "users.behaviors.Purchase").then(-5.0)).write_parquet(drop / "win_back_wave2.parquet")
    lake = root / "lake"
    state_versions = len(table_versions(lake, "bandit_state"))
    failed = cli(root, "cycle", *SPECS, "--waves", "3")
    assert failed.returncode == 1 and "ContractError" in failed.stdout and "revenue" in failed.stdout, failed.stdout[-2000:]
    assert len(table_versions(lake, "bandit_state")) == state_versions   # nothing was written
    report = (max((root / "runs").glob("*_feedback_*"), key=lambda p: p.stat().st_mtime) / "report.html").read_text()
    assert "a data contract was broken" in report
    good.write_parquet(drop / "win_back_wave2.parquet")
    done = cli(root, "cycle", *SPECS, "--waves", "3")                 # feedback resumes; the lift waits for wave 2's window
    assert done.returncode == 3 and "Waiting for orders: the lift window of wave 2 of win_back" in done.stdout, done.stdout[-3000:]
    after = read_table(lake, "bandit_state")
    # the same events fed twice change nothing
    again = cli(root, "run", "feedback", "-p", "campaign_id=win_back", "-p", "wave=2", "-p", f"events_path={drop / 'win_back_wave2.parquet'}",
                "-p", f"mapping={drop / 'mapping.yaml'}")
    assert again.returncode == 0, again.stdout[-2000:]
    assert runs_of(root, "feedback")[-1]["metrics"]["new_events"] == 0
    assert read_table(lake, "bandit_state").equals(after)


def _kill_tree(proc: subprocess.Popen):
    "SIGKILL the cycle and everything it started (papermill's kernel runs in a session of its own)."
    parent = psutil.Process(proc.pid)
    family = parent.children(recursive=True) + [parent]
    for p in family:
        try: p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess: pass
    proc.wait(timeout=60)


def test_killed_in_the_middle_resumes_to_the_same_final_state(cycled, tmp_path):
    from campaign_lab.lake import read_table, table_versions, verify_version, TABLES
    root = new_project(tmp_path / "project")
    cmd = [str(BIN / "campaign-lab-world"), *DEMO]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(root))
    deadline = time.monotonic() + 600
    target = None
    while target is None and time.monotonic() < deadline and proc.poll() is None:   # the second wave's first feedback run
        found = [p.parent for p in (root / "runs").glob("*_feedback_*/params.yaml")] if (root / "runs").exists() else []
        target = next((p for p in found if "wave: 1" in (p / "params.yaml").read_text()), None)
        time.sleep(0.2)
    assert target is not None, "the cycle never reached the feedback of wave 1"
    # inside the step: its kernel is up and has read the lake (the run context records each read in _run_io.json);
    # a warm kernel makes a small step take well under a second, so the kill follows the first read at once
    until = time.monotonic() + 120
    while not (target / "_run_io.json").exists() and time.monotonic() < until: time.sleep(0.01)
    _kill_tree(proc)
    killed = json.loads((target / "manifest.json").read_text())
    assert killed["status"] == "running"                                # it never recorded an outcome ...
    from campaign_lab.records import list_runs
    assert next(r for r in list_runs(root / "runs") if r.run_id == killed["run_id"]).status == "interrupted"   # ... and says so
    assert killed["run_id"] in (root / "runs" / "index.html").read_text()    # listed in the index from its start, not only at the next run
    for table in TABLES:                                                # no half-written version anywhere
        for v in table_versions(root / "lake", table):
            verify_version(v)                                          # every part has the bytes its record names
            read_table(root / "lake", table, version=v.version)
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(root), timeout=1200)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "already done" in resumed.stdout
    mine, reference = final_state(root), cycled["state"]
    for name, df in reference.items():
        assert mine[name].equals(df), name


def test_the_cycles_index_and_reports_render_offline_in_chromium(cycled):
    "The reviewer's home after a cycle (campaign panels included) and the cycle's reports, in headless Chromium, offline."
    from test_browser import ARTEFACTS, CHROMIUM, browse
    if CHROMIUM is None: pytest.skip("chromium is not installed (make test installs it when run as root)")
    runs = cycled["root"] / "runs"
    ARTEFACTS.mkdir(exist_ok=True)
    pages = {"cycle-index": runs / "index.html", "cycle-parent": sorted(runs.glob("*_cycle_*/report.html"))[0],
             "cycle-wave": sorted(runs.glob("*_wave_*/report.html"))[-1], "cycle-lift": sorted(runs.glob("*_lift_*/report.html"))[-1]}
    for name, page in pages.items():
        dom = browse(page, "--dump-dom")
        assert dom.returncode == 0 and "Error loading script" not in dom.stdout, (name, dom.stderr[-2000:])
        shot = ARTEFACTS / f"{name}.png"
        r = browse(page, f"--screenshot={shot}", "--window-size=1200,1800")
        assert r.returncode == 0 and shot.stat().st_size > 10_000, name
        if name == "cycle-index":
            for text in ("Allocation over waves", "Final lift", "<svg", "win_back", "spring_menu"): assert text in dom.stdout, text
