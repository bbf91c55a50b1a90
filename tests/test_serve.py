"""The decision service for real: `campaign-lab serve` (uvicorn) started on a free loopback port, asked over HTTP.
Parity with the batch over a whole wave, every status, refusals, idempotent retries, hot reload, metrics, clean logs."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from campaign_lab.bandit import make_policy
from campaign_lab.lake import EVENT_TYPES, commit, read_table
from campaign_lab.samples import sample_tables
from campaign_lab.settings import load_settings
from campaign_lab.waves import PolarsEngine, Tables, assign_wave, programme_holdout
from conftest import BIN, REPO, SETTINGS, cli_env, free_port

TOKEN = "crm-token-0123456789abcdef"
SCOPED = "welcome-token-0123456789 welcome"


def make_project(root: Path, programme: float = 0.0, sample_context: bool = True) -> Path:
    "The sample lake (3,000 customers, campaign spring; without its sample contextual tables if not `sample_context`) with wave 1 assigned by the batch path, and a tokens file."
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts")
                                       + f"programme_holdout = {programme}\nserve_reload_seconds = 0.3\n")
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)
    s = load_settings(root, env={})
    t = {k: v for k, v in sample_tables(3000, seed=2).items() if k != "decisions" and (sample_context or not k.startswith("context_"))}
    commit(s.lake_dir, t)
    w = assign_wave(PolarsEngine(s), Tables(t, s.contracts_dir), campaign_id="spring", wave=1, policy=make_policy("thompson_beta"),
                    holdout=0.1, seed=s.seed)
    commit(s.lake_dir, w.tables, append=w.append & set(w.tables))
    (root / "tokens.txt").write_text(f"# tokens of the test\n{TOKEN}\n{SCOPED}\n")
    return root


class Server:
    "`campaign-lab serve` in its own process; stderr to a file (the structured log)."
    def __init__(self, root: Path, env: dict | None = None):
        self.root, self.port, self.env = root, free_port(), env or {}
        self.log = root / f"serve-{self.port}.log"

    def start(self, attempts: int = 5):
        "Start on a free port; if something else took the port meanwhile (the service then exits), again on another."
        for _ in range(attempts):
            self.proc = subprocess.Popen([str(BIN / "campaign-lab"), "--root", str(self.root), "serve", "--port", str(self.port),
                                          "--tokens", str(self.root / "tokens.txt")], env=cli_env(self.root) | self.env,
                                         stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
            deadline = time.time() + 60
            while time.time() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if self.call("GET", "/health/ready", token=None)[0] == 200: return self
                time.sleep(0.1)
            if self.proc.poll() is None: break
            self.port = free_port()
        self.stop(signal.SIGKILL)
        raise AssertionError(f"the service did not become ready: {self.log.read_text()}")

    def call(self, method, path, body=None, token=TOKEN, raw: bytes | None = None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Content-Type": "application/json", **(headers or {})}
        if token: h["Authorization"] = f"Bearer {token}"
        c.request(method, path, body=raw if raw is not None else (json.dumps(body) if body is not None else None), headers=h)
        r = c.getresponse(); data = r.read(); c.close()
        ctype = r.getheader("content-type", "")
        return r.status, dict(r.getheaders()), (json.loads(data) if "json" in ctype else data.decode())

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig); self.proc.wait(20)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("serve"), programme=0.1)
    srv = Server(root).start()
    yield srv
    srv.stop()


def ask(customer_id, key=None, campaign="spring", **kw):
    return {"campaign_id": campaign, "customer_id": int(customer_id), "idempotency_key": key or f"k-{customer_id}", **kw}


def test_parity_with_the_batch_over_a_whole_wave(served):
    "Every customer of wave 1, asked in batches of 1,000: the service's arm, variant and propensity are the batch's, exactly."
    rows = read_table(served.root / "lake", "assignments").filter(wave=1).sort("customer_id")
    got = []
    for i in range(0, rows.height, 1000):
        ids = rows["customer_id"][i:i + 1000].to_list()
        status, _, body = served.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"parity-{c}", wave=1) for c in ids]})
        assert status == 200, body
        got += [(a["customer_id"], "holdout" if a["holdout"] else "treatment", a["variant"] and a["variant"]["variant_id"], a["propensity"],
                 a["state_version"]) for a in body["decisions"]]
    want = rows.select("customer_id", pl.col("arm").cast(pl.String), "variant_id", "propensity", "state_version").rows()
    assert got == want and len(got) > 2000
    # no wave named: the draw key is the state version (1), so the same answers
    status, _, one = served.call("POST", "/v1/decisions", ask(rows["customer_id"][5], "default-wave"))
    assert status == 200 and one["wave"] == 1 and one["propensity"] == rows["propensity"][5]


def test_the_programme_holdout_opt_outs_and_unknown_customers(served):
    s = load_settings(served.root, env={})
    customers = read_table(s.lake_dir, "customers")
    ids = customers["customer_id"].to_numpy()
    held = ids[programme_holdout(ids, share=s.programme_holdout, seed=s.seed)]
    assignments = read_table(s.lake_dir, "assignments").filter(wave=1)
    assert len(held) > 100 and not assignments["customer_id"].is_in(held.tolist()).any()     # the batch never emailed them either
    status, _, body = served.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"prog-{c}") for c in held[:50]]})
    assert status == 200 and {(a["send"], a["reason"], a["variant"]) for a in body["decisions"]} == {(False, "programme_holdout", None)}
    out = customers.filter(~pl.col("email_opt_in"))["customer_id"]
    out = [c for c in out.to_list() if c not in set(held.tolist())][:5]
    status, _, body = served.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"out-{c}") for c in out]})
    assert status == 200 and {(a["send"], a["reason"], a["propensity"]) for a in body["decisions"]} == {(False, "opted_out", None)}
    fresh = next(c for c in range(10**9, 10**9 + 100) if not programme_holdout([c], share=s.programme_holdout, seed=s.seed)[0])
    status, _, new = served.call("POST", "/v1/decisions", ask(fresh, "newcomer"))
    assert status == 200 and new["cold_start"] and new["segment"] is None and 0 < new["propensity"] <= 1


def test_a_retry_gets_the_same_decision_and_each_is_logged_once(served):
    first = served.call("POST", "/v1/decisions", ask(7, "retry-me"))
    again = served.call("POST", "/v1/decisions", ask(7, "retry-me"))
    assert first[0] == again[0] == 200 and first[2] == again[2]
    status, _, body = served.call("POST", "/v1/decisions", ask(8, "retry-me"))
    assert status == 409 and "retry-me" in body["error"]
    lines = [json.loads(line) for f in (served.root / "decisions").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert [r["decision_id"] for r in lines].count(first[2]["decision_id"]) == (1 if first[2]["propensity"] else 0)


BAD = [  # (what, request kwargs, status, what the answer names)
    ("no token", dict(body=ask(1), token=None), 401, "missing bearer token"),
    ("a wrong token", dict(body=ask(1), token="not-the-token-at-all"), 401, "invalid bearer token"),
    ("a token for another campaign", dict(body=ask(1), token=SCOPED.split()[0]), 403, "may not ask about campaign 'spring'"),
    ("malformed JSON", dict(raw=b'{"campaign_id": "spring", '), 400, "malformed JSON"),
    ("a missing field", dict(body={"campaign_id": "spring", "customer_id": 1}), 422, "idempotency_key"),
    ("an extra field", dict(body=ask(1, colour="red")), 422, "colour"),
    ("a string for a number", dict(body={**ask(1), "customer_id": "1"}), 422, "customer_id"),
    ("a negative wave", dict(body=ask(1, wave=-1)), 422, "wave"),
    ("a campaign that does not exist", dict(body=ask(1, campaign="autumn")), 404, "'autumn' is not served"),
    ("a huge body", dict(raw=b'{"campaign_id": "' + b"x" * 2_000_000 + b'"}'), 413, "over the limit"),
]


@pytest.mark.parametrize("what,kw,status,names", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_4xx_and_the_service_keeps_serving(served, what, kw, status, names):
    got, headers, body = served.call("POST", "/v1/decisions", **kw)
    assert got == status and names in json.dumps(body), (what, got, body)
    if status == 401: assert headers.get("www-authenticate", "").startswith("Bearer")
    assert served.call("POST", "/v1/decisions", ask(11, "still-serving"))[0] == 200


def test_batches_are_bounded(served):
    status, _, body = served.call("POST", "/v1/decisions/batch", {"requests": [ask(c) for c in range(1, 1002)]})
    assert status == 422 and "requests" in body["error"]
    assert served.call("POST", "/v1/decisions/batch", {"requests": []})[0] == 422


def test_health_metrics_and_logs(served):
    assert served.call("GET", "/health/live", token=None)[0] == 200
    status, _, ready = served.call("GET", "/health/ready", token=None)
    assert status == 200 and ready["state_versions"] == {"spring": 1} and ready["reload_error"] is None
    assert served.call("GET", "/metrics", token=None)[0] == 401
    status, headers, text = served.call("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for line in ('campaign_lab_state_version{campaign="spring"} 1', 'campaign_lab_request_duration_seconds_bucket{le="+Inf"}',
                 'campaign_lab_requests_total{route="/v1/decisions",status="200"}', "campaign_lab_errors_total 0"):
        assert line in text, line
    log = served.log.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "request" for e in entries)
    assert TOKEN not in log and "customer_id" not in log and "@" not in log        # no token, no customer, no email address


def test_the_cli_refuses_to_serve_without_tokens(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "tokens.txt").unlink()
    r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "serve", "--tokens", str(root / "tokens.txt")],
                       env=cli_env(root), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs bearer tokens" in r.stderr


def test_hot_reload_takes_a_new_state_and_refuses_a_broken_one(tmp_path):
    root = make_project(tmp_path / "p")
    srv = Server(root).start()
    try:
        lake = root / "lake"
        state = read_table(lake, "bandit_state")
        bad = state.with_columns(version=pl.lit(2, pl.Int64), n=pl.lit(-5, pl.Int64))
        commit(lake, {"bandit_state": pl.concat([state, bad])})
        ready = wait_for(srv, lambda r: r["reload_error"] is not None)
        assert "bandit_state" in ready["reload_error"]["error"] and ready["state_versions"] == {"spring": 1}
        status, _, a = srv.call("POST", "/v1/decisions", ask(3, "during-broken"))
        assert status == 200 and a["state_version"] == 1
        better = state.with_columns(version=pl.lit(3, pl.Int64), alpha=pl.col("alpha") + 5.0)
        commit(lake, {"bandit_state": pl.concat([state, bad, better])})
        ready = wait_for(srv, lambda r: r["state_versions"] == {"spring": 3})
        assert ready["reload_error"] is None
        status, _, a = srv.call("POST", "/v1/decisions", ask(3, "after-reload"))
        assert status == 200 and a["state_version"] == 3 and a["wave"] == 3
    finally: srv.stop()


def wait_for(srv, ok, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        ready = srv.call("GET", "/health/ready", token=None)[2]
        if ok(ready): return ready
        time.sleep(0.1)
    raise AssertionError(f"the service did not get there: {ready}")


def test_a_killed_service_loses_no_answered_decision(tmp_path):
    "SIGKILL in the middle of a load; restarted, every answered request gets the same answer again, and the fold finds each decision once."
    import threading
    root = make_project(tmp_path / "p")
    srv = Server(root).start()
    answered, stop = {}, threading.Event()
    def load():
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        i = 0
        while not stop.is_set():
            i += 1
            body = json.dumps(ask(1 + i % 2900, f"load-{i}"))
            try:
                c.request("POST", "/v1/decisions", body=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                r = c.getresponse(); data = r.read()
            except (OSError, http.client.HTTPException): return
            if r.status == 200: answered[f"load-{i}"] = (1 + i % 2900, json.loads(data))
    th = threading.Thread(target=load); th.start()
    time.sleep(2.0)
    srv.stop(signal.SIGKILL); stop.set(); th.join(30)
    assert srv.proc.returncode == -signal.SIGKILL and len(answered) > 200
    srv.start()
    try:
        for key, (cid, want) in answered.items():
            status, _, got = srv.call("POST", "/v1/decisions", ask(cid, key))
            assert status == 200 and got == want, key
    finally: srv.stop()
    def fold():
        r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "run", "decisions"], env=cli_env(root),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        run = sorted((root / "runs").glob("*_decisions_*"))[-1]
        return json.loads((run / "metrics.json").read_text())
    m = fold()
    table = read_table(root / "lake", "decisions")
    logged = {a["decision_id"] for _, a in answered.values() if a["propensity"] is not None}
    assert table["decision_id"].n_unique() == table.height and logged <= set(table["decision_id"]) and m["torn"] <= 1
    assert m["new"] == table.height and fold()["new"] == 0                       # a second fold adds nothing


def test_triggered_decisions_feed_back_like_a_wave(tmp_path):
    "Decisions of a triggered wave, folded into the lake, are that wave's rows for feedback: their events update the state."
    from campaign_lab.serve import DecisionLog, DecisionRequest, Service, fold_logs, load_tokens
    from campaign_lab.waves import fold_feedback, wave_rows
    root = make_project(tmp_path / "p")
    s = load_settings(root, env={})
    svc = Service(s, load_tokens(root / "tokens.txt")); svc.log = DecisionLog(s.decisions); svc.reload()
    status, answers = svc.answer([DecisionRequest(**ask(c, f"t-{c}", wave=4)) for c in range(1, 400)], svc.tokens[0])
    assert status == 200
    lake = Tables({t: read_table(s.lake_dir, t) for t in ("customers", "variants", "arms", "assignments", "bandit_state", "bandit_seen",
                                                          "segments", "events")}, s.contracts_dir)
    tables, m = fold_logs(lake, s.decisions)
    lake.publish(tables, append={"decisions"})
    sent = [a for a in answers if a["send"]]
    assert m.new == len([a for a in answers if a["propensity"] is not None]) and len(sent) > 200
    events = pl.DataFrame([{"event_id": f"e-{a['decision_id']}", "campaign_id": "spring", "wave": 4, "customer_id": a["customer_id"],
                            "variant_id": a["variant"]["variant_id"], "event_type": "send", "revenue": 0.0,
                            "occurred_at": a["decided_at"]} for a in sent]).with_columns(
        pl.col("event_type").cast(pl.Enum(EVENT_TYPES)), pl.col("wave").cast(pl.Int32),
        pl.col("occurred_at").str.to_datetime(time_unit="us"))
    fb = fold_feedback(PolarsEngine(s), lake, wave_rows(lake, campaign_id="spring", wave=4), events, reward="conversion")
    assert fb.n_new == len(sent) and fb.quarantined.height == 0
    assert int(fb.state.table["n"].sum() - fb.before.table["n"].sum()) == len([a for a in sent if a["segment"] is not None])


def test_the_service_follows_the_wave_runs_and_a_promotion(tmp_path):
    "A wave run's seed, holdout and policy are what the service draws with (parity on that wave); promoting a policy is picked up live."
    root = make_project(tmp_path / "p")
    srv = Server(root).start()
    try:
        r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "run", "wave", "-p", "campaign_id=spring", "-p", "wave=2",
                            "-p", "policy=uniform", "-p", "seed=5", "-p", "holdout=0.2"], env=cli_env(root), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        run_id = r.stdout.split()[1].rstrip(":")
        ready = wait_for(srv, lambda x: x["policies"].get("spring", "").startswith("wave run"))
        rows = read_table(root / "lake", "assignments").filter(wave=2).sort("customer_id").head(1000)
        status, _, body = srv.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"w2-{c}", wave=2) for c in rows["customer_id"]]})
        got = [("holdout" if a["holdout"] else "treatment", a["variant"] and a["variant"]["variant_id"], a["propensity"], a["policy"])
               for a in body["decisions"]]
        assert status == 200 and got == rows.select(pl.col("arm").cast(pl.String), "variant_id", "propensity", "policy").rows()
        r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "promote", "policy", run_id], env=cli_env(root),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ready = wait_for(srv, lambda x: x["policies"].get("spring", "").startswith("champion"))
        assert run_id in ready["policies"]["spring"] and ready["reload_error"] is None
        r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "run", "wave", "-p", "campaign_id=spring", "-p", "wave=3",
                            "-p", "policy=champion", "-p", "seed=5", "-p", "holdout=0.2"], env=cli_env(root), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr                   # a wave on the promoted policy (the alias resolves to uniform)
        assert set(read_table(root / "lake", "assignments").filter(wave=3)["policy"]) == {"uniform"}
    finally: srv.stop()


def test_a_contextual_campaign_is_served_as_its_wave_drew_it(tmp_path):
    """A contextual wave run through the CLI, then the service on the same pinned clock: every customer of that wave gets the
    wave's arm, variant and propensity (each in its cell, from the features of the lake's orders, with the wave's posterior
    draws), by default too; a customer the lake does not know is served per segment and says so."""
    root = make_project(tmp_path / "p")
    clock = {"CAMPAIGN_LAB_CLOCK": "2026-12-20T09:00:00"}   # the wave and the service see the same pending waves
    r = subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "run", "wave", "-p", "campaign_id=spring", "-p", "wave=2",
                        "-p", "policy=contextual_thompson", "-p", "reward=conversion"], env=cli_env(root) | clock,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    srv = Server(root, env=clock).start()
    try:
        rows = read_table(root / "lake", "assignments").filter(wave=2).sort("customer_id")
        assert set(rows["policy"]) == {"contextual_thompson"}
        got, cells = [], []
        for i in range(0, rows.height, 1000):
            ids = rows["customer_id"][i:i + 1000].to_list()
            status, _, body = srv.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"ctx-{c}", wave=2) for c in ids]})
            assert status == 200, body
            got += [("holdout" if a["holdout"] else "treatment", a["variant"] and a["variant"]["variant_id"], a["propensity"], a["policy"])
                    for a in body["decisions"]]
            cells += [(a["customer_id"], a["cell"]) for a in body["decisions"] if a["send"]]
        want = rows.select(pl.col("arm").cast(pl.String), "variant_id", "propensity", "policy").rows()
        assert got == want and len(got) > 2000
        # every treated answer names the cell the wave drew it in, and the decision log keeps it
        drawn = read_table(root / "lake", "context_cells").filter(wave=2).select("customer_id", "cell").sort("customer_id").rows()
        assert sorted(cells) == drawn
        from campaign_lab.serve import read_decision_log
        logged = read_decision_log(root / "decisions").decisions.filter(arm="treatment", wave=2)
        assert sorted(logged.select("customer_id", "cell").rows()) == drawn
        treated = rows.filter(arm="treatment")
        status, _, one = srv.call("POST", "/v1/decisions", ask(treated["customer_id"][0], "ctx-default"))   # no wave named
        assert status == 200 and one["wave"] == 2 and one["propensity"] == treated["propensity"][0]
        status, _, cold = srv.call("POST", "/v1/decisions", ask(10**12, "ctx-cold"))
        assert status == 200 and cold["cold_start"] and cold["policy"] == "thompson_beta" and cold["cell"] is None      # per segment: no features, no cell
        status, _, ready = srv.call("GET", "/health/ready")
        assert ready["policies"]["spring"].startswith("wave run") and ready["reload_error"] is None
    finally: srv.stop()


def test_a_relative_tokens_file_is_the_projects(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "settings.ini").write_text((root / "settings.ini").read_text() + "serve_tokens_file = tokens.txt\n")
    s = load_settings(root, env={})
    assert s.serve_tokens == root / "tokens.txt" and load_settings(tmp_path / "p", env={"CAMPAIGN_LAB_SERVE_TOKENS_FILE": "/x/t"}).serve_tokens == Path("/x/t")
    from campaign_lab.serve import load_tokens
    assert len(load_tokens(s.serve_tokens)) == 2


def test_a_campaign_that_learned_from_another_is_served_as_its_first_wave_drew_it(tmp_path, monkeypatch):
    """learn_from through the CLI, then the service: spring's contextual wave has its feedback folded in, autumn (the same
    catalogue under new variant ids) starts from what spring learned, and before any feedback of its own every customer of
    its first wave gets that wave's arm, variant and propensity from the service, drawn around the learned prior."""
    from campaign_lab.contextual import ContextSpace
    from campaign_lab.waves import fold_feedback, wave_rows
    root = make_project(tmp_path / "p", sample_context=False)   # spring's space is fitted by its first contextual wave, with the defaults
    s = load_settings(root, env={})
    run = lambda *a, at: subprocess.run([str(BIN / "campaign-lab"), "--root", str(root), "run", "wave", *a],
                                        env=cli_env(root) | {"CAMPAIGN_LAB_CLOCK": at}, capture_output=True, text=True, timeout=300)
    r = run("-p", "campaign_id=spring", "-p", "wave=2", "-p", "policy=contextual_thompson", "-p", "reward=conversion", at="2026-12-20T09:00:00")
    assert r.returncode == 0, r.stdout + r.stderr
    tables = {t: read_table(s.lake_dir, t) for t in ("customers", "variants", "arms", "assignments", "bandit_state", "bandit_seen",
                                                     "segments", "events", "context_space", "context_cells")}
    lake = Tables(tables, s.contracts_dir)
    sent = wave_rows(lake, campaign_id="spring", wave=2).rows.filter(arm="treatment")
    won = sent.filter(pl.col("variant_id") == sorted(sent["variant_id"].unique())[0])   # one variant converts a third of its sends
    ev = pl.concat([sent.select("campaign_id", "wave", "customer_id", "variant_id", event_type=pl.lit("send"), revenue=pl.lit(0.0)),
                    won.gather_every(3).select("campaign_id", "wave", "customer_id", "variant_id", event_type=pl.lit("conversion"), revenue=pl.lit(20.0))]
                   ).with_columns(event_id=pl.format("e-{}-{}", "customer_id", "event_type"), event_type=pl.col("event_type").cast(pl.Enum(EVENT_TYPES)),
                                  wave=pl.col("wave").cast(pl.Int32), occurred_at=pl.lit(sent["assigned_at"][0], pl.Datetime("us"))
                   ).select(tables["events"].columns)
    monkeypatch.setenv("CAMPAIGN_LAB_CLOCK", "2026-12-21T09:00:00")   # the feedback a day after the wave, on the same pinned clock
    fb = fold_feedback(PolarsEngine(s), lake, wave_rows(lake, campaign_id="spring", wave=2), ev, reward="conversion")
    commit(s.lake_dir, fb.tables, append=fb.append & set(fb.tables))
    rename = pl.format("a-{}", "variant_id")
    commit(s.lake_dir, {"variants": pl.concat([tables["variants"], tables["variants"].with_columns(variant_id=rename, campaign_id=pl.lit("autumn"))]),
                        "arms": pl.concat([tables["arms"], tables["arms"].with_columns(variant_id=rename, campaign_id=pl.lit("autumn"))])})
    later = {"CAMPAIGN_LAB_CLOCK": "2026-12-31T09:00:00"}   # spring's window has closed: all of its feedback counts
    r = run("-p", "campaign_id=autumn", "-p", "wave=3", "-p", "policy=contextual_thompson", "-p", "reward=conversion", "-p", "learn_from=spring",
            at=later["CAMPAIGN_LAB_CLOCK"])
    assert r.returncode == 0, r.stdout + r.stderr
    space = ContextSpace.from_json(read_table(s.lake_dir, "context_space").filter(campaign_id="autumn")["space"][0])
    assert space.prior_from == "spring@context_state v1" and any(space.prior)
    rows = read_table(s.lake_dir, "assignments").filter(campaign_id="autumn", wave=3).sort("customer_id")
    props = rows.filter(arm="treatment")["propensity"]
    assert props.n_unique() > 1               # not an even first wave: drawn around what spring learned
    srv = Server(root, env=later).start()
    try:
        got = []
        for i in range(0, rows.height, 1000):
            ids = rows["customer_id"][i:i + 1000].to_list()
            status, _, body = srv.call("POST", "/v1/decisions/batch", {"requests": [ask(c, f"au-{c}", campaign="autumn", wave=3) for c in ids]})
            assert status == 200, body
            got += [("holdout" if a["holdout"] else "treatment", a["variant"] and a["variant"]["variant_id"], a["propensity"], a["policy"])
                    for a in body["decisions"]]
        assert got == rows.select(pl.col("arm").cast(pl.String), "variant_id", "propensity", "policy").rows() and len(got) > 1000
    finally: srv.stop()
