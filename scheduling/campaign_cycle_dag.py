"""Example Airflow DAG: the campaign cycle as one task per step, each a reviewed campaign_lab run through the CLI.

Copy this file into the DAGs folder of an Airflow deployment whose workers have campaign_lab installed and can reach
the project (settings.ini, lake, runs, inbox, outbox). Set CAMPAIGN_LAB_ROOT (or edit ROOT below). Airflow itself lives
in its own virtual environment (`make airflow` builds one): the tasks call the project's `campaign-lab` command
(CAMPAIGN_DAG_CLI, default the project's .venv/bin/campaign-lab), so Airflow's pins never meet the project's.
Tested for real with Airflow 3 (`airflow dags test`, tests/test_airflow.py).

- Every task is one CLI call: exit 0 succeeded, 1 the run failed (its report in runs/ says why), 2 bad parameters or
  settings (nothing ran). A non-zero exit fails the task, and Airflow's retries are safe: an ingested file is not
  ingested twice, a wave is never reassigned, its send files are written once, its events are never counted twice.
- The outside world is waited for by sensors, in reschedule mode (no worker slot is held while waiting): after each
  wave's export, for the CRM's events file (`campaign-lab ready events`); before the lifts, for the chain's orders to
  cover every campaign's lift window (`campaign-lab ready orders --ingest`: on each look it ingests what has arrived).
  Exit 3 means "not yet, look again"; any other non-zero exit fails the sensor. One DAG run is one campaign period.
- Parameters per run date: segment features are computed as of the DAG run's logical date ({{ ds }}).
- The first run of a new project fits a segmenter and promotes it as champion; later runs apply the champion
  (promote a refit by hand, or from a review DAG, with `campaign-lab promote segmenter RUN_ID`).
- Campaigns run in priority order inside each wave (the first campaign's customers are skipped by the next), then
  every campaign's export, events and feedback, as `campaign-lab cycle` does.
- The alerts task fails the DAG run when a blocking alert is raised (`campaign-lab alerts` exits 1).

The simplest alternative is one task running the whole chain, resumable on retry (exit 3 while it waits):
    campaign-lab cycle --campaign campaigns/win_back.yaml --campaign campaigns/spring.yaml --waves 3 --as-of {{ ds }}
"""
from __future__ import annotations

import configparser
import os
from datetime import datetime, timedelta
from pathlib import Path

try:  # Airflow 3: the task SDK and the standard provider
    from airflow.sdk import DAG
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.sensors.bash import BashSensor
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.sensors.bash import BashSensor

ROOT = os.environ.get("CAMPAIGN_LAB_ROOT", "/srv/campaign_lab")
CLI = f"{os.environ.get('CAMPAIGN_DAG_CLI', f'{ROOT}/.venv/bin/campaign-lab')} --root {ROOT}"
INBOX = f"{ROOT}/inbox"            # the inbox_dir setting's default
# (campaign id, spec file) in priority order: the spec's `priority` decides, lower first
CAMPAIGNS = [("win_back", "campaigns/win_back.yaml"), ("spring_menu", "campaigns/spring.yaml")]
WAVES = int(os.environ.get("CAMPAIGN_DAG_WAVES", "3"))
POKE_SECONDS = float(os.environ.get("CAMPAIGN_DAG_POKE_SECONDS", "1800"))   # how often a sensor looks again
WAIT = timedelta(days=21)          # a sensor gives up (fails) after this long


def _programme() -> bool:
    "The programme's lift runs when the project keeps a programme holdout (setting programme_holdout, or its environment override)."
    share = os.environ.get("CAMPAIGN_LAB_PROGRAMME_HOLDOUT")
    if share is None:
        ini = configparser.ConfigParser()
        ini.read(Path(ROOT) / "settings.ini")
        share = ini.get("campaign_lab", "programme_holdout", fallback="0")
    return float(share) > 0


def _sensor(task_id: str, command: str) -> BashSensor:
    return BashSensor(task_id=task_id, bash_command=command, retry_exit_code=3, mode="reschedule",
                      poke_interval=POKE_SECONDS, timeout=WAIT.total_seconds())


with DAG(
    dag_id="campaign_cycle",
    description="ingest -> validate -> segments -> variants -> waves, exports, the CRM's events and feedback -> the orders -> lift",
    schedule=None,  # one DAG run is one campaign period (its waves a week apart, then the lift): trigger it, or set the period's schedule
    start_date=datetime(2026, 11, 2),
    catchup=False,
    max_active_runs=1,  # one cycle at a time: waves must not interleave
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["campaign_lab"],
) as dag:
    ingest = BashOperator(task_id="ingest_inbox", bash_command=f"{CLI} ingest-inbox")
    validate = BashOperator(task_id="validate", bash_command=f"{CLI} run validate -p tables=customers,transactions")
    segmenter = BashOperator(task_id="segmenter", bash_command=(
        f"{CLI} ready segmenter || ({CLI} run segment_fit -p as_of={{{{ ds }}}} && "
        f"{CLI} promote segmenter latest --note 'first segmenter, fitted by Airflow run {{{{ run_id }}}}')"))
    segments = BashOperator(task_id="segment_apply", bash_command=f"{CLI} run segment_apply -p as_of={{{{ ds }}}}")
    ingest >> validate >> segmenter >> segments
    variants = [BashOperator(task_id=f"variants_{c}", bash_command=f"{CLI} run variants -p spec={spec}") for c, spec in CAMPAIGNS]
    for t in variants: segments >> t
    previous = variants
    for w in range(WAVES):
        waves = []
        for c, _ in CAMPAIGNS:  # priority order, one after the other
            t = BashOperator(task_id=f"wave{w}_{c}", bash_command=f"{CLI} run wave -p campaign_id={c} -p wave={w}")
            for p in (waves[-1:] or previous): p >> t
            waves.append(t)
        previous = []
        for c, _ in CAMPAIGNS:
            export = BashOperator(task_id=f"export{w}_{c}", bash_command=f"{CLI} export {c} {w}")
            events = _sensor(f"events{w}_{c}", f"{CLI} ready events {c} {w}")
            feedback = BashOperator(task_id=f"feedback{w}_{c}", bash_command=(
                f"{CLI} run feedback -p campaign_id={c} -p wave={w} "
                f"-p events_path={INBOX}/events/{c}_wave{w}.parquet -p mapping={INBOX}/events/mapping.yaml"))
            waves[-1] >> export >> events >> feedback
            previous.append(feedback)
    # one sensor for the orders: it ingests what the chain has dropped into the inbox, then checks every campaign's window
    orders = _sensor("orders", f"{CLI} ready orders {','.join(c for c, _ in CAMPAIGNS)} {WAVES - 1} --ingest")
    for p in previous: p >> orders
    lifts = [BashOperator(task_id=f"lift_{c}", bash_command=f"{CLI} run lift -p campaign_id={c} -p wave={WAVES - 1}") for c, _ in CAMPAIGNS]
    for t in lifts: orders >> t
    alerts = BashOperator(task_id="alerts", bash_command=f"{CLI} alerts")
    if _programme():
        programme = BashOperator(task_id="programme", bash_command=f"{CLI} run programme")
        for t in lifts: t >> programme
        lifts = [programme]
    for t in lifts: t >> alerts
