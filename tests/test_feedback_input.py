"""What feedback accepts: CSV as well as parquet, only the wave's own events, plausible revenue, events consistent with
the assignments (the rest set aside and counted), and an empty batch as a no-op. Nothing is ever dropped silently."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from campaign_lab import waves
from campaign_lab.contracts import ContractError, read_table_file
from campaign_lab.context import open_run
from campaign_lab.lake import read_table, table_versions

from conftest import BIN, cli_env
from test_crash_safety import STATE_COLS, events_of, feedback, make_project


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("fbinput") / "base")
    return root, events_of(root)


@pytest.fixture
def proj(base, tmp_path) -> Path:
    shutil.copytree(base[0], tmp_path / "p", symlinks=True)
    return tmp_path / "p"


def state(root: Path) -> pl.DataFrame:
    return read_table(root / "lake", "bandit_state").select(STATE_COLS).sort(STATE_COLS[:4])


def csv_variants(ev: pl.DataFrame, folder: Path) -> dict[str, Path]:
    "The same events as CSV: plain, with a byte-order mark, with CRLF line ends, and with a quoted newline inside a field."
    plain = folder / "plain.csv"
    ev.write_csv(plain)
    text = plain.read_text(encoding="utf-8")
    first = ev["event_id"][0]
    out = {"plain": plain}
    for name, t in {"bom": "\ufeff" + text, "crlf": text.replace("\n", "\r\n"),
                    "quoted_newline": text.replace(first, f'"{first[:6]}\n{first[6:]}"', 1)}.items():
        (folder / f"{name}.csv").write_text(t, encoding="utf-8", newline="")
        out[name] = folder / f"{name}.csv"
    return out


def test_csv_events_feed_like_parquet_and_validate_agrees(base, tmp_path):
    root, ev = base
    ref = tmp_path / "ref"
    shutil.copytree(root, ref, symlinks=True)
    feedback(ref, ev)
    for name, path in csv_variants(ev, tmp_path).items():
        ok = subprocess.run([str(BIN / "campaign-lab"), "validate", "events", "--path", str(path)], capture_output=True, text=True,
                            env=cli_env(root), timeout=300)
        proj = tmp_path / name
        shutil.copytree(root, proj, symlinks=True)
        fb = feedback(proj, open_run(str(proj), "", "feedback").read_file("events", str(path)))
        assert fb.n_new == ev.height, name
        assert ok.returncode == 0, (name, ok.stdout[-1500:])       # validate passes the file feedback folds in
        if name != "quoted_newline": assert state(proj).equals(state(ref)), name


def test_a_csv_events_file_through_the_feedback_pipeline(base, tmp_path):
    root, ev = base
    proj = tmp_path / "p"
    shutil.copytree(root, proj, symlinks=True)
    path = csv_variants(ev, tmp_path)["bom"]
    (tmp_path / "crlf_bom.csv").write_text(path.read_text(encoding="utf-8").replace("\n", "\r\n"), encoding="utf-8", newline="")
    res = subprocess.run([str(BIN / "campaign-lab"), "run", "feedback", "-p", "campaign_id=autumn", "-p", "wave=1",
                          "-p", f"events_path={tmp_path / 'crlf_bom.csv'}"], capture_output=True, text=True, env=cli_env(proj), timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert read_table(proj / "lake", "events").filter(campaign_id="autumn").height == ev.height


def test_events_of_another_campaign_or_wave_are_refused(proj, base):
    _, ev = base
    before = len(table_versions(proj / "lake", "bandit_state"))
    for wrong in (ev.with_columns(campaign_id=pl.lit("spring")), ev.with_columns(wave=pl.lit(0, pl.Int32))):
        with pytest.raises(waves.FeedbackError, match=r"the events are not all of campaign 'autumn' wave 1 \(or an earlier wave of it\)"):
            feedback(proj, wrong)
    assert len(table_versions(proj / "lake", "bandit_state")) == before


def test_a_file_repeating_another_waves_event_ids_is_refused_not_dropped(proj):
    "The sample lake's spring wave-0 events, relabelled as autumn's wave 1: their ids are taken, so the file is refused."
    spring = read_table(proj / "lake", "events").filter(campaign_id="spring")
    rows = read_table(proj / "lake", "assignments").filter(campaign_id="autumn", wave=1, arm="treatment")
    copy = spring.join(rows.select("customer_id", "variant_id"), on="customer_id", suffix="_a").with_columns(
        campaign_id=pl.lit("autumn"), wave=pl.lit(1, pl.Int32), variant_id="variant_id_a").drop("variant_id_a")
    assert copy.height > 0
    with pytest.raises(waves.FeedbackError, match="repeats another wave's events"): feedback(proj, copy)


@pytest.mark.parametrize("revenue", [float("inf"), 1e300, float("nan"), -1.0])
def test_revenue_that_is_not_a_plausible_bill_breaks_the_contract(proj, base, revenue):
    _, ev = base
    conv = pl.col("event_type") == "conversion"
    first = conv & (pl.int_range(pl.len()) == pl.int_range(pl.len()).filter(conv).min())
    with pytest.raises(ContractError, match="revenue is a plausible bill"):   # NaN too: not "never null"
        feedback(proj, ev.with_columns(revenue=pl.when(first).then(revenue).otherwise(pl.col("revenue"))))


def test_events_that_contradict_the_assignments_are_set_aside_and_counted(proj, base):
    _, ev = base
    rows = read_table(proj / "lake", "assignments").filter(campaign_id="autumn", wave=1)
    held = rows.filter(arm="holdout")["customer_id"][0]
    conv = ev.filter(event_type="conversion")
    assigned = rows.filter(customer_id=conv["customer_id"][1])["variant_id"][0]
    other_variant = rows.filter((pl.col("variant_id") != assigned) & pl.col("variant_id").is_not_null())["variant_id"][0]
    odd = pl.concat([
        conv.head(1).with_columns(event_id=pl.lit("x-holdout"), customer_id=pl.lit(held, pl.Int64), variant_id=pl.lit(other_variant)),
        conv.slice(1, 1).with_columns(event_id=pl.lit("x-variant"), variant_id=pl.lit(other_variant)),
        conv.slice(2, 1).with_columns(event_id=pl.lit("x-early"), occurred_at=pl.col("occurred_at").dt.offset_by("-3y"))])
    fb = feedback(proj, pl.concat([ev, odd]))
    assert fb.n_new == ev.height                                   # the consistent events are folded in
    q = read_table(proj / "lake", "events_quarantine")
    assert dict(zip(q["event_id"], q["failed_rules"])) == {  # (the holdout row's variant is never the assigned one: it has none)
        "x-holdout": "the customer was held out of this wave; a response without a send", "x-variant": "the variant is not the one assigned",
        "x-early": "dated before the wave was assigned"}
    assert waves.feedback_metrics(fb, waves.PolarsEngine(), campaign_id="autumn", wave=1, reward="conversion", source="file").quarantined_events == 3
    assert read_table(proj / "lake", "events").filter(pl.col("event_id").str.starts_with("x-")).height == 0


def test_an_empty_events_file_is_a_noop_not_a_failure(proj, base, tmp_path):
    _, ev = base
    path = tmp_path / "empty.csv"
    ev.clear().write_csv(path)
    before = len(table_versions(proj / "lake", "bandit_state"))
    fb = feedback(proj, read_table_file("events", path))
    assert (fb.n_new, fb.tables) == (0, {})
    assert len(table_versions(proj / "lake", "bandit_state")) == before
