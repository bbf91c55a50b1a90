"Contracts: the suites themselves, the bad-input corpus through the CLI, gating in runs, personal data."
import contextlib
import datetime as dt
import io
import json
import re
import subprocess

import polars as pl
import pytest

from campaign_lab.samples import sample_tables
from campaign_lab.contracts import (ContractError, default_parameters, gate, load_suite, read_table_file,
                                    split_offending, suite_json, validate, InputError)
from campaign_lab.lake import TABLES, read_table, table_versions, write_table
from campaign_lab.execute import execute
from conftest import BIN, REPO, cli_env

CONTRACTS = REPO / "data_contracts"
BASE_TABLES = [t for t in TABLES if not t.endswith("_quarantine")]
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.fixture(scope="module")
def tables():
    return sample_tables(400, seed=1)


@pytest.fixture(scope="module")
def params():
    import datetime as dt
    return default_parameters(dt.date(2019, 1, 1))


def test_every_table_has_a_canonical_reviewable_suite():
    for t in BASE_TABLES:
        path = CONTRACTS / f"{t}.json"
        suite = load_suite(t, CONTRACTS)
        assert path.read_text() == suite_json(suite), f"{path} is not in canonical form (sorted keys, no ids)"
        rules = [e.configuration.meta.get("rule") for e in suite.expectations]
        assert all(rules) and len(set(rules)) == len(rules), f"{t}: every rule needs a unique meta.rule"
        columns = next(e for e in suite.expectations if e.expectation_type == "expect_table_columns_to_match_ordered_list")
        assert columns.configuration.kwargs["column_list"] == list(TABLES[t].schema), t


def test_sample_tables_pass_every_contract(tables, params):
    for name, df in tables.items():
        r = validate(name, df, CONTRACTS, params, references=tables)
        assert r.success, r._repr_markdown_()


def test_missing_parameter_is_an_error_naming_it(tables, params):
    p = {k: v for k, v in params.items() if k != "now"}
    with pytest.raises(ValueError, match="contract 'transactions' needs suite parameter\\(s\\) now"):
        validate("transactions", tables["transactions"], CONTRACTS, p)


def test_quarantine_split(tables, params):
    tx = tables["transactions"]
    broken = tx.with_columns(amount=pl.when(pl.col("transaction_id") % 50 == 0).then(-1.0).otherwise(pl.col("amount")))
    r = validate("transactions", broken, CONTRACTS, params, references=tables)
    good, bad = split_offending(r, broken, CONTRACTS, params, references=tables)
    assert bad.height == (tx["transaction_id"] % 50 == 0).sum() and good.height + bad.height == tx.height
    assert (bad["failed_rules"] == "amount is never negative").all()
    # a schema failure has no rows to set aside
    r2 = validate("transactions", broken.drop("items"), CONTRACTS, params)
    with pytest.raises(ContractError, match="missing column"): split_offending(r2, broken.drop("items"), CONTRACTS, params)


# --- the bad-input corpus, through `campaign-lab validate --path` -----------------------------------------

