"""Markup in data is shown, never run: every path by which outside text reaches a report, checked in headless Chromium.

The paths: an events file's event ids (the feedback report's contract-failure examples), a campaign spec's brand in
subjects and preheaders (the variants, wave and lift reports' tables), a `-p` parameter value (every report's
Parameters table, and the error text of a failed run), and a folder passed as `--events-dir` (the cycle's report).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess

import polars as pl
import pytest

from campaign_lab.execute import execute
from campaign_lab.lake import EVENT_TYPES, read_table
from campaign_lab.registry import promote
from conftest import BIN, cli_env
from test_browser import CHROMIUM, browse

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it when run as root)"),
              pytest.mark.slow]   # ten pipeline runs and a cycle: about a minute, in make test-slow

PAYLOAD = "<img src=x onerror=document.title=7>"   # short: subjects are at most 78 characters
SCRIPT = "<script>document.title=7</script>"


def injected(dom: str) -> list[str]:
    "What shows that markup ran or became an element, in a dumped DOM."
    found = []
    if re.search(r"<title>\s*7\s*</title>", dom): found.append("a script ran (the title changed)")
    if re.search(r"<img[^>]+src=\"x\"", dom): found.append("an injected <img> element")
    if re.search(r"<script>document\.title", dom): found.append("an injected <script> element")
    if "&amp;lt;" in dom or "&amp;#x27;" in dom: found.append("text escaped twice")
    return found


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    "A project whose campaign, events, parameters and folder names carry markup, and the reports made from them."
    from conftest import REPO, SETTINGS
    root = tmp_path_factory.mktemp("hostile")
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    (root / "campaigns").mkdir()
    spec = (REPO / "campaigns" / "spring.yaml").read_text()
    spec = (spec.replace("campaign_id: spring_menu", "campaign_id: marked_up").replace("brand: Bella Cucina", f"brand: {json.dumps(PAYLOAD)}")
            .replace("subject_max_chars: 60", "subject_max_chars: 78").replace("preheader_max_chars: 110", "preheader_max_chars: 300"))
    (root / "campaigns" / "marked_up.yaml").write_text(spec)
    from conftest import clock, world_answers
    t0 = dt.datetime(2026, 11, 2, 9)          # a pinned clock: the wave, then the orders of its whole lift window
    with clock(t0):
        runs = [execute("synth", {"n_customers": 2000, "seed": 1}, root=root), execute("segment_fit", {"sample": 2000}, root=root)]
        promote(root / "runs", "segmenter", runs[-1].run_id)
        runs += [execute("segment_apply", root=root), execute("variants", {"spec": "campaigns/marked_up.yaml"}, root=root),
                 execute("wave", {"campaign_id": "marked_up", "wave": 0}, root=root)]
    assert [r.status for r in runs] == ["succeeded"] * 5, [(r.run_id, r.status) for r in runs]
    sent = read_table(root / "lake", "assignments").filter(arm="treatment")
    events = sent.select(event_id=pl.lit(PAYLOAD) + pl.col("customer_id").cast(pl.String), campaign_id="campaign_id", wave="wave",
                         customer_id=pl.col("customer_id") + 10**9,   # customers nobody assigned: the contract fails and shows examples
                         variant_id="variant_id", event_type=pl.lit("send").cast(pl.Enum(EVENT_TYPES)), revenue=pl.lit(0.0),
                         occurred_at="assigned_at")
    events.write_parquet(root / "events.parquet")
    fb = execute("feedback", {"campaign_id": "marked_up", "wave": 0, "events_path": "events.parquet"}, root=root)
    assert fb.status == "failed"
    done = t0 + dt.timedelta(days=29)
    orders = world_answers(root, done).orders
    with clock(done):
        assert execute("ingest", {"table": "transactions", "paths": [str(orders)]}, root=root).ok
        lift = execute("lift", {"campaign_id": "marked_up"}, root=root)
    assert lift.ok, lift.manifest["error"]
    runs += [fb, lift]
    bad_param = execute("validate", {"tables": SCRIPT}, root=root)
    assert bad_param.status == "failed"
    runs.append(bad_param)
    inbox = PAYLOAD
    (root / inbox).mkdir()
    cycle = subprocess.run([str(BIN / "campaign-lab"), "cycle", "--campaign", "campaigns/marked_up.yaml", "--waves", "1",
                            "--inbox", inbox], capture_output=True, text=True, env=cli_env(root), timeout=900)
    assert cycle.returncode == 3, cycle.stdout[-2000:] + cycle.stderr[-2000:]    # waiting for wave 0's events in the inbox
    return root, runs


def test_markup_in_events_specs_parameters_and_folders_never_runs_in_any_report(hostile):
    root, runs = hostile
    pages = sorted((root / "runs").glob("*/report.html")) + [root / "runs" / "index.html"]
    assert len(pages) >= len(runs) + 1
    seen = {}
    for page in pages:
        source = page.read_text()
        dom = browse(page, "--dump-dom")
        assert dom.returncode == 0, (page, dom.stderr[-1000:])
        assert injected(dom.stdout) == [], (page.parent.name, injected(dom.stdout))
        seen[page.parent.name] = source
    text = "\n".join(seen.values())
    # the markup is there, as text people can read, on every path
    feedback = next(s for n, s in seen.items() if "_feedback_" in n)
    assert "&lt;img src=x onerror=" in feedback                            # the failing events' ids, among the examples
    assert any("&lt;img src=x" in s for n, s in seen.items() if "_variants_" in n)   # subjects with the brand
    assert any("&lt;img src=x" in s for n, s in seen.items() if "_lift_" in n)
    validate = next(s for n, s in seen.items() if "_validate_" in n and "&lt;script&gt;" in s)
    assert "unknown table(s) &lt;script&gt;" in validate                  # the error text, escaped once
    cycle = next(s for n, s in seen.items() if "_cycle_" in n)
    assert "&lt;img src=x onerror=document.title=7&gt;" in cycle
    assert "&amp;#x27;" not in text
