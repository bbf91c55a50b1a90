"""Nothing lost, nothing doubled: multi-table publishes are one atomic commit, and concurrent writers never lose an update.

The feedback step publishes events, bandit_state and bandit_seen. It is interrupted at every boundary of its
commit (each table file written, each version numbered, the head replaced) and on a disk that fills up (a real
tmpfs as the lake), then run again: the lake must equal an uninterrupted run's. Concurrent waves of two campaigns,
and two identical waves, run as real pipeline processes at the same moment.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import threading
from pathlib import Path

import polars as pl
import pytest

import campaign_lab.lake as lake_mod
from campaign_lab import waves
from campaign_lab.bandit import make_policy
from campaign_lab.context import open_run
from campaign_lab.lake import EVENT_TYPES, LakeConflict, commit, read_table, table_versions
from campaign_lab.samples import sample_tables

from conftest import BIN, REPO, SETTINGS, cli_env

STATE_COLS = ["campaign_id", "segment", "variant_id", "version", "alpha", "beta", "n", "successes", "reward_sum"]


def make_project(root: Path) -> Path:
    "A project with the sample lake and a second campaign `autumn` whose wave 1 is assigned, its events not yet fed back."
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    t = sample_tables(2000, seed=1)
    t["arms"] = pl.concat([t["arms"], t["arms"].filter(pl.col("segment") < 4).with_columns(campaign_id=pl.lit("autumn"))])
    commit(root / "lake", t, run_id="setup")
    ctx = open_run(str(root), "", "wave")
    w = waves.assign_wave(waves.PolarsEngine(), ctx, campaign_id="autumn", wave=1, policy=make_policy("thompson_beta"), holdout=0.1, seed=7)
    ctx.publish(w.tables, append=w.append)
    return root


def events_of(root: Path) -> pl.DataFrame:
    "What the email system sends back for autumn's wave 1: a send for every treated customer, a conversion for every seventh."
    rows = waves.wave_rows(open_run(str(root), "", "feedback"), campaign_id="autumn", wave=1).rows.filter(arm="treatment")
    def kind(df, k, revenue):
        return df.select(event_id=pl.format("autumn-1-{}-" + k, "customer_id"), campaign_id="campaign_id", wave="wave",
                         customer_id="customer_id", variant_id="variant_id", event_type=pl.lit(k).cast(pl.Enum(EVENT_TYPES)),
                         revenue=pl.lit(revenue), occurred_at=pl.col("assigned_at"))
    return pl.concat([kind(rows, "send", 0.0), kind(rows.filter(pl.col("customer_id") % 7 == 0), "conversion", 21.5)])


def feedback(root: Path, events: pl.DataFrame):
    "The feedback pipeline's library calls, in process."
    ctx = open_run(str(root), "", "feedback")
    batch = waves.wave_rows(ctx, campaign_id="autumn", wave=1)
    return ctx.publish_step(lambda: waves.fold_feedback(waves.PolarsEngine(), ctx, batch, events, reward="conversion"))


def lake_answer(root: Path) -> dict:
    "What readers see of the three feedback tables (wall-clock columns left out)."
    lake = root / "lake"
    return {"state": read_table(lake, "bandit_state").select(STATE_COLS).sort(STATE_COLS[:4]),
            "seen": read_table(lake, "bandit_seen").sort("campaign_id", "event_id"),
            "events": read_table(lake, "events").sort("event_id"),
            "versions": {t: len(table_versions(lake, t)) for t in ("events", "bandit_state", "bandit_seen")}}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, pl.DataFrame, dict]:
    "The project before feedback, its events, and the lake after one uninterrupted feedback run."
    root = make_project(tmp_path_factory.mktemp("crash") / "base")
    ev = events_of(root)
    ref = tmp_path_factory.mktemp("crash") / "reference"
    shutil.copytree(root, ref, symlinks=True)
    fb = feedback(ref, ev)
    assert fb.n_new > 0 and sorted(fb.tables) == ["bandit_seen", "bandit_state", "events"]
    return root, ev, lake_answer(ref)


class Crash(BaseException):
    "Stands for the process dying (not an Exception: nothing may catch it on the way out)."


# every boundary of the feedback commit: three table files written, three versions numbered, the head replaced
BOUNDARIES = [("write_parquet", k) for k in (1, 2, 3)] + [("_claim", k) for k in (1, 2, 3)] + [("_write_head", 1)]


@pytest.mark.parametrize("where,nth", BOUNDARIES, ids=[f"{w}-{n}" for w, n in BOUNDARIES])
def test_feedback_interrupted_at_any_boundary_then_rerun_equals_an_uninterrupted_run(base, tmp_path, monkeypatch, where, nth):
    root, ev, ref = base
    proj = tmp_path / "p"
    shutil.copytree(root, proj, symlinks=True)
    before = lake_answer(proj)
    calls = {"n": 0}
    if where == "write_parquet":
        real = pl.DataFrame.write_parquet
        def target(self, path, *a, **k):
            if "/lake/" in str(path):
                calls["n"] += 1
                if calls["n"] == nth: raise Crash()
            return real(self, path, *a, **k)
        monkeypatch.setattr(pl.DataFrame, "write_parquet", target)
    else:
        real = getattr(lake_mod, where)
        def target(*a, **k):
            calls["n"] += 1
            out = real(*a, **k)          # the step completes, then the process dies right after it
            if calls["n"] == nth: raise Crash()
            return out
        monkeypatch.setattr(lake_mod, where, target)
    with pytest.raises(Crash): feedback(proj, ev)
    monkeypatch.undo()
    after_crash = lake_answer(proj)
    if where == "_write_head":   # the head was replaced: the commit happened, all of it
        assert after_crash["versions"] == ref["versions"]
    else:                        # readers see the lake exactly as before
        assert after_crash["versions"] == before["versions"] and after_crash["state"].equals(before["state"])
    again = feedback(proj, ev)
    got = lake_answer(proj)
    assert got["versions"] == ref["versions"], (got["versions"], ref["versions"])
    for k in ("state", "seen", "events"): assert got[k].equals(ref[k]), k
    assert again.n_new == (0 if where == "_write_head" else ref["events"].height - before["events"].height)


def test_interrupted_commit_leaves_no_temporary_file_and_orphans_are_numbered_past(base, tmp_path, monkeypatch):
    root, ev, ref = base
    proj = tmp_path / "p"
    shutil.copytree(root, proj, symlinks=True)
    real = lake_mod._write_head
    monkeypatch.setattr(lake_mod, "_write_head", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"): feedback(proj, ev)
    monkeypatch.setattr(lake_mod, "_write_head", real)
    leftovers = [p.name for p in (proj / "lake").rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]
    assert leftovers == []
    feedback(proj, ev)
    assert lake_answer(proj)["state"].equals(ref["state"])


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None: return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_feedback_on_a_full_disk_publishes_nothing_and_the_rerun_equals_an_uninterrupted_run(base, tmp_path):
    root, ev, ref = base
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is covered by the ENOSPC test above")
    try:
        outcomes = set()
        for free_kb in (0, 4, 12, 24, 48, 96, 200):   # fill the disk to leave this much room, so the writes fail at different points
            proj = disk / "p"
            shutil.rmtree(proj, ignore_errors=True)
            shutil.copytree(root, proj, symlinks=True)
            before = lake_answer(proj)
            filler = disk / "filler"
            st = os.statvfs(disk)
            room = st.f_bavail * st.f_frsize - free_kb * 1024
            with open(filler, "wb") as f:
                try:
                    f.write(b"\0" * max(room, 0)); f.flush(); os.fsync(f.fileno())
                except OSError: pass
            try:
                feedback(proj, ev); outcomes.add("completed")
                assert lake_answer(proj)["versions"] == ref["versions"]
            except OSError as e:      # polars words a full disk variously ("No space left on device", "Invalid thrift: transport error")
                assert "No space left on device" in str(e) or str(e).startswith("lake table "), e
                outcomes.add("disk full")
                assert lake_answer(proj)["versions"] == before["versions"]   # nothing half-published
            filler.unlink()
            feedback(proj, ev)
            got = lake_answer(proj)
            for k in ("state", "seen", "events"): assert got[k].equals(ref[k]), (free_kb, k)
        assert "disk full" in outcomes
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_concurrent_commits_from_the_same_base_never_lose_an_update(tmp_path):
    "Eight writers each read version 1 and publish: exactly one wins, the others are refused and nothing of theirs is written."
    lake = tmp_path / "lake"
    t = sample_tables(300, seed=1)
    commit(lake, {"customers": t["customers"]})
    results = []
    def writer(i):
        try: results.append(commit(lake, {"customers": t["customers"].head(100 + i)}, expect={"customers": 1}))
        except LakeConflict as e: results.append(e)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for th in threads: th.start()
    for th in threads: th.join()
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 1 and sum(isinstance(r, LakeConflict) for r in results) == 7
    assert [v.version for v in table_versions(lake, "customers")] == [1, 2]
    assert read_table(lake, "customers").height == won[0]["customers"].rows


def cli(root: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "campaign-lab"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(root))


@pytest.fixture(scope="module")
def two_campaigns(tmp_path_factory) -> Path:
    "A project after synth, champion segments and both demo campaigns' variants (the cycle's first steps)."
    root = tmp_path_factory.mktemp("concurrent")
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (root / d).mkdir(exist_ok=True)   # what `campaign-lab init` makes
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    for args in (["run", "synth", "-p", "n_customers=3000"], ["run", "segment_fit"]):
        p = cli(root, *args); out = p.communicate(timeout=600)[0]; assert p.returncode == 0, out
    fit = sorted((root / "runs").glob("*_segment_fit_*"))[-1].name
    # spring_menu for the recent customers only: with win_back's lapsed ones, the two audiences do not overlap, so each campaign
    # has customers whichever wave commits first (with overlapping audiences the cycle's priority order decides; see waves)
    spring = (root / "campaigns" / "spring.yaml").read_text()
    assert "\nfactors:" in spring and "audience:" not in spring
    (root / "campaigns" / "spring_recent.yaml").write_text(spring.replace("\nfactors:", "\naudience:\n  segments: {recency_days: {max: 89.99}}\n\nfactors:", 1))
    for args in (["promote", "segmenter", fit, "--alias", "champion"], ["run", "segment_apply"],
                 ["run", "variants", "-p", "spec=campaigns/win_back.yaml"], ["run", "variants", "-p", "spec=campaigns/spring_recent.yaml"]):
        p = cli(root, *args); out = p.communicate(timeout=600)[0]; assert p.returncode == 0, out
    return root


@pytest.mark.slow   # real pipeline processes (the fixture runs five steps)
def test_two_campaigns_waves_at_the_same_moment_keep_both_and_email_nobody_twice(two_campaigns, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(two_campaigns, root, symlinks=True)
    procs = [cli(root, "run", "wave", "-p", f"campaign_id={c}", "-p", "wave=0") for c in ("win_back", "spring_menu")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n-----\n".join(o[-2500:] for o in outs)
    a = read_table(root / "lake", "assignments").filter(wave=0, arm="treatment")
    assert sorted(a["campaign_id"].unique().to_list()) == ["spring_menu", "win_back"]
    assert a["customer_id"].is_duplicated().sum() == 0            # one campaign email per customer per wave
    assert read_table(root / "lake", "assignments").filter(wave=0)["customer_id"].is_duplicated().sum() == 0


@pytest.mark.slow   # real pipeline processes (the fixture runs five steps)
def test_two_identical_waves_at_the_same_moment_assign_once_and_the_second_says_so(two_campaigns, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(two_campaigns, root, symlinks=True)
    procs = [cli(root, "run", "wave", "-p", "campaign_id=spring_menu", "-p", "wave=0") for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n-----\n".join(o[-2500:] for o in outs)
    a = read_table(root / "lake", "assignments").filter(campaign_id="spring_menu", wave=0)
    assert a["customer_id"].is_duplicated().sum() == 0
    assert len(table_versions(root / "lake", "assignments")) == 1    # one run wrote them
    reports = sorted((root / "runs").glob("*_wave_*/report.html"))
    assert sum("was assigned before: nothing new was written" in r.read_text() for r in reports) == 1
    assert len(list((root / "runs").glob("*_wave_*/send_list.parquet"))) == 1    # one list for the email system, not two


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_synth_interrupted_while_publishing_keeps_the_previous_chain_whole(tmp_path, monkeypatch, nth):
    "A new synthetic chain is four tables: a crash (or a full disk) after any of them leaves the old chain, all of it, and validate passes."
    from campaign_lab.context import check_lake
    from campaign_lab.synth import generate_chain, response_model_frame
    root = tmp_path / "p"
    root.mkdir()
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    def tables(seed):
        c = generate_chain(1500, seed=seed)
        return {"customers": c.customers, "transactions": c.transactions, "customer_truth": c.truth,
                "response_model": response_model_frame(c.response_model)}
    old = open_run(str(root), "", "synth").publish(tables(1))
    new = tables(2)
    real, calls = pl.DataFrame.write_parquet, {"n": 0}
    def dying(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == nth: raise OSError(28, "No space left on device")
        return real(self, path, *a, **k)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", dying)
    with pytest.raises(OSError, match="No space left"): open_run(str(root), "", "synth").publish(new)
    monkeypatch.undo()
    for name, v in old.items():
        assert [x.version for x in table_versions(root / "lake", name)] == [v.version], name   # the old chain's versions, only
    chk = check_lake(open_run(str(root), "", "validate"))
    assert chk.failed == [] and len(chk.results) == 4
