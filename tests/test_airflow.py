"""The scheduling examples under real Apache Airflow (its own virtual environment, `make airflow`): both DAGs parse,
every task's templates render, every command is one the CLI accepts, every pod specification of the
KubernetesPodOperator DAG is built; and the cycle DAG runs end to end with `airflow dags test` (SQLite metadata, no
scheduler) on a small synthetic chain, the synthetic world answering each wave's export with the CRM's events and the
chain's orders through the inbox, on a clock it moves on a week at a time."""
from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO

from campaign_lab.cli import _params, _parser
from campaign_lab.records import list_runs
from campaign_lab.settings import load_settings
from campaign_lab.variants import load_spec

AIRFLOW = REPO / ".airflow-venv" / "bin"
CLI = str(REPO / ".venv" / "bin" / "campaign-lab")


def _env(home: Path, project: Path, **extra) -> dict:
    "The environment of an Airflow command: its own home and SQLite database, the DAGs of scheduling/, the project's CLI."
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "AIRFLOW"))}
    return env | {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "scheduling"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                  "CAMPAIGN_LAB_ROOT": str(project), "CAMPAIGN_DAG_CLI": CLI} | extra


@pytest.fixture(scope="module")
def airflow():
    "The Airflow venv, built by `make airflow` if missing (a no-op when it is current)."
    subprocess.run(["make", "-s", "airflow"], cwd=REPO, check=True, capture_output=True)
    assert (AIRFLOW / "airflow").exists()
    return AIRFLOW


def _check_cli(command: str, settings_root: Path = REPO):
    "A `campaign-lab` command parses with the CLI's own parser; `run` commands name real pipelines, parameters and values."
    words = shlex.split(command)
    assert Path(words[0]).name == "campaign-lab", command
    args = _parser().parse_args(words[1:])
    settings = load_settings(settings_root, env={})
    if args.command == "run": _params(settings, args)   # raises on an unknown pipeline or parameter, or a value of the wrong type
    if args.command == "run" and args.pipeline == "variants": load_spec(settings_root / args.param[0].split("=", 1)[1])
    return args