def _corpus(tables, tmp):
    t = tables
    c, tx, ev, seg = t["customers"], t["transactions"], t["events"], t["segments"]
    cases = {
        "customers_missing_column.parquet": ("customers", c.drop("email"), 1, ["missing column(s) email"]),
        "customers_extra_column.parquet": ("customers", c.with_columns(age=pl.lit(3)), 1, ["unexpected column(s) age"]),
        "customers_wrong_type.parquet": ("customers", c.with_columns(pl.col("home_store").cast(pl.String)), 1, ["home_store is String, expected Int32"]),
        "customers_duplicate_key.parquet": ("customers", pl.concat([c, c.head(2)]), 1, ["customer_id is unique"]),
        "customers_null_key.parquet": ("customers", c.with_columns(customer_id=pl.when(pl.col("customer_id") == 7).then(None).otherwise(pl.col("customer_id"))), 1, ["customer_id is never null"]),
        "transactions_negative.parquet": ("transactions", tx.with_columns(amount=-pl.col("amount")), 1, ["amount is never negative"]),
        "transactions_future.parquet": ("transactions", tx.with_columns(ordered_at=pl.col("ordered_at").dt.offset_by("3000d")), 1, ["ordered_at is not in the future"]),
        "segments_unknown_segment.parquet": ("segments", seg.with_columns(segment=pl.lit(500, dtype=pl.Int16)), 1, ["segment is a segment id (at most max_segment)"]),
        "events_unknown_type.csv": ("events", ev.with_columns(pl.col("event_type").cast(pl.String).replace("open", "opened")), 1, ["event_type is one of send, open, click, conversion", "opened"]),
        "events_unknown_customer.parquet": ("events", ev.with_columns(customer_id=pl.col("customer_id") + 10**9), 1, ["the event is for a customer assigned in that campaign and wave"]),
    }
    out = []
    for fname, (table, df, code, words) in cases.items():
        path = tmp / fname
        df.write_csv(path) if fname.endswith(".csv") else df.write_parquet(path)
        out.append((table, path, code, words))
    (tmp / "empty.parquet").write_bytes(b"")
    out.append(("customers", tmp / "empty.parquet", 2, ["the file is empty"]))
    good = tmp / "good.parquet"; c.write_parquet(good)
    (tmp / "truncated.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out.append(("customers", tmp / "truncated.parquet", 2, ["cannot be read as a customers table from parquet"]))
    (tmp / "notparquet.parquet").write_text("this is not parquet\n")
    out.append(("customers", tmp / "notparquet.parquet", 2, ["cannot be read as a customers table from parquet"]))
    (tmp / "latin1.csv").write_bytes("customer_id,signup_date,email,home_store,email_opt_in\n1,2024-01-01,jos\xe9@x.io,1,true\n".encode("latin-1"))
    out.append(("customers", tmp / "latin1.csv", 2, ["cannot be read as a customers table from CSV", "UTF-8"]))
    (tmp / "typo.csv").write_text("customer_id,signup_date,email,home_store,email_opt_in\nabc,2024-01-01,a@x.io,1,true\n")
    out.append(("customers", tmp / "typo.csv", 1, ["customer_id is String, expected Int64"]))
    return out


def test_bad_input_corpus_gives_clear_errors(tables, project, tmp_path):
    # the lake holds the tables that references point to
    for name in ("customers", "variants", "assignments"):
        write_table(project / "lake", name, tables[name])
    # in process through the CLI's entry point (one great-expectations import, not fifteen; the exit codes and
    # messages are main()'s, and the subprocess path is covered by test_validate_lake_table_exit_codes)
    from campaign_lab.cli import main
    for table, path, code, words in _corpus(tables, tmp_path):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err): returncode = main(["--root", str(project), "validate", table, "--path", str(path)], out=out)
        text = out.getvalue() + err.getvalue()
        assert returncode == code, (path.name, returncode, text)
        assert "Traceback" not in text, (path.name, text)
        for w in words: assert w in text, (path.name, w, text)
        assert table in text, (path.name, text)
        assert not EMAIL.search(text.replace("@x.io", "")), (path.name, text)   # no customer email printed


def test_validate_lake_table_exit_codes(tables, project):
    write_table(project / "lake", "customers", tables["customers"])
    r = subprocess.run([str(BIN / "campaign-lab"), "validate", "customers"], capture_output=True, text=True, env=cli_env(project))
    assert r.returncode == 0 and "PASS customers (lake customers v1)" in r.stdout
    write_table(project / "lake", "customers", pl.concat([tables["customers"], tables["customers"].head(1)]))
    r = subprocess.run([str(BIN / "campaign-lab"), "validate", "customers"], capture_output=True, text=True, env=cli_env(project))
    assert r.returncode == 1 and "customer_id is unique" in r.stdout
    r = subprocess.run([str(BIN / "campaign-lab"), "validate", "customers", "--version", "1"], capture_output=True, text=True, env=cli_env(project))
    assert r.returncode == 0
    r = subprocess.run([str(BIN / "campaign-lab"), "validate", "custmers"], capture_output=True, text=True, env=cli_env(project))
    assert r.returncode == 2 and "unknown table 'custmers'" in r.stderr


