"""The container image: the Dockerfile passes hadolint; and (slow) podman builds it here, with no image registry and no
network, on a Python base made from Debian's packages (`make image-base`), and a small campaign cycle runs inside it as
its non-root user, on a project mounted at /project; the decision service's health check passes."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, REPO

from campaign_lab.records import list_runs


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint(tmp_path):
    r = _hadolint(REPO / "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "Dockerfile"   # the linter does flag what it should: an unpinned base, root, apt without cleanup
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y python3\nCMD python3\n")
    r = _hadolint(bad)
    assert r.returncode != 0 and "DL3007" in r.stdout and "DL3008" in r.stdout, r.stdout


def _podman_env() -> tuple[dict, str]:
    "podman's settings for this kind of machine (docker/containers.conf), and runc as the runtime when it is there."
    env = os.environ | {"CONTAINERS_CONF": str(REPO / "docker" / "containers.conf")}
    runc = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)
    return env, (f"--runtime {runc}" if runc else "")


@pytest.fixture(scope="module")
def image():
    "The image built by `make image` from the project's wheel on a Debian-made base; podman, runc and mmdebstrap installed first."
    subprocess.run(["make", "-s", "container-tools"], cwd=REPO, capture_output=True, timeout=900)
    if not shutil.which("podman") or not shutil.which("mmdebstrap"):
        pytest.skip("podman and mmdebstrap are not installed and cannot be (not root): the image is only linted")
    env, flags = _podman_env()
    tag = "localhost/campaign-lab:test"
    t0 = time.monotonic()
    for target in (["image-base"], ["image", f"IMAGE={tag}", "BASE=localhost/campaign-lab-base:bookworm"]):
        r = subprocess.run(["make", "-s", *target, f"CONTAINER_FLAGS={flags}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, f"make {target[0]}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    print(f"base and image built in {time.monotonic() - t0:.0f} s")
    return tag, env, flags.split()


def _podman(env, flags, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *flags, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_image_runs_a_cycle_as_its_own_user_and_serves_healthy(image, tmp_path):
    tag, env, flags = image
    project = tmp_path / "project"
    project.mkdir()
    ini = (REPO / "docker" / "settings.ini").read_text().replace("n_customers = 200000", "n_customers = 2000").replace("seed = 20261126", "seed = 11")
    (project / "settings.ini").write_text(ini)
    shutil.copytree(REPO / "campaigns", project / "campaigns")
    for p in [project, *project.rglob("*")]: os.chown(p, 10001, 10001)   # the image's user owns the project volume
    run = ["run", "--rm", "--network", "none", "-v", f"{project}:/project"]
    r = _podman(env, flags, *run, "--entrypoint", "id", tag, "-u")
    assert r.returncode == 0 and r.stdout.strip() == "10001", r.stderr       # not root
    r = _podman(env, flags, *run, tag, "init")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = _podman(env, flags, *run, "--entrypoint", "campaign-lab-world", tag,
                "demo", "--campaign", "campaigns/win_back.yaml", "--campaign", "campaigns/spring.yaml", "--waves", "1", "--n-customers", "2000")
    print(f"a one-wave cycle of two campaigns on 2,000 customers, inside the container: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cycle" in r.stdout and "succeeded" in r.stdout.splitlines()[-2]
    runs = list_runs(project / "runs")   # the earlier cycles waited for the world's answers, the last one succeeded
    assert sorted(r.status for r in runs if r.pipeline == "cycle") == ["succeeded", "waiting", "waiting"]
    runs = [r for r in runs if r.pipeline != "cycle"]
    assert all(r.ok for r in runs), [(r.run_id, r.status) for r in runs if not r.ok]
    assert {r.pipeline for r in runs} >= {"ingest", "validate", "segment_fit", "segment_apply", "variants", "wave", "export", "feedback", "lift"}
    assert (project / "runs" / "index.html").is_file()
    assert all(p.stat().st_uid == 10001 for p in (project / "lake").rglob("*"))   # written by the image's user
    # the pipelines are the image's own: the run records name the notebook they ran
    wave = next(r for r in runs if r.pipeline == "wave")
    assert wave.notebook.startswith("/opt/campaign_lab/share/campaign_lab/pipelines/"), wave.notebook
    # no git inside the image: the runs say which code ran by the library files' fingerprint, the same as this checkout's
    from campaign_lab.execute import code_fingerprint
    assert {r.code for r in runs} == {code_fingerprint()} and all(r.git.get("commit") is None for r in runs)
    # the decision service, detached, and its health check as the image declares it
    (project / "tokens").write_text("t" * 32 + "\n"); os.chown(project / "tokens", 10001, 10001)
    name = f"campaign-lab-serve-{os.getpid()}"
    r = _podman(env, flags, "run", "-d", "--name", name, "--network", "none", "-v", f"{project}:/project", tag, "serve", "--tokens", "/project/tokens")
    assert r.returncode == 0, r.stderr
    try:
        for _ in range(60):
            h = _podman(env, flags, "healthcheck", "run", name, timeout=60)
            if h.returncode == 0: break
            time.sleep(1)
        assert h.returncode == 0, (h.stdout, h.stderr, _podman(env, flags, "logs", name).stderr[-2000:])
        inspect = _podman(env, flags, "inspect", "--format", "{{.Config.Healthcheck.Test}}", name)
        assert "/health/live" in inspect.stdout
    finally:
        _podman(env, flags, "rm", "-f", name)
