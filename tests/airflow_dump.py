"""Run by the Airflow virtual environment's python (tests/test_airflow.py): parse the DAGs in scheduling/ with real
Airflow, render every task's templates for a run date, build every KubernetesPodOperator's pod specification (no
cluster is needed for that), and write it all as JSON for the test to check with the project's own CLI parser."""
from __future__ import annotations

import json
import sys

from airflow.models.dagbag import DagBag


def _render(task, ds: str, params: dict) -> None:
    context = {"ds": ds, "ds_nodash": ds.replace("-", ""), "run_id": f"manual__{ds}T05:00:00+00:00", "params": params}
    task.render_template_fields(context)


def main(folder: str, ds: str, as_of: str) -> dict:
    bag = DagBag(folder)
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id in sorted(bag.dag_ids):
        dag = bag.get_dag(dag_id)
        tasks = {}
        for task in dag.tasks:
            row = {"type": type(task).__name__, "upstream": sorted(task.upstream_task_ids), "retries": task.retries}
            if hasattr(task, "bash_command"):
                _render(task, ds, {})
                row |= {"bash_command": task.bash_command, "mode": getattr(task, "mode", None),
                        "retry_exit_code": getattr(task, "retry_exit_code", None)}
            if type(task).__name__ == "KubernetesPodOperator":
                from kubernetes.client import ApiClient
                _render(task, ds, {"as_of": as_of})
                row["pod"] = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(dry_run=True))
            tasks[task.task_id] = row
        out["dags"][dag_id] = {"schedule": str(getattr(dag, "schedule", None)), "max_active_runs": dag.max_active_runs,
                               "params": {k: dag.params[k] for k in dag.params}, "tasks": tasks}
    return out


if __name__ == "__main__":   # FOLDER DS AS_OF OUT (Airflow logs to stdout: the JSON goes to a file)
    with open(sys.argv[4], "w") as f: json.dump(main(*sys.argv[1:4]), f, default=str)
