"""Example Airflow DAG: the campaign cycle with one Kubernetes pod per step, from the project's container image.

This is the case study's layout: each step runs as a pod launched by Airflow's KubernetesPodOperator (the
apache-airflow-providers-cncf-kubernetes provider), from the image the project's Dockerfile builds. The steps and
their order are those of campaign_cycle_dag.py; only the way a step runs differs.

- The image: CAMPAIGN_DAG_IMAGE (default campaign-lab:latest). Its entry point is the `campaign-lab` command, so a
  pod's arguments are a CLI call, checked against the CLI's own parser in tests/test_airflow.py.
- The project (settings.ini, lake, runs, inbox, outbox) is a shared volume, a PersistentVolumeClaim
  (CAMPAIGN_DAG_PVC, default campaign-lab-project) mounted at /project in every pod: the lake's versions are
  claimed with atomic links and committed under a flock, so it must be a file system that honours both (NFS v4 with
  locking, or a ReadWriteMany volume that does; see the README's Spark section on object stores).
- Settings come as environment variables: every CAMPAIGN_LAB_* key overrides settings.ini (the seed, the
  programme holdout, the export formats, the MLflow tracking URI). Secrets come from the Kubernetes secret
  `campaign-lab` (CAMPAIGN_DAG_SECRET): the MLflow tracking server's credentials, as environment variables.
- Retries and the run date are parameters: RETRIES (CAMPAIGN_DAG_RETRIES, default 2) for a failed step, and the DAG's
  `as_of` param (default the run's logical date, {{ ds }}), so a run for another date is
  `airflow dags trigger campaign_pods -c '{"as_of": "2026-11-30"}'`.
- A new project fits its first segmenter and promotes it before the first run, as a reviewed step
  (`campaign-lab run segment_fit`, then `campaign-lab promote segmenter latest`); the DAG applies the champion.
- Waiting for the outside world (the CRM's events, the chain's orders) is a pod too: `campaign-lab ready ...` exits
  3 while what it waits for has not arrived, and the step is retried after `retry_delay`. A sensor in reschedule
  mode would look again without a pod; with pods, the retries bound the wait (RETRIES_WAITING).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

try:  # Airflow 3: the task SDK
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param

IMAGE = os.environ.get("CAMPAIGN_DAG_IMAGE", "campaign-lab:latest")
NAMESPACE = os.environ.get("CAMPAIGN_DAG_NAMESPACE", "campaign-lab")
PVC = os.environ.get("CAMPAIGN_DAG_PVC", "campaign-lab-project")
SECRET = os.environ.get("CAMPAIGN_DAG_SECRET", "campaign-lab")
ROOT = "/project"                  # where the project volume is mounted in every pod
CAMPAIGNS = [("win_back", "campaigns/win_back.yaml"), ("spring_menu", "campaigns/spring.yaml")]
WAVES = 3
RETRIES = int(os.environ.get("CAMPAIGN_DAG_RETRIES", "2"))   # retries of a step that failed
RETRIES_WAITING = 24 * 7           # a waiting step (exit 3) is looked at again this many times, retry_delay apart
# settings by environment: the keys a deployment usually sets per environment (each overrides settings.ini)
SETTINGS_ENV = {"CAMPAIGN_LAB_SEED": "11", "CAMPAIGN_LAB_EXPORT_FORMATS": "braze-csv", "CAMPAIGN_LAB_PROGRAMME_HOLDOUT": "0.05"}
# secrets from the Kubernetes secret: the MLflow tracking server's credentials (read by the MLflow client, setting mlflow_tracking_uri)
SECRETS = [Secret("env", "MLFLOW_TRACKING_USERNAME", SECRET, "mlflow_username"),
           Secret("env", "MLFLOW_TRACKING_PASSWORD", SECRET, "mlflow_password")]
VOLUME = k8s.V1Volume(name="project", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=PVC))
MOUNT = k8s.V1VolumeMount(name="project", mount_path=ROOT)
RESOURCES = k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "16Gi"})
SECURITY = k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001, fs_group=10001)   # the image's user


def step(task_id: str, *args: str, waits: bool = False) -> KubernetesPodOperator:
    "One step as a pod: `campaign-lab --root /project ARGS...` in the project's image."
    return KubernetesPodOperator(
        task_id=task_id, name=f"campaign-lab-{task_id.replace('_', '-')}", namespace=NAMESPACE, image=IMAGE,
        cmds=["campaign-lab"], arguments=["--root", ROOT, *args],
        env_vars={"CAMPAIGN_LAB_ROOT": ROOT, **SETTINGS_ENV}, secrets=SECRETS,
        volumes=[VOLUME], volume_mounts=[MOUNT], container_resources=RESOURCES, security_context=SECURITY,
        labels={"app": "campaign-lab", "step": task_id.split("_")[0]},
        retries=RETRIES_WAITING if waits else RETRIES, get_logs=True, on_finish_action="delete_pod")


with DAG(
    dag_id="campaign_pods",
    description="the campaign cycle, one pod per step from the campaign_lab image",
    schedule=None,  # one DAG run is one campaign period
    start_date=datetime(2026, 11, 2),
    catchup=False,
    max_active_runs=1,
    params={"as_of": Param("", type="string", description="run date for the segment features (YYYY-MM-DD); empty: the run's logical date")},
    default_args={"retry_delay": timedelta(minutes=10)},
    tags=["campaign_lab", "kubernetes"],
) as dag:
    as_of = "{{ params.as_of or ds }}"
    chain = [step("ingest_inbox", "ingest-inbox"),
             step("validate", "run", "validate", "-p", "tables=customers,transactions"),
             step("segment_apply", "run", "segment_apply", "-p", f"as_of={as_of}")]
    for a, b in zip(chain, chain[1:]): a >> b
    previous = [step(f"variants_{c}", "run", "variants", "-p", f"spec={spec}") for c, spec in CAMPAIGNS]
    for t in previous: chain[-1] >> t
    for w in range(WAVES):
        waves = []
        for c, _ in CAMPAIGNS:
            t = step(f"wave{w}_{c}", "run", "wave", "-p", f"campaign_id={c}", "-p", f"wave={w}")
            for p in (waves[-1:] or previous): p >> t
            waves.append(t)
        previous = []
        for c, _ in CAMPAIGNS:
            export = step(f"export{w}_{c}", "export", c, str(w))
            events = step(f"events{w}_{c}", "ready", "events", c, str(w), waits=True)
            feedback = step(f"feedback{w}_{c}", "run", "feedback", "-p", f"campaign_id={c}", "-p", f"wave={w}",
                            "-p", f"events_path={ROOT}/inbox/events/{c}_wave{w}.parquet", "-p", f"mapping={ROOT}/inbox/events/mapping.yaml")
            waves[-1] >> export >> events >> feedback
            previous.append(feedback)
    # one step for the orders, on each look: ingest what the chain has dropped into the inbox, then check every campaign's window
    orders = step("orders", "ready", "orders", ",".join(c for c, _ in CAMPAIGNS), str(WAVES - 1), "--ingest", waits=True)
    for p in previous: p >> orders
    lifts = [step(f"lift_{c}", "run", "lift", "-p", f"campaign_id={c}", "-p", f"wave={WAVES - 1}") for c, _ in CAMPAIGNS]
    for t in lifts: orders >> t
    programme = step("programme", "run", "programme")
    alerts = step("alerts", "alerts")
    for t in lifts: t >> programme
    programme >> alerts
