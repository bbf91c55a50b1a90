"The campaign-lab command and plain papermill, as a scheduler calls them."
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from campaign_lab.lake import read_table, table_versions
from conftest import BIN, REPO, cli_env


def cl(*args, root=None, cwd=None):
    return subprocess.run([str(BIN / "campaign-lab"), *args], capture_output=True, text=True, env=cli_env(root),
                          cwd=cwd, timeout=600)


def test_run_list_show_lake_end_to_end(project):
    pf = project / "p.yaml"
    pf.write_text(yaml.safe_dump({"n_customers": 2500, "seed": 3}))
    r = cl("run", "synth", "-f", str(pf), "-p", "seed=4", root=project)
    assert r.returncode == 0, r.stderr
    assert "succeeded" in r.stdout and "report: " in r.stdout and "wrote transactions v1" in r.stdout
    assert "WARNING" not in r.stderr and "without encryption" not in r.stderr, r.stderr   # the kernel talks over IPC, quietly
    report = r.stdout.split("report: ")[1].split()[0]
    manifest = json.loads(open(report.replace("report.html", "manifest.json")).read())
    assert manifest["parameters"]["n_customers"] == 2500 and manifest["seed"] == 4   # -p wins over -f
    run_id = manifest["run_id"]
    r = cl("runs", "list", root=project)
    assert r.returncode == 0 and run_id in r.stdout and "n_customers=2500" in r.stdout
    r = cl("runs", "show", run_id[-6:], root=project)
    assert r.returncode == 0 and json.loads(r.stdout)["run_id"] == run_id
    r = cl("lake", root=project)
    assert r.returncode == 0 and "customers: One row per customer" in r.stdout and f"by run {run_id}" in r.stdout
    r = cl("pipelines", root=project)
    assert r.returncode == 0 and "n_customers: int = 200000  # customers to draw" in r.stdout
    assert "project_root" not in r.stdout


def test_root_found_from_working_directory(project):
    sub = project / "somewhere" / "deeper"; sub.mkdir(parents=True)
    r = cl("pipelines", cwd=sub)
    assert r.returncode == 0 and "synth" in r.stdout


def test_failed_pipeline_exits_1_and_keeps_report(project):
    r = cl("run", "synth", "-p", "n_customers=0", root=project)
    assert r.returncode == 1
    assert "failed" in r.stdout and "ValueError" in r.stdout
    report = r.stdout.split("report: ")[1].split()[0]
    assert "The run failed" in open(report).read()


def test_bad_usage_exits_2_with_what_to_fix(project):
    cases = [(["run", "synth", "-p", "n_customer=5"], "has no parameter 'n_customer' (it takes: "),
             (["run", "synth", "-p", "n_customers=many"], "parameter 'n_customers' must be int"),
             (["run", "synth", "-p", "n_customers"], "-p takes KEY=VALUE"),
             (["run", "nope"], "no pipeline 'nope'"),
             (["run", "synth", "-f", "missing.yaml"], "cannot read parameters file"),
             (["runs", "show", "zzz"], "no run match"),
             (["frobnicate"], "invalid choice")]
    for args, words in cases:
        r = cl(*args, root=project)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert words in r.stderr, (args, r.stderr)
    assert not (project / "runs").exists() or not any((project / "runs").glob("*/manifest.json"))


def test_bad_settings_exit_2(project):
    (project / "settings.ini").write_text((project / "settings.ini").read_text() + "colour = blue\n")
    r = cl("runs", "list", root=project)
    assert r.returncode == 2 and "unknown key 'colour'" in r.stderr


def test_plain_papermill_cli_runs_a_pipeline(project, tmp_path):
    out = tmp_path / "out.ipynb"
    r = subprocess.run([str(BIN / "papermill"), str(REPO / "nbs" / "pipelines" / "synth.ipynb"), str(out), "-k", "python3",
                        "-p", "project_root", str(project), "-p", "n_customers", "1500", "--cwd", str(tmp_path)],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    v = table_versions(project / "lake", "customers")[-1]
    assert v.rows == 1500 and v.run_id is None
    assert read_table(project / "lake", "transactions").height > 0


def test_plain_papermill_failure_exits_nonzero(project, tmp_path):
    r = subprocess.run([str(BIN / "papermill"), str(REPO / "nbs" / "pipelines" / "synth.ipynb"), str(tmp_path / "o.ipynb"),
                        "-k", "python3", "-p", "n_customers", "10", "--cwd", str(tmp_path)],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 1 and "project_root is empty" in r.stderr


def test_only_a_folder_inside_the_runs_folder_is_a_run(project, tmp_path):
    "Paths are refused as run ids, and a forged manifest outside runs/ is never read or promoted."
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text(json.dumps({"run_id": "../outside", "pipeline": "segment_fit", "status": "succeeded",
                                                       "started_at": "2026-11-02T00:00:00+00:00", "parameters": {}}))
    (outside / "segmenter.json").write_text("{}")
    rel = f"../{outside.name}"
    for args in (["runs", "show", rel], ["runs", "show", str(outside)], ["runs", "lineage", rel], ["promote", "segmenter", rel]):
        r = cl(*args, root=project)
        assert r.returncode == 2 and "is not a run id" in r.stderr, (args, r.stdout, r.stderr)
    assert not (project / "runs" / "registry.json").exists()


def test_missing_folders_name_their_setting_and_init_creates_them(project):
    import shutil
    shutil.rmtree(project / "lake"); shutil.rmtree(project / "runs")
    for args in (["runs", "list"], ["lake"], ["run", "synth"], ["cycle", "--campaign", "campaigns/spring.yaml"]):
        r = cl(*args, root=project)
        assert r.returncode == 2 and "(setting lake_dir)" in r.stderr and "(setting runs_dir)" in r.stderr, (args, r.stderr)
    assert not (project / "lake").exists() and not (project / "runs").exists()   # the cycle drew no chain into a typo'd place
    r = cl("init", root=project)
    assert r.returncode == 0 and "lake_dir:" in r.stdout and (project / "lake").is_dir() and (project / "runs").is_dir()
    assert cl("runs", "list", root=project).returncode == 0


def test_a_read_only_runs_folder_is_a_clear_error_not_a_traceback(project):
    import os
    runs = project / "runs"
    if os.geteuid() == 0:   # root writes through permissions: a read-only filesystem it is
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(runs)], capture_output=True).returncode != 0:
            import pytest; pytest.skip("cannot mount a read-only tmpfs here")
    else: runs.chmod(0o500)
    try:
        r = cl("run", "synth", "-p", "n_customers=100", root=project)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert ("Read-only file system" in r.stderr or "Permission denied" in r.stderr) and str(runs) in r.stderr, r.stderr
    finally:
        if os.geteuid() == 0: subprocess.run(["umount", str(runs)], capture_output=True)
        else: runs.chmod(0o700)