@pytest.fixture(scope="module")
def dags(airflow, tmp_path_factory):
    "Both DAGs as real Airflow parses and renders them for the run date 2026-11-02 (pods: with as_of=2026-11-30)."
    home = tmp_path_factory.mktemp("airflow")
    out = home / "dags.json"
    subprocess.run([str(airflow / "airflow"), "db", "migrate"], env=_env(home, REPO), check=True, capture_output=True, timeout=300)
    subprocess.run([str(airflow / "python"), str(REPO / "tests" / "airflow_dump.py"), str(REPO / "scheduling"), "2026-11-02", "2026-11-30", str(out)],
                   env=_env(home, REPO), check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


def _reachable(tasks: dict, start: str) -> set[str]:
    down = {t: {d for d, row in tasks.items() if t in row["upstream"]} for t in tasks}
    seen, todo = set(), [start]
    while todo:
        for d in down[todo.pop()] - seen: seen.add(d); todo.append(d)
    return seen


def test_both_dags_parse_in_real_airflow(dags):
    assert dags["import_errors"] == {}
    assert set(dags["dags"]) == {"campaign_cycle", "campaign_pods"}
    assert all(d["max_active_runs"] == 1 for d in dags["dags"].values())


def test_cycle_dag_runs_valid_commands_in_order_and_waits_with_sensors(dags):
    tasks = dags["dags"]["campaign_cycle"]["tasks"]
    for tid, t in tasks.items():
        for part in t["bash_command"].replace("||", "&&").replace("(", " ").replace(")", " ").split("&&"):
            _check_cli(part.strip())
    assert "as_of=2026-11-02" in tasks["segment_apply"]["bash_command"]          # the run date, rendered
    sensors = {tid for tid, t in tasks.items() if t["type"] == "BashSensor"}
    assert sensors == {f"events{w}_{c}" for w in range(3) for c in ("win_back", "spring_menu")} | {"orders"}
    assert all(tasks[s]["mode"] == "reschedule" and tasks[s]["retry_exit_code"] == 3 for s in sensors)
    order = ["ingest_inbox", "validate", "segmenter", "segment_apply", "variants_win_back", "wave0_win_back", "wave0_spring_menu",
             "export0_spring_menu", "events0_spring_menu", "feedback0_spring_menu", "wave1_win_back", "wave2_spring_menu",
             "feedback2_win_back", "orders", "lift_spring_menu", "alerts"]
    for a, b in zip(order, order[1:]): assert b in _reachable(tasks, a), (a, b)
    assert not _reachable(tasks, "alerts")
    specs = [load_spec(REPO / p) for p in ("campaigns/win_back.yaml", "campaigns/spring.yaml")]
    assert [s.priority for s in specs] == sorted(s.priority for s in specs)   # the DAG's campaign order is the specs' priority order


def test_pod_dag_renders_a_pod_per_step_from_the_image(dags):
    tasks = dags["dags"]["campaign_pods"]["tasks"]
    assert set(tasks) >= {"ingest_inbox", "validate", "segment_apply", "wave0_win_back", "events2_spring_menu", "orders", "lift_win_back", "alerts"}
    known = set(load_settings(REPO, env={}).__dataclass_fields__)
    for tid, t in tasks.items():
        assert t["type"] == "KubernetesPodOperator", tid
        pod = t["pod"]
        (c,) = pod["spec"]["containers"]
        assert c["image"] == "campaign-lab:latest" and c["command"] == ["campaign-lab"], tid
        args = _check_cli(shlex.join(["campaign-lab", *c["args"]]))   # the CLI's own parser takes the pod's arguments
        assert args.root == "/project"
        env = {e["name"]: e for e in c["env"]}
        for name in env:   # settings as environment variables: each one a settings key the project knows
            if name.startswith("CAMPAIGN_LAB_") and name != "CAMPAIGN_LAB_ROOT": assert name[13:].lower() in known, name
        assert load_settings(REPO, env={k: e["value"] for k, e in env.items() if "value" in e and k != "CAMPAIGN_LAB_ROOT"}).seed == 11
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"key": "mlflow_password", "name": "campaign-lab"}
        assert c["volumeMounts"] == [{"mountPath": "/project", "name": "project"}]
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "campaign-lab-project"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and pod["metadata"]["namespace"] == "campaign-lab"
        assert pod["spec"]["restartPolicy"] == "Never"
    assert "as_of=2026-11-30" in tasks["segment_apply"]["pod"]["spec"]["containers"][0]["args"]   # the run date as a DAG param
    assert tasks["wave0_win_back"]["retries"] == 2 and tasks["events0_win_back"]["retries"] > 100   # waiting steps retry for days
    order = ["ingest_inbox", "segment_apply", "wave0_win_back", "export0_win_back", "events0_win_back", "feedback0_win_back",
             "wave1_win_back", "orders", "lift_spring_menu", "programme", "alerts"]
    for a, b in zip(order, order[1:]): assert b in _reachable(tasks, a), (a, b)


def _answer_waves(project: Path, clock: Path, campaigns: list[str], waves: int, proc: subprocess.Popen, window_days: int = 28) -> list[str]:
    """The outside world while the DAG runs: when every campaign has exported wave w, the synthetic CRM and chain answer
    (events, orders, consent) up to a week later (after the last wave: past the lift window), and the clock moves there."""
    from campaign_lab.export import MANIFEST
    from campaign_lab.world import answer, load_world
    said, answered = [], 0
    while proc.poll() is None:
        if answered < waves and all(list((project / "outbox" / c / f"wave{answered}").glob(f"*/{MANIFEST}")) for c in campaigns):
            now = dt.datetime.fromisoformat(clock.read_text().strip())
            until = now + dt.timedelta(days=7 if answered < waves - 1 else window_days + 1)
            got = answer(load_world(project / "world", project / "inbox"), project / "outbox", until=until)
            clock.write_text(until.isoformat())
            said.append(f"wave {answered}: {len(got.events)} events file(s), orders {got.orders.name if got.orders else None}, clock {until}")
            answered += 1
        time.sleep(0.5)
    return said


