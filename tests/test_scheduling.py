"""The scheduling examples: the Airflow DAG (imported with a stand-in for Airflow, which is not installed
here) and the crontab lines. Every command they run must be one the CLI accepts, naming pipelines,
parameters and campaign specs that exist, in the order the cycle runs them."""
from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import types

import pytest

from conftest import REPO

from campaign_lab.cli import _params, _parser
from campaign_lab.settings import load_settings
from campaign_lab.variants import load_spec


class _Task:
    def __init__(self, task_id, bash_command, dag):
        self.task_id, self.bash_command, self.downstream = task_id, bash_command, set()
        dag.tasks[task_id] = self

    def __rshift__(self, other):
        self.downstream.add(other.task_id)
        return other


class _DAG:
    current = None

    def __init__(self, dag_id, **kwargs):
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, {}

    def __enter__(self):
        _DAG.current = self
        return self

    def __exit__(self, *exc):
        _DAG.current = None


def _bash_operator(task_id, bash_command, **kwargs):
    return _Task(task_id, bash_command, _DAG.current)


@pytest.fixture
def dag(monkeypatch):
    "The example DAG, imported against stand-in airflow modules (Airflow 3 layout)."
    airflow = types.ModuleType("airflow"); airflow.DAG = _DAG
    bash = types.ModuleType("airflow.providers.standard.operators.bash"); bash.BashOperator = _bash_operator
    for name in ("airflow.providers", "airflow.providers.standard", "airflow.providers.standard.operators"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "airflow", airflow)
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.operators.bash", bash)
    monkeypatch.setenv("CAMPAIGN_LAB_ROOT", str(REPO))
    spec = importlib.util.spec_from_file_location("campaign_cycle_dag", REPO / "scheduling" / "campaign_cycle_dag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_cli(command: str):
    "The command parses with the campaign-lab parser; `run` commands name real pipelines and parameters."
    words = shlex.split(command.replace("{{ ds }}", "2026-11-30"))
    assert words[0].endswith("campaign-lab"), command
    args = _parser().parse_args(words[1:])
    settings = load_settings(REPO, env={})
    if args.command == "run":
        _params(settings, args)   # raises on an unknown pipeline or parameter, or a value of the wrong type
    if args.command == "cycle":
        for spec in args.campaign: load_spec(REPO / spec)
    return args


def _reachable(dag, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        t = todo.pop()
        for d in dag.tasks[t].downstream - seen: seen.add(d); todo.append(d)
    return seen


def test_airflow_dag_runs_the_cycle_in_order_with_valid_commands(dag):
    d = dag.dag
    assert d.dag_id == "campaign_cycle" and d.kwargs["max_active_runs"] == 1
    for task in d.tasks.values(): _check_cli(task.bash_command)
    # campaigns are listed in the specs' priority order, with the specs' ids
    specs = [load_spec(REPO / path) for _, path in dag.CAMPAIGNS]
    assert [s.campaign_id for s in specs] == [c for c, _ in dag.CAMPAIGNS]
    assert [s.priority for s in specs] == sorted(s.priority for s in specs)
    first, second = (c for c, _ in dag.CAMPAIGNS)
    order = ["validate", "segment_apply", f"variants_{first}", f"wave0_{first}", f"wave0_{second}", f"export0_{second}", f"feedback0_{second}",
             f"wave1_{first}", f"wave{dag.WAVES - 1}_{second}", f"feedback{dag.WAVES - 1}_{first}", f"lift_{second}", "alerts"]
    for a, b in zip(order, order[1:]):
        assert b in _reachable(d, a), (a, b)
    assert "as_of={{ ds }}" in d.tasks["segment_apply"].bash_command      # parameters per run date
    assert not _reachable(d, "alerts")                                    # the alerts check is last


def test_crontab_lines_are_valid_cycle_commands():
    lines = [l for l in (REPO / "scheduling" / "crontab.example").read_text().splitlines() if l and not l.startswith("#") and "=" not in l.split()[0]]
    assert len(lines) == 2
    for line in lines:
        fields = line.split(None, 5)
        assert len(fields) == 6 and all(re.fullmatch(r"[\d*,/-]+", f) for f in fields[:5]), line
        command = fields[5].split(".venv/bin/", 1)[1].split(">>")[0]
        assert "\\%F" in command                                           # cron's % is escaped
        args = _check_cli("campaign-lab " + command.split(None, 1)[1].replace("$(date +\\%F)", "2026-11-30"))
        assert args.command == "cycle" and args.as_of == "2026-11-30" and len(args.campaign) == 2
