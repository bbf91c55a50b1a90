"Reports and the run index in a real headless browser, offline; screenshots land in test-artifacts/."
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from campaign_lab.execute import execute
from conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it when run as root)")
ARTEFACTS = REPO / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND"]   # no network at all


def browse(page: Path, *extra) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                              capture_output=True, text=True, timeout=120)


def test_index_and_reports_render_offline(project):
    runs = [execute("synth", {"n_customers": 2000, "seed": 1}, root=project), execute("validate", root=project),
            execute("synth", {"n_customers": 0}, root=project)]                       # a failed run too
    assert [r.status for r in runs] == ["succeeded", "succeeded", "failed"]
    ARTEFACTS.mkdir(exist_ok=True)
    pages = {"index": project / "runs" / "index.html", **{f"{r.manifest['pipeline']}-{r.status}": r.run_dir / "report.html" for r in runs}}
    for name, page in pages.items():
        html = page.read_text()
        assert not re.search(r'<script[^>]+src="https?://', html) and not re.search(r'<link[^>]+href="https?://', html), name
        dom = browse(page, "--dump-dom")
        assert dom.returncode == 0, (name, dom.stderr[-2000:])
        assert "Error loading script" not in dom.stdout
        shot = ARTEFACTS / f"{name}.png"
        r = browse(page, f"--screenshot={shot}", "--window-size=1200,1600")
        assert r.returncode == 0 and shot.stat().st_size > 10_000, name
    index_dom = browse(pages["index"], "--dump-dom").stdout
    for r in runs: assert r.run_id in index_dom
    assert "synth run: SUCCEEDED" in browse(pages["synth-succeeded"], "--dump-dom").stdout
    assert "The run failed" in browse(pages["synth-failed"], "--dump-dom").stdout