@pytest.mark.slow
def test_cycle_dag_end_to_end_with_airflow_dags_test(airflow, project, tmp_path):
    from campaign_lab.world import CURRENTS_MAPPING, create_world
    world = create_world(project / "world", project / "inbox", n_customers=3000, seed=11)
    (project / "inbox" / "events").mkdir(parents=True, exist_ok=True)
    (project / "inbox" / "events" / "mapping.yaml").write_text(CURRENTS_MAPPING)
    clock = tmp_path / "clock"
    clock.write_text((dt.datetime.fromisoformat(world.state["generated_until"]) + dt.timedelta(hours=29)).isoformat())
    waves, campaigns = 2, ["win_back", "spring_menu"]
    home = tmp_path / "airflow"
    env = _env(home, project, CAMPAIGN_DAG_WAVES=str(waves), CAMPAIGN_DAG_POKE_SECONDS="1", CAMPAIGN_LAB_CLOCK=f"@{clock}",
               CAMPAIGN_LAB_PROGRAMME_HOLDOUT="0.05")
    subprocess.run([str(airflow / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    log = tmp_path / "dags_test.log"
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([str(airflow / "airflow"), "dags", "test", "campaign_cycle", "2026-11-02"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        said = _answer_waves(project, clock, campaigns, waves, proc)
        proc.wait(timeout=1800)
    finally:
        if proc.poll() is None: proc.kill()
    took = time.monotonic() - t0
    print(f"airflow dags test campaign_cycle: {took:.0f} s; the world answered: {said}")
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert len(said) == waves
    # every task of the DAG run succeeded, as Airflow's own metadata database records it
    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("select task_id, state from task_instance where dag_id = 'campaign_cycle'").fetchall())
        (run_state,) = db.execute("select state from dag_run where dag_id = 'campaign_cycle'").fetchone()
    assert run_state == "success"
    expected = {"ingest_inbox", "validate", "segmenter", "segment_apply", "orders", "programme", "alerts"} | {f"variants_{c}" for c in campaigns} | \
        {f"{k}{w}_{c}" for k in ("wave", "export", "events", "feedback") for w in range(waves) for c in campaigns} | {f"lift_{c}" for c in campaigns}
    assert set(states) == expected and set(states.values()) == {"success"}, {t: s for t, s in states.items() if s != "success"}
    # the cycle's runs, each a reviewed run folder, and the index
    runs = list_runs(project / "runs")
    assert all(r.ok for r in runs), [(r.run_id, r.status) for r in runs if not r.ok]
    by = {}
    for r in runs: by.setdefault(r.pipeline, []).append(r)
    assert {p: len(by.get(p, [])) for p in ("validate", "segment_fit", "segment_apply", "variants", "wave", "export", "feedback", "lift", "programme")} == \
        {"validate": 1, "segment_fit": 1, "segment_apply": 1, "variants": 2, "wave": 4, "export": 4, "feedback": 4, "lift": 2, "programme": 1}
    assert len(by["ingest"]) >= 3          # the first exports (customers, a year of orders), then what the world sent after the waves
    assert {(r.parameters["campaign_id"], r.parameters["wave"]) for r in by["feedback"]} == {(c, w) for c in campaigns for w in range(waves)}
    for r in runs: assert (project / "runs" / r.run_id / "report.html").is_file()
    index = (project / "runs" / "index.html").read_text()
    assert all(r.run_id in index for r in by["lift"] + by["wave"])
    lift = by["lift"][0]
    assert lift.metrics["verdict"] in ("ship", "keep running", "stop") and len(lift.metrics["spend_rel_ci"]) == 2
