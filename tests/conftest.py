"Shared fixtures: throw-away projects that use the repository's real pipelines."
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SETTINGS = """[campaign_lab]
lake_dir = lake
runs_dir = runs
contracts_dir = {contracts}
pipelines_dir = {pipelines}
seed = 11
kernel_name = python3
holdout_share = 0.1
chain_opened_at = 2019-01-01
n_customers = 2000
cell_timeout = 600
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    "A project root in a temporary folder whose pipelines are the repository's."
    for k in list(os.environ):
        if k.startswith("CAMPAIGN_LAB_"): monkeypatch.delenv(k)
    (tmp_path / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (tmp_path / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    return tmp_path


def free_port() -> int:
    "A free TCP port on loopback, for a server a test starts."
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(root: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_LAB_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if root is not None: env["CAMPAIGN_LAB_ROOT"] = str(root)
    return env


@contextlib.contextmanager
def clock(at):
    "Pin campaign_lab's clock (and every kernel a run starts meanwhile) to `at`: the world's week."
    from campaign_lab.records import CLOCK_ENV
    before = os.environ.get(CLOCK_ENV)
    os.environ[CLOCK_ENV] = at.isoformat()
    try: yield
    finally:
        if before is None: os.environ.pop(CLOCK_ENV, None)
        else: os.environ[CLOCK_ENV] = before


def world_answers(root: Path, until):
    "The synthetic world answers everything exported so far: CRM events, the chain's orders up to `until`, opt-outs."
    from campaign_lab.world import CURRENTS_MAPPING, answer, load_world
    (root / "inbox" / "events").mkdir(parents=True, exist_ok=True)
    (root / "inbox" / "events" / "mapping.yaml").write_text(CURRENTS_MAPPING)
    return answer(load_world(root / "world", root / "inbox"), root / "outbox", until=until)
