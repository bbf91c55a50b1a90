"""MLflow tracking against a real MLflow server (the full mlflow package in its own venv, `make mlflow-venv`), started by
the test with a SQLite backend and stopped after: every run is mirrored with its parameters, metrics, tags and run
folder; promotions become model versions with the champion and challenger aliases and the run's lineage; a server
that is down fails nothing and says so in the manifest and the registry."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN, REPO, cli_env, free_port

from campaign_lab.records import list_runs, load_manifest
from campaign_lab.registry import read_registry

SERVER = REPO / ".mlflow-venv" / "bin" / "mlflow"


@pytest.fixture
def mlflow_server(tmp_path):
    "A real MLflow tracking server on a free loopback port, SQLite backend and local artefacts; stopped after the test."
    subprocess.run(["make", "-s", "mlflow-venv"], cwd=REPO, check=True, capture_output=True, timeout=900)
    port = free_port()
    log = (tmp_path / "mlflow.log").open("w")
    proc = subprocess.Popen([str(SERVER), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as r:
                if r.status == 200: break
        except OSError: pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the MLflow server did not start:\n{(tmp_path / 'mlflow.log').read_text()[-3000:]}")
        time.sleep(0.5)
    state = {"proc": proc}
    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
    state["stop"] = stop
    yield uri, state
    stop()
    log.close()


def _cl(project, uri, *args):
    env = cli_env(project) | {"CAMPAIGN_LAB_MLFLOW_TRACKING_URI": uri, "CAMPAIGN_LAB_MLFLOW_EXPERIMENT": "campaigns"}
    return subprocess.run([str(BIN / "campaign-lab"), *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_runs_and_promotions_are_mirrored_to_a_real_mlflow_server(project, mlflow_server):
    from mlflow.tracking import MlflowClient
    uri, server = mlflow_server
    for args in (("run", "synth", "-p", "n_customers=1500", "-p", "seed=7"), ("run", "segment_fit")):
        r = _cl(project, uri, *args)
        assert r.returncode == 0, r.stdout + r.stderr
    r = _cl(project, uri, "run", "lift", "-p", "campaign_id=nope")          # a run that fails in its notebook
    assert r.returncode == 1
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("campaigns")
    ml = {m.data.tags["campaign_lab.run_id"]: m for m in client.search_runs([exp.experiment_id])}
    runs = list_runs(project / "runs")
    assert set(ml) == {r.run_id for r in runs}
    for r in runs:
        m = ml[r.run_id]
        manifest = load_manifest(project / "runs", r.run_id)
        assert manifest.extra["tracking"]["mlflow_run_id"] == m.info.run_id                        # the manifest says where it went
        assert m.info.status == ("FINISHED" if r.ok else "FAILED")
        assert m.data.tags["campaign_lab.pipeline"] == r.pipeline and m.data.tags["mlflow.runName"] == r.run_id
        assert m.data.params == {k: v if isinstance(v, str) else json.dumps(v) for k, v in r.parameters.items()}
        assert {a.path for a in client.list_artifacts(m.info.run_id)} >= {"report.html", "manifest.json", "metrics.json", "params.yaml"}
        for k, v in r.metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool): assert m.data.metrics[k] == pytest.approx(v), k
    fit = next(r for r in runs if r.pipeline == "segment_fit")
    assert "segmenter.json" in {a.path for a in client.list_artifacts(ml[fit.run_id].info.run_id)}
    synth = next(r for r in runs if r.pipeline == "synth")
    assert synth.run_id in ml[fit.run_id].data.tags["campaign_lab.upstream_runs"]                  # the lineage, one step up
    assert "campaign_lab.error" in ml[next(r for r in runs if not r.ok).run_id].data.tags
    # promotions: a model version of the run's artefact, the alias moved to it, the lineage and fingerprint on it
    r = _cl(project, uri, "promote", "segmenter", fit.run_id, "--note", "first fit")
    assert r.returncode == 0, r.stderr
    entry = read_registry(project / "runs")["aliases"]["segmenter"]["champion"]
    assert entry["mlflow"]["model"] == "campaign_lab-segmenter" and "error" not in entry["mlflow"], entry
    v = client.get_model_version_by_alias("campaign_lab-segmenter", "champion")
    assert v.run_id == ml[fit.run_id].info.run_id and v.source.endswith("/segmenter.json")
    assert v.tags["campaign_lab.fingerprint"] == entry["fingerprint"] and synth.run_id in v.tags["campaign_lab.lineage"]
    assert "first fit" in v.tags["campaign_lab.promoted.champion"]
    r = _cl(project, uri, "promote", "segmenter", fit.run_id, "--alias", "challenger")           # the same run: the same version
    assert r.returncode == 0
    assert client.get_model_version_by_alias("campaign_lab-segmenter", "challenger").version == v.version
    # the server goes away: runs and promotions still succeed, the runs folder and registry keep the record, and say what failed
    server["stop"]()
    t0 = time.monotonic()
    r = _cl(project, uri, "run", "segment_fit", "-p", "seed=5")
    assert r.returncode == 0, r.stdout + r.stderr
    latest = max((x for x in list_runs(project / "runs") if x.pipeline == "segment_fit"), key=lambda x: x.run_id)
    assert latest.ok and "error" in latest.extra["tracking"] and "mlflow_run_id" not in latest.extra["tracking"]
    r = _cl(project, uri, "promote", "segmenter", latest.run_id)
    assert r.returncode == 0, r.stderr
    entry = read_registry(project / "runs")["aliases"]["segmenter"]["champion"]
    assert entry["run_id"] == latest.run_id and "error" in entry["mlflow"]
    print(f"a run and a promotion with the tracking server down: {time.monotonic() - t0:.0f} s")
