"The monitor reads the project's settings it is given, never the working directory's, and the pipelines' typed metrics."
import json

from campaign_lab.monitor import current_alerts, evaluate_alerts
from campaign_lab.settings import load_settings
from campaign_lab.waves import FeedbackMetrics
from conftest import SETTINGS, REPO


def _project(root, extra=""):
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts") + extra)
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    runs = root / "runs"
    for w, rate in enumerate([0.030, 0.032, 0.012]):
        rid = f"20261101T00000{w}Z_feedback_00000{w}"
        (runs / rid).mkdir(parents=True)
        m = FeedbackMetrics("spring", w, 100, w + 1, 1000, 300, 80, int(rate * 1000), 0.0, rate, "synthetic", "polars").to_json()
        (runs / rid / "manifest.json").write_text(json.dumps({"run_id": rid, "pipeline": "feedback", "status": "succeeded",
            "started_at": f"2026-11-01T00:00:0{w}+00:00", "duration_s": 1.0, "metrics": m, "parameters": {"campaign_id": "spring"}}))
    return load_settings(root, env={})


def test_thresholds_are_the_same_whatever_the_working_directory(tmp_path, monkeypatch):
    lenient = _project(tmp_path / "a")                                   # collapse below 50% of the median: 0.012 < 0.5 * 0.031
    strict = _project(tmp_path / "b", "reward_collapse_ratio = 0.2\n")   # below 20%: no alert
    seen = set()
    for cwd in (tmp_path / "a", tmp_path / "b", tmp_path, REPO):
        monkeypatch.chdir(cwd)
        seen.add((tuple(a.rule for a in evaluate_alerts(lenient)), tuple(a.rule for a in evaluate_alerts(strict))))
    assert seen == {(("reward_collapse",), ())}
    assert [a.scope for a in current_alerts(lenient)] == ["spring"]
