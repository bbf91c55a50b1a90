"Same inputs, seed and clock, same bytes: two projects run the same steps and every lake table has the same fingerprint."
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from campaign_lab.execute import execute
from campaign_lab.lake import TABLES, table_versions
from campaign_lab.records import CLOCK_ENV
from campaign_lab.registry import promote
from conftest import REPO, SETTINGS, clock, world_answers

STEPS = [("synth", {"n_customers": 3000}), ("segment_fit", {"sample": 3000}), ("segment_apply", {}),
         ("variants", {"spec": "campaigns/spring.yaml"}), ("wave", {"campaign_id": "spring_menu", "wave": 0}),
         ("export", {"campaign_id": "spring_menu", "wave": 0})]
SENT, ANSWERED = dt.datetime(2026, 11, 2, 9), dt.datetime(2026, 11, 9, 9)   # a pinned clock: the wave, then the world's answer


def run_all(root):
    root.mkdir()
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir()
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    for name, params in STEPS:
        r = execute(name, params, root=root)
        assert r.ok, (name, r.manifest.get("error"))
        if name == "segment_fit": promote(root / "runs", "segmenter", r.run_id)
    got = world_answers(root, ANSWERED)               # the CRM's events and the chain's week of orders, as files
    with clock(ANSWERED):
        box = root / "inbox" / "events"
        for name, params in (("ingest", {"table": "transactions", "paths": [str(got.orders)]}),
                             ("feedback", {"campaign_id": "spring_menu", "wave": 0, "events_path": str(box / "spring_menu_wave0.parquet"),
                                           "mapping": str(box / "mapping.yaml")})):
            r = execute(name, params, root=root)
            assert r.ok, (name, r.manifest.get("error"))
    return {t: table_versions(root / "lake", t)[-1].fingerprint for t in TABLES if table_versions(root / "lake", t)}


@pytest.mark.slow
def test_same_inputs_seed_and_clock_give_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv(CLOCK_ENV, SENT.isoformat())
    a, b = run_all(tmp_path / "a"), run_all(tmp_path / "b")
    assert sorted(a) == sorted(b) and {"segments", "segment_profiles", "assignments", "bandit_state", "events", "transactions"} <= set(a)
    assert {t for t in a if a[t] != b[t]} == set()