# --- gating in runs -------------------------------------------------------------------------------------

def test_run_with_broken_contract_fails_publishes_nothing_and_keeps_old_versions(project, monkeypatch):
    ok = execute("synth", {"n_customers": 1500, "seed": 2}, root=project)
    assert ok.ok and {c["table"] for c in ok.manifest["contracts"]} == {"customers", "transactions"}
    assert all(c["success"] for c in ok.manifest["contracts"])
    before = {t: [v.fingerprint for v in table_versions(project / "lake", t)] for t in ("customers", "transactions")}
    # a stricter policy that today's data breaks: every order at most $10
    contracts = project / "contracts"; contracts.mkdir()
    for p in CONTRACTS.glob("*.json"): (contracts / p.name).write_text(p.read_text())
    suite = json.loads((contracts / "transactions.json").read_text())
    for e in suite["expectations"]:
        if e["meta"]["rule"].startswith("amount is at most"): e["kwargs"]["max_value"] = 10; e["meta"]["rule"] = "amount is at most 10"
    (contracts / "transactions.json").write_text(json.dumps(suite))
    monkeypatch.setenv("CAMPAIGN_LAB_CONTRACTS_DIR", str(contracts))
    from campaign_lab.world import answer, load_world     # the chain's next week of orders, as a new export
    week = answer(load_world(project / "world", project / "inbox"), project / "outbox", until=dt.datetime(2026, 11, 8)).orders
    bad = execute("ingest", {"table": "transactions", "paths": [str(week)]}, root=project)
    assert bad.status == "failed" and bad.manifest["error"]["ename"] == "ContractError"
    assert {t: [v.fingerprint for v in table_versions(project / "lake", t)] for t in ("customers", "transactions")} == before
    assert bad.manifest["outputs"] == []
    failed = [c for c in bad.manifest["contracts"] if not c["success"]]
    assert [c["table"] for c in failed] == ["transactions"] and failed[0]["failures"][0]["rule"].startswith("amount is at most 10")
    page = (bad.run_dir / "report.html").read_text()
    assert page.index("a data contract was broken") < page.index("Parameters")
    assert "amount is at most 10" in page[: page.index("Parameters")]
    # quarantine: offending rows set aside, the rest published, the count recorded
    q = execute("ingest", {"table": "transactions", "paths": [str(week)], "quarantine": True}, root=project)
    assert q.ok, q.manifest["error"]
    n_bad = q.manifest["metrics"]["quarantined_transactions"]
    assert n_bad > 0
    assert read_table(project / "lake", "transactions_quarantine").height == n_bad
    new = read_table(project / "lake", "transactions").filter(pl.col("ordered_at") >= dt.datetime(2026, 11, 1))
    assert new.height == q.manifest["metrics"]["added"] > 0 and (new["amount"] <= 10).all()   # the history was not checked again


def test_validate_pipeline_and_no_emails_in_any_report(project):
    ok = execute("synth", {"n_customers": 1200, "seed": 4}, root=project)
    v = execute("validate", root=project)
    assert ok.ok and v.ok and v.manifest["metrics"]["tables_failed"] == 0
    assert v.manifest["metrics"]["tables_checked"] == 2
    write_table(project / "lake", "customers", read_table(project / "lake", "customers").with_columns(
        email=pl.when(pl.col("customer_id") < 3).then(pl.lit("broken-address")).otherwise(pl.col("email"))))
    bad = execute("validate", root=project)
    assert bad.status == "failed" and "email looks like an email address" in (bad.run_dir / "report.html").read_text()
    for page in (project / "runs").glob("*/report.html"):
        text = page.read_text()
        found = [m for m in EMAIL.findall(text) if m.endswith("@example.com")]
        assert not found, (page, found[:3])
    assert "broken-address" not in (bad.run_dir / "report.html").read_text()
