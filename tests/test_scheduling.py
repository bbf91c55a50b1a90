"""The crontab example: every line is a valid `campaign-lab cycle` call (the Airflow DAGs are checked under real Airflow
in tests/test_airflow.py)."""
from __future__ import annotations

import re

from conftest import REPO
from test_airflow import _check_cli


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
        for spec in args.campaign: assert (REPO / spec).is_file()
