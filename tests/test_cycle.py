"The campaign cycle from the CLI: a full run, a rerun whose finished steps are no-ops, a bad spec refused."
import json
import subprocess

from conftest import BIN, cli_env


def cycle(root, *args):
    return subprocess.run([str(BIN / "campaign-lab"), "cycle", *args], capture_output=True, text=True, env=cli_env(root), timeout=900)


def test_cycle_runs_reruns_as_noops_and_refuses_a_bad_spec(project):
    (project / "settings.ini").write_text((project / "settings.ini").read_text().replace("n_customers = 2000", "n_customers = 4000"))
    first = cycle(project, "--campaign", "campaigns/spring.yaml", "--waves", "1")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert "synth" in first.stdout and "promoted the new segmenter as champion" in first.stdout and ": succeeded (" in first.stdout
    parents = sorted((project / "runs").glob("*_cycle_*"))
    m = json.loads((parents[-1] / "manifest.json").read_text())
    assert m["status"] == "succeeded" and [s["pipeline"] for s in m["steps"]][-1] == "lift"
    assert (parents[-1] / "report.html").exists()
    again = cycle(project, "--campaign", "campaigns/spring.yaml", "--waves", "1")
    assert again.returncode == 0 and again.stdout.count("already done") >= 4 and "synth" not in again.stdout
    # a broken spec is refused before any step runs; the next good call finds the work done
    bad = project / "campaigns" / "autumn.yaml"
    text = (project / "campaigns" / "spring.yaml").read_text().replace("campaign_id: spring_menu", "campaign_id: autumn_menu")
    bad.write_text(text.replace("cta: [order, menu]", "cta: []"))
    failed = cycle(project, "--campaign", "campaigns/spring.yaml", "--campaign", "campaigns/autumn.yaml", "--waves", "1")
    assert failed.returncode != 0 and "factors.cta: empty level list" in failed.stderr + failed.stdout
    bad.write_text(text.replace("priority: 1 ", "priority: 2 "))
    resumed = cycle(project, "--campaign", "campaigns/spring.yaml", "--waves", "1")
    assert resumed.returncode == 0 and "already done" in resumed.stdout
