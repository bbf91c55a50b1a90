"""`make lab` starts JupyterLab for real, also as root (as in a container, and on this kind of machine), and the running
server lists the .venv's python3 kernel, starts it, and serves a library notebook."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, free_port


def _get(url: str, token: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return r.status, r.headers.get("Content-Type", ""), raw


@pytest.fixture
def lab(tmp_path):
    "`make lab` on a free loopback port, with a token; stopped (its whole process group) afterwards."
    port, token = free_port(), "test-token-" + os.urandom(8).hex()
    log = tmp_path / "lab.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")} | {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with log.open("w") as out:
        proc = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}", f"LAB_ARGS=--no-browser --IdentityProvider.token={token}"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if _get(f"{base}/api/status", token)[0] == 200: break
            except (urllib.error.URLError, ConnectionError, OSError): pass
            if time.monotonic() > deadline: pytest.fail(f"JupyterLab did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token, log
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait()


def test_make_lab_starts_lists_the_venv_kernel_and_serves_a_notebook(lab):
    base, token, log = lab
    status, kind, raw = _get(f"{base}/api/kernelspecs", token)
    specs = json.loads(raw)["kernelspecs"]
    assert "python3" in specs, sorted(specs)
    assert specs["python3"]["spec"]["language"] == "python"
    # a library notebook, as the contents API serves it to the editor
    status, kind, raw = _get(f"{base}/api/contents/nbs/30_bandit.ipynb?content=1", token)
    nb = json.loads(raw)
    assert status == 200 and nb["type"] == "notebook" and nb["name"] == "30_bandit.ipynb"
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["content"]["cells"]]
    assert any("#| export" in s for s in sources) and any("Thompson" in s for s in sources)
    # the JupyterLab page itself
    status, kind, raw = _get(f"{base}/lab/tree/nbs/30_bandit.ipynb", token)
    assert status == 200 and "text/html" in kind and b"JupyterLab" in raw
    # the kernel starts, and the code it runs runs in the project's .venv
    status, _, raw = _get(f"{base}/api/kernels", token, method="POST", body={"name": "python3"})
    kernel = json.loads(raw)
    assert status == 201 and kernel["name"] == "python3"
    printed = asyncio.run(_execute(base, token, kernel["id"], "import sys, campaign_lab; print(sys.prefix)"))
    assert Path(printed.strip()) == REPO / ".venv", printed
    assert _get(f"{base}/api/kernels/{kernel['id']}", token, method="DELETE")[0] == 204


async def _execute(base: str, token: str, kernel_id: str, code: str) -> str:
    "Run `code` in a kernel of the server over its websocket (the way the JupyterLab page does) and return what it printed."
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
    url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=60))
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex, "version": "5.3", "date": ""}
    ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
                                 "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False}}))
    out, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), timeout=120)
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id: continue
        kind = msg["header"]["msg_type"]
        if kind == "stream": out.append(msg["content"]["text"])
        if kind == "error": raise AssertionError(f"the kernel raised {msg['content']['ename']}: {msg['content']['evalue']}")
        if kind == "status" and msg["content"]["execution_state"] == "idle": break
    ws.close()
    return "".join(out)
