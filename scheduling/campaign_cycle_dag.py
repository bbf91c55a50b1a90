"""Example Airflow DAG: the weekly campaign cycle as one task per pipeline run, through the campaign_lab CLI.

Copy this file into the DAGs folder of an Airflow deployment whose workers have campaign_lab installed
and can reach the project (settings.ini, lake, runs). Set CAMPAIGN_LAB_ROOT (or edit ROOT below).

- Every task is `campaign-lab run PIPELINE -p ...`: exit 0 succeeded, 1 the run failed (its report in
  runs/ says why), 2 bad parameters or settings (nothing ran). A non-zero exit fails the task, and
  Airflow's retries are safe: a wave is never reassigned and a wave's events are never counted twice.
- Parameters per run date: segment features are computed as of the DAG run's logical date ({{ ds }}).
- Campaigns run in priority order inside each wave (the first campaign's customers are skipped by
  the next), then every campaign's feedback, as `campaign-lab cycle` does.
- The alerts task fails the DAG run when a blocking alert is raised (`campaign-lab alerts` exits 1).
- Each wave is exported to the outbox for the CRM; feedback reads the events file the CRM drops into
  the inbox (`inbox/events/<campaign>_wave<w>.parquet`, read through `inbox/events/mapping.yaml`). The
  waves are days apart: schedule one wave per DAG run, or put a FileSensor before each feedback task.
  New customer and order exports are ingested first (`campaign-lab ingest TABLE FILE`); a DAG knows
  their names only at run time, which is why `campaign-lab cycle` (below) is the simpler choice: it
  ingests whatever is new in the inbox, stops with exit 3 while a wave's events (or a lift's orders)
  have not arrived, and the next call continues.

The simplest alternative is one task running the whole chain, resumable on retry:
    campaign-lab cycle --campaign campaigns/win_back.yaml --campaign campaigns/spring.yaml --waves 3 --as-of {{ ds }}
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3 moved the bash operator to the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

ROOT = os.environ.get("CAMPAIGN_LAB_ROOT", "/srv/campaign_lab")
CLI = f"campaign-lab --root {ROOT}"
# (campaign id, spec file) in priority order: the spec's `priority` decides, lower first
CAMPAIGNS = [("win_back", "campaigns/win_back.yaml"), ("spring_menu", "campaigns/spring.yaml")]
WAVES = 3

with DAG(
    dag_id="campaign_cycle",
    description="validate -> segment_apply -> variants -> waves, exports and feedback -> lift, each a reviewed campaign_lab run",
    schedule="0 5 * * 1",  # Mondays 05:00
    start_date=datetime(2026, 11, 2),
    catchup=False,
    max_active_runs=1,  # one cycle at a time: waves must not interleave
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["campaign_lab"],
) as dag:
    validate = BashOperator(task_id="validate", bash_command=f"{CLI} run validate -p tables=customers,transactions")
    segments = BashOperator(task_id="segment_apply", bash_command=f"{CLI} run segment_apply -p as_of={{{{ ds }}}}")
    validate >> segments
    previous = [segments]
    variants = [BashOperator(task_id=f"variants_{c}", bash_command=f"{CLI} run variants -p spec={spec}") for c, spec in CAMPAIGNS]
    for t in variants: segments >> t
    previous = variants
    for w in range(WAVES):
        waves = []
        for c, _ in CAMPAIGNS:  # priority order, one after the other
            t = BashOperator(task_id=f"wave{w}_{c}", bash_command=f"{CLI} run wave -p campaign_id={c} -p wave={w}")
            for p in (waves[-1:] or previous): p >> t
            waves.append(t)
        exports = [BashOperator(task_id=f"export{w}_{c}", bash_command=f"{CLI} export {c} {w}") for c, _ in CAMPAIGNS]
        for t in exports: waves[-1] >> t
        feedback = [BashOperator(task_id=f"feedback{w}_{c}", bash_command=f"{CLI} run feedback -p campaign_id={c} -p wave={w} "
                                 f"-p events_path={ROOT}/inbox/events/{c}_wave{w}.parquet -p mapping={ROOT}/inbox/events/mapping.yaml")
                    for c, _ in CAMPAIGNS]
        for e, t in zip(exports, feedback): e >> t
        previous = feedback
    lifts = [BashOperator(task_id=f"lift_{c}", bash_command=f"{CLI} run lift -p campaign_id={c}") for c, _ in CAMPAIGNS]
    alerts = BashOperator(task_id="alerts", bash_command=f"{CLI} alerts")
    for t in lifts:
        for p in previous: p >> t
        t >> alerts
