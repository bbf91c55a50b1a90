"Same inputs, seed and clock, same bytes: two projects run the same steps and every lake table has the same fingerprint."
from __future__ import annotations

import shutil

import pytest

from campaign_lab.execute import execute
from campaign_lab.lake import TABLES, table_versions
from campaign_lab.records import CLOCK_ENV
from campaign_lab.registry import promote
from conftest import REPO, SETTINGS

STEPS = [("synth", {"n_customers": 3000}), ("segment_fit", {"sample": 3000}), ("segment_apply", {}),
         ("variants", {"spec": "campaigns/spring.yaml"}), ("wave", {"campaign_id": "spring_menu", "wave": 0}),
         ("feedback", {"campaign_id": "spring_menu", "wave": 0})]


def run_all(root):
    root.mkdir()
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir()
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    for name, params in STEPS:
        r = execute(name, params, root=root)
        assert r.ok, (name, r.manifest.get("error"))
        if name == "segment_fit": promote(root / "runs", "segmenter", r.run_id)
    return {t: table_versions(root / "lake", t)[-1].fingerprint for t in TABLES if table_versions(root / "lake", t)}


@pytest.mark.slow
def test_same_inputs_seed_and_clock_give_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv(CLOCK_ENV, "2026-11-02T09:00:00")
    a, b = run_all(tmp_path / "a"), run_all(tmp_path / "b")
    assert sorted(a) == sorted(b) and {"segments", "segment_profiles", "assignments", "bandit_state", "events"} <= set(a)
    assert {t for t in a if a[t] != b[t]} == set()