def _cli(root, *args) -> tuple[int, str]:
    r = cl(*args, root=root)
    return r.returncode, r.stdout + r.stderr


def test_ready_exits_0_when_there_3_while_waiting_2_on_bad_usage(project):
    "`ready`, for a scheduler's sensors: events arrive as a file; a segmenter when one is promoted; orders need an assigned wave."
    (project / "inbox" / "events").mkdir(parents=True)
    assert _cli(project, "ready", "events", "win_back", "0")[0] == 3
    (project / "inbox" / "events" / "win_back_wave0.csv").write_text("id\n")
    code, out = _cli(project, "ready", "events", "win_back", "0")
    assert code == 0 and "win_back_wave0.csv" in out
    code, out = _cli(project, "ready", "segmenter")
    assert code == 3 and "no segmenter is promoted" in out
    code, out = _cli(project, "ready", "orders", "win_back", "0")
    assert code == 2 and "has no wave 0 assigned" in out, out
    code, out = _cli(project, "ready", "events")
    assert code == 2 and "takes a campaign id and a wave" in out
    code, out = _cli(project, "ready", "events", "win_back,spring_menu", "0")
    assert code == 2 and "takes one campaign id" in out


@pytest.mark.slow
def test_ingest_inbox_ingests_each_export_once_and_stops_at_a_bad_one(project):
    inbox = project / "inbox"
    for sub in ("customers", "orders"): (inbox / sub).mkdir(parents=True)
    code, out = _cli(project, "ingest-inbox")
    assert code == 0 and "0 file(s) ingested, 0 ingested before" in out
    shutil.copy(REPO / "examples" / "customers.csv", inbox / "customers" / "customers_20261031.csv")
    shutil.copy(REPO / "examples" / "transactions.csv", inbox / "orders" / "orders_20261031.csv")
    code, out = _cli(project, "ingest-inbox")
    assert code == 0 and "2 file(s) ingested, 0 ingested before" in out, out
    code, out = _cli(project, "ingest-inbox")
    assert code == 0 and "0 file(s) ingested, 2 ingested before" in out, out
    (inbox / "orders" / "orders_20261107.csv").write_text("transaction_id,customer_id,ordered_at,amount\n1,1001,yesterday,3.5\n")
    code, out = _cli(project, "ingest-inbox")
    assert code == 1 and "orders_20261107.csv failed" in out and "nothing after it was ingested" in out, out


def test_prune_keeps_the_newest_versions_and_says_what_went(project):
    from campaign_lab.lake import write_table
    from campaign_lab.samples import sample_tables
    customers = sample_tables(200, seed=1)["customers"]
    for i in range(3): write_table(project / "lake", "customers", customers.head(100 + i))
    r = cl("prune", "--keep", "1", root=project)
    assert r.returncode == 0, r.stderr
    assert "customers: would prune v1, v2, keeping v3; 2 file(s)" in r.stdout and "dry run, nothing deleted" in r.stdout
    assert [v.version for v in table_versions(project / "lake", "customers")] == [1, 2, 3]
    r = cl("prune", "--keep", "1", "--apply", root=project)
    assert r.returncode == 0 and "customers: pruned v1, v2, keeping v3" in r.stdout, r.stdout + r.stderr
    assert [v.version for v in table_versions(project / "lake", "customers")] == [3]
    assert read_table(project / "lake", "customers").height == 102
    r = cl("validate", "customers", "--version", "1", root=project)
    assert r.returncode == 2 and "has no version 1 (pruned " in r.stderr, r.stderr
    r = cl("prune", root=project)
    assert r.returncode == 0 and "nothing to prune: every version is among the newest 3 of each table" in r.stdout
    for bad, said in ((["--keep", "0"], "at least 1"), (["--table", "customer"], "unknown lake table 'customer'")):
        r = cl("prune", *bad, root=project)
        assert r.returncode == 2 and said in r.stderr, r.stderr
