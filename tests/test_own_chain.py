"""Proof that campaign_lab runs on data nobody simulated: a small chain's exports written by hand here (not with `synth`),
in the chain's own column names, date formats and labels, ingested through mapping files; two waves exported, answered by
an events file in a CRM's own names and by post-wave orders written by this test; feedback (conversions from the orders);
and a lift report. The lake never holds a synthetic table."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from campaign_lab.execute import execute
from campaign_lab.lake import TABLES, catalog, read_table
from campaign_lab.registry import promote

from conftest import BIN, REPO, SETTINGS, clock, cli_env

pytestmark = pytest.mark.slow   # a whole loop of 17 runs, each its own kernel: in make test-slow (CI runs both)

T0 = dt.datetime(2026, 11, 2, 9)       # the first wave goes out on a Monday morning
N = 900
RNG = np.random.default_rng(20261202)

CUSTOMER_MAPPING = """table: customers
columns: {customer_id: member_id, signup_date: joined, email: mail, home_store: store, email_opt_in: newsletter}
formats: {signup_date: "%d.%m.%Y"}
values: {email_opt_in: {Y: "true", N: "false"}}
"""
ORDER_MAPPING = """table: transactions
columns: {transaction_id: order_id, customer_id: member_id, ordered_at: order_ts, amount: total, items: n_items, used_offer: offer}
derive: {daypart: ordered_at}
"""
EVENT_MAPPING = """table: events
columns: {event_id: msg_id, customer_id: recipient, occurred_at: timestamp, event_type: kind, campaign_id: campaign, wave: send, variant_id: variant}
values: {event_type: {Delivered: send, Opened: open, Clicked: click}}
defaults: {revenue: 0}
"""

# three kinds of regulars, so that the segmentation has something to find: lunch, dinner for families, occasional
KIND = RNG.integers(0, 3, N)
RATE = np.array([0.25, 0.10, 0.03])[KIND]            # orders per day
TICKET = np.array([12.0, 55.0, 25.0])[KIND]
HOUR = np.array([12, 19, 16])[KIND]


def orders(start: dt.datetime, days: int, first_id: int, treated: set[int] = frozenset(), lift: float = 0.0) -> pl.DataFrame:
    "Each customer's orders over `days` days from `start` (more for the treated: `lift` extra orders per day)."
    ids = np.arange(1, N + 1)
    rate = RATE + np.where(np.isin(ids, list(treated)), lift, 0.0)
    n = RNG.poisson(rate * days)
    who = np.repeat(np.arange(N), n)
    day = RNG.integers(0, days, who.size)
    minute = RNG.integers(-45, 45, who.size)
    at = [start.replace(hour=0, minute=0) + dt.timedelta(days=int(d), hours=int(HOUR[w]), minutes=int(m)) for d, w, m in zip(day, who, minute)]
    df = pl.DataFrame({"member_id": ids[who], "order_ts": at, "total": np.round(TICKET[who] * RNG.lognormal(0, 0.3, who.size), 2),
                       "n_items": RNG.integers(1, 5, who.size), "offer": RNG.random(who.size) < 0.1})
    df = df.filter((pl.col("order_ts") >= start) & (pl.col("order_ts") < start + dt.timedelta(days=days))).sort("order_ts")
    return df.with_row_index("order_id", offset=first_id).with_columns(pl.col("order_id").cast(pl.Int64))


def crm_events(send_file: Path, wave: int) -> pl.DataFrame:
    "What a CRM reports about a send file: every email delivered, a third opened, a tenth clicked, in its own names."
    sent = pl.read_csv(send_file, schema_overrides={"external_id": pl.String})
    u = RNG.random(sent.height)
    rows = []
    for kind, mask, hours in (("Delivered", u >= 0, 0), ("Opened", u < 0.33, 2), ("Clicked", u < 0.1, 3)):
        part = sent.filter(pl.Series(mask))
        rows.append(part.select(msg_id=pl.format("crm-{}-{}-{}-{}", "campaign_id", "wave", "external_id", pl.lit(kind)), recipient="external_id",
                                timestamp=pl.lit((T0 + dt.timedelta(days=7 * wave, hours=hours)).isoformat(sep=" ")), kind=pl.lit(kind),
                                campaign="campaign_id", send="wave", variant="variant_id"))
    return pl.concat(rows)


def ingest(root: Path, table: str, path: Path, mapping: Path, at: dt.datetime) -> str:
    r = subprocess.run([str(BIN / "campaign-lab"), "ingest", table, str(path), "--mapping", str(mapping)], capture_output=True, text=True,
                       env=cli_env(root) | {"CAMPAIGN_LAB_CLOCK": at.isoformat()}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "chain"
    root.mkdir()
    (root / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts")
                                       + "export_formats = csv\nattribution_days = 7\n")
    for d in ("lake", "runs", "exports"): (root / d).mkdir()
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    ex = root / "exports"
    for name, text in (("customers.yaml", CUSTOMER_MAPPING), ("orders.yaml", ORDER_MAPPING), ("events.yaml", EVENT_MAPPING)):
        (ex / name).write_text(text)
    signup = [dt.date(2021, 1, 1) + dt.timedelta(days=int(d)) for d in RNG.integers(0, 1500, N)]
    pl.DataFrame({"member_id": np.arange(1, N + 1), "joined": [d.strftime("%d.%m.%Y") for d in signup],
                  "mail": [f"member{i}@chain.example" for i in range(1, N + 1)], "store": RNG.integers(1, 12, N),
                  "newsletter": np.where(RNG.random(N) < 0.9, "Y", "N")}).write_csv(ex / "members.csv")
    history = orders(dt.datetime(2026, 7, 1), 123, first_id=1)           # July to October
    history.write_parquet(ex / "orders_history.parquet")
    log = [ingest(root, "customers", ex / "members.csv", ex / "customers.yaml", T0),
           ingest(root, "transactions", ex / "orders_history.parquet", ex / "orders.yaml", T0)]
    runs, next_id = {}, history.height + 1
    # each run starts its own kernel, which takes the clock pinned at that moment (a warm kernel would keep an older one)
    run = lambda name, params=None, **kw: runs.setdefault(f"{name}{kw.get('tag', '')}", execute(name, params or {}, root=root))
    with clock(T0):
        fit = run("segment_fit", {"sample": N, "bootstraps": 1, "k": 4})
        assert fit.ok, fit.manifest["error"]
        promote(root / "runs", "segmenter", fit.run_id)
        for name, params in (("segment_apply", {}), ("variants", {"spec": "campaigns/spring.yaml"})):
            assert run(name, params).ok, runs[name].manifest["error"]
    for w in (0, 1):
        sent_at = T0 + dt.timedelta(days=7 * w)
        with clock(sent_at):
            wave = run("wave", {"campaign_id": "spring_menu", "wave": w}, tag=w)
            exp = run("export", {"campaign_id": "spring_menu", "wave": w}, tag=w)
            assert wave.ok and exp.ok, (wave.manifest["error"], exp.manifest["error"])
        send_file = root / "outbox" / "spring_menu" / f"wave{w}" / "csv" / f"spring_menu_wave{w}.csv"
        crm_events(send_file, w).write_csv(ex / f"crm_wave{w}.csv")
        treated = set(pl.read_csv(send_file)["external_id"].to_list())
        days = 7 if w == 0 else 21                                    # after the last wave: its whole lift window
        after = orders(sent_at, days, first_id=next_id, treated=treated, lift=0.05)
        next_id += after.height
        after.write_parquet(ex / f"orders_after_wave{w}.parquet")
        answered = sent_at + dt.timedelta(days=days)
        log.append(ingest(root, "transactions", ex / f"orders_after_wave{w}.parquet", ex / "orders.yaml", answered))
        with clock(answered):
            fb = run("feedback", {"campaign_id": "spring_menu", "wave": w, "events_path": str(ex / f"crm_wave{w}.csv"),
                                  "mapping": str(ex / "events.yaml"), "conversions": "orders"}, tag=w)
            assert fb.ok, fb.manifest["error"]
    with clock(T0 + dt.timedelta(days=28)):
        lift = run("lift", {"campaign_id": "spring_menu", "wave": 1, "window_days": 14, "pre_days": 28})
    return root, runs, log


def test_the_chains_own_exports_run_the_whole_loop(own):
    root, runs, log = own
    assert "900 rows read" in log[0] and "900 added" in log[0]
    lift = runs["lift"]
    assert lift.ok, lift.manifest["error"]
    m = lift.manifest["metrics"]
    assert m["window_complete"] is True and m.get("true_spend_rel_lift") is None     # no truth: nobody simulated this chain
    assert m["visits_rel_ci"][0] < m["visits_rel_lift"] < m["visits_rel_ci"][1]
    assert m["visits_rel_lift"] > 0                                       # the treated order more: this test's orders say so
    page = (lift.run_dir / "report.html").read_text()
    assert "In plain words" in page and "true lifts" not in page and "true_rel_lift" not in page   # nothing to compare with


def test_feedback_learned_from_the_orders_and_the_crm(own):
    root, runs, _ = own
    for w in (0, 1):
        fm = runs[f"feedback{w}"].manifest["metrics"]
        assert fm["sends"] > 0 and fm["opens"] > 0 and fm["conversions"] > 0 and fm["source"] == "orders", fm
    ev = read_table(root / "lake", "events")
    conv = ev.filter(event_type="conversion")
    assert conv["event_id"].str.starts_with("order-").all() and (conv["revenue"] > 0).all()
    assert ev.filter(event_type="send").height == read_table(root / "lake", "assignments").filter(arm="treatment").height


def test_the_lake_never_holds_a_synthetic_table(own):
    root, _, _ = own
    tables = set(catalog(root / "lake")["table"].to_list())
    assert tables <= set(TABLES) - {"customer_truth", "response_model"} and not (root / "world").exists()
    assert {"customers", "transactions", "segments", "assignments", "events", "bandit_state"} <= tables
    assert read_table(root / "lake", "customers")["email"].str.ends_with("@chain.example").all()
