"""Bad exports, tried through `campaign-lab ingest`: each gives a clear error naming the file, column and rule, exit 1
(2 for a file that cannot be read at all), and no new table version; repeated ids are skipped and counted, never doubled."""
from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from campaign_lab.lake import read_table, table_versions

from conftest import BIN, REPO, cli_env

CUSTOMERS = "customer_id,signup_date,email,home_store,email_opt_in\n" + "".join(
    f"{i},2024-0{1 + i % 9}-1{i % 10},c{i}@example.com,{1 + i % 7},{'true' if i % 5 else 'false'}\n" for i in range(1, 41))
ORDERS = "order_no;member;when;total;qty;promo\n" + "".join(
    f"{1000 + i};{1 + i % 40};{1 + i % 28:02d}/0{1 + i % 9}/2026 {8 + i % 12}:{i % 60:02d};{5 + i % 30},{i % 100:02d};{1 + i % 3};{'ja' if i % 4 == 0 else 'nee'}\n"
    for i in range(200))
MAPPING = """table: transactions
columns: {transaction_id: order_no, customer_id: member, ordered_at: when, amount: total, items: qty, used_offer: promo}
formats: {ordered_at: "%d/%m/%Y %H:%M"}
decimal_comma: [amount]
derive: {daypart: ordered_at}
"""


def ingest(root: Path, table: str, *files, mapping: Path | None = None, quarantine: bool = False) -> subprocess.CompletedProcess:
    args = [str(BIN / "campaign-lab"), "ingest", table, *map(str, files)] + (["--mapping", str(mapping)] if mapping else []) + \
           (["--quarantine"] if quarantine else [])
    return subprocess.run(args, capture_output=True, text=True, env=cli_env(root), timeout=600)


def versions(root: Path) -> dict:
    return {t: [v.fingerprint for v in table_versions(root / "lake", t)] for t in ("customers", "transactions", "transactions_quarantine")}


@pytest.fixture(scope="module")
def base_chain(tmp_path_factory) -> Path:
    "A project whose lake has the hand-written chain's customers and first orders (a decimal comma, day-first dates, Dutch yes/no)."
    from conftest import REPO, SETTINGS
    project = tmp_path_factory.mktemp("ingest") / "base"
    project.mkdir()
    (project / "settings.ini").write_text(SETTINGS.format(pipelines=REPO / "nbs" / "pipelines", contracts=REPO / "data_contracts"))
    for d in ("lake", "runs"): (project / d).mkdir()
    (project / "customers.csv").write_text(CUSTOMERS)
    text = ORDERS.splitlines()   # to CSV: fields with a decimal comma are quoted
    rows = [",".join(f'"{x}"' if "," in x else x for x in line.split(";")) for line in text]
    (project / "orders.csv").write_text("\n".join(rows) + "\n")
    (project / "orders.yaml").write_text(MAPPING.replace("used_offer: promo}", "used_offer: promo}\nvalues: {used_offer: {ja: 'true', nee: 'false'}}"))
    r = ingest(project, "customers", project / "customers.csv")
    assert r.returncode == 0 and "40 added" in r.stdout, r.stdout + r.stderr
    r = ingest(project, "transactions", project / "orders.csv", mapping=project / "orders.yaml")
    assert r.returncode == 0 and "200 added" in r.stdout, r.stdout + r.stderr
    return project


@pytest.fixture
def chain(base_chain, tmp_path) -> Path:
    "A copy of the ingested project for one test."
    import shutil
    shutil.copytree(base_chain, tmp_path / "p")
    return tmp_path / "p"


def test_the_mapped_export_lands_as_the_lake_table(chain):
    tx = read_table(chain / "lake", "transactions").sort("transaction_id")
    assert tx.height == 200 and tx["daypart"].null_count() == 0 and tx["used_offer"].sum() == 50
    first = tx.row(0, named=True)
    assert (first["amount"], str(first["ordered_at"]), first["daypart"]) == (5.0, "2026-01-01 08:00:00", "breakfast")


def test_repeated_ids_within_and_across_files_are_skipped_and_counted(chain):
    again = chain / "again.csv"
    lines = (chain / "orders.csv").read_text().splitlines()
    again.write_text("\n".join(lines[:1] + lines[1:11] + lines[1:3]) + "\n")          # ten known orders, two of them twice
    r = ingest(chain, "transactions", again, chain / "orders.csv", mapping=chain / "orders.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "212 rows read from 2 file(s): 0 added" in r.stdout and "200 already present, 12 repeated in the files" in r.stdout, r.stdout
    assert read_table(chain / "lake", "transactions").height == 200 and len(table_versions(chain / "lake", "transactions")) == 1


def shifted(chain: Path) -> str:
    "The first orders again with new ids (5000 higher): only what a case breaks can refuse them."
    head, *rows = (chain / "orders.csv").read_text().splitlines()
    return "\n".join([head] + [f"{int(r.split(',', 1)[0]) + 5000},{r.split(',', 1)[1]}" for r in rows]) + "\n"


CASES = {   # the first row is: 6000,1,01/01/2026 8:00,"5,00",1,ja
    "a renamed column": (lambda t: t.replace("member", "member_no", 1), 1,
                         ["missing column(s) 'member' (for customer_id)", "'member_no'", "columns:"]),
    "mixed date formats": (lambda t: t.replace("01/01/2026 8:00", "2026-01-01 08:00", 1), 1,
                           ["column 'ordered_at'", "do not match the format '%d/%m/%Y %H:%M'", "'2026-01-01 08:00' (row 1)"]),
    "a decimal point among decimal commas": (lambda t: t.replace('"5,00"', "5.00", 1), 1,
                                             ["column 'amount'", "are not decimal-comma numbers", "'5.00' (row 1)"]),
    "an unknown customer": (lambda t: t.replace("\n6000,1,", "\n6000,999,", 1), 1,
                            ["customer_id refers to a known customer", "transaction_id=6000"]),
    "a negative amount": (lambda t: t.replace('"5,00"', '"-5,00"', 1), 1, ["amount is never negative"]),
    "an empty file": (lambda t: "", 2, ["the file is empty (0 bytes)"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_exports_are_refused_and_nothing_is_written(chain, case):
    change, code, words = CASES[case]
    bad = chain / "bad.csv"
    bad.write_text(change(shifted(chain)))
    before = versions(chain)
    r = ingest(chain, "transactions", bad, mapping=chain / "orders.yaml")
    out = r.stdout + r.stderr
    assert r.returncode == code, (case, r.returncode, out[-1500:])
    for w in words: assert w in out, (case, w, out[-1500:])
    assert str(bad) in out, (case, out[-1500:])                       # the file is named, whatever broke
    assert "nothing was added to the lake" in out and versions(chain) == before, case


def test_unreadable_and_wrongly_encoded_files(chain):
    before = versions(chain)
    trunc = chain / "orders.parquet"
    read_table(chain / "lake", "transactions").write_parquet(trunc)
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    r = ingest(chain, "transactions", trunc)
    assert r.returncode == 2 and "cannot be read as parquet (truncated or not a parquet file?)" in r.stdout and str(trunc) in r.stdout, r.stdout
    latin = chain / "latin.csv"
    latin.write_bytes(CUSTOMERS.replace("c3@example.com", "jos\xe9@example.com").encode("latin-1"))
    r = ingest(chain, "customers", latin)
    assert r.returncode == 1 and "not utf-8 text (byte 0xe9" in r.stdout and "set `encoding:` in the mapping file" in r.stdout, r.stdout
    (chain / "latin.yaml").write_text("table: customers\nencoding: latin-1\n")
    ok = ingest(chain, "customers", latin, mapping=chain / "latin.yaml")
    assert ok.returncode == 0 and "1 updated" in ok.stdout, ok.stdout
    assert versions(chain)["transactions"] == before["transactions"]
    missing = ingest(chain, "customers", chain / "nope.csv")
    assert missing.returncode == 2 and "no such file" in missing.stdout


def test_ambiguous_dates_without_a_format_name_the_key_to_set(chain):
    (chain / "noformat.yaml").write_text((chain / "orders.yaml").read_text().replace('formats: {ordered_at: "%d/%m/%Y %H:%M"}\n', ""))
    r = ingest(chain, "transactions", chain / "orders.csv", mapping=chain / "noformat.yaml")
    assert r.returncode == 1 and "day/month/year or month/day/year? Set `formats.ordered_at`" in r.stdout, r.stdout


def test_orders_for_unknown_customers_can_be_quarantined(chain):
    bad = chain / "stranger.csv"
    lines = (chain / "orders.csv").read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace("1000,1,", "7000,1,", 1), lines[2].replace("1001,2,", "7001,404,", 1)]) + "\n")
    r = ingest(chain, "transactions", bad, mapping=chain / "orders.yaml", quarantine=True)
    assert r.returncode == 0 and "1 added" in r.stdout and "1 rejected" in r.stdout, r.stdout
    q = read_table(chain / "lake", "transactions_quarantine")
    assert q["transaction_id"].to_list() == [7001] and "customer_id refers to a known customer" in q["failed_rules"][0]
    parts = table_versions(chain / "lake", "transactions")[-1].files
    assert len(parts) == 2 and pl.read_parquet(parts[-1])["transaction_id"].to_list() == [7000]   # one new part: the history untouched


def test_the_readmes_example_exports_ingest(project):
    "The README's import-format examples and its point-of-sale export with a mapping go in as documented."
    ex = REPO / "examples"
    r = ingest(project, "customers", ex / "customers.csv")
    assert r.returncode == 0 and "3 added" in r.stdout, r.stdout + r.stderr
    r = ingest(project, "transactions", ex / "transactions.csv", ex / "pos_orders.csv", mapping=None)
    assert r.returncode == 1 and "missing column(s) 'transaction_id'" in r.stdout, r.stdout   # one mapping per ingest: files apart
    assert ingest(project, "transactions", ex / "transactions.csv").returncode == 0
    r = ingest(project, "transactions", ex / "pos_orders.csv", mapping=ex / "pos_orders.yaml")
    assert r.returncode == 0 and "2 added" in r.stdout, r.stdout + r.stderr
    tx = read_table(project / "lake", "transactions").sort("transaction_id")
    assert tx["daypart"].cast(pl.String).to_list()[-2:] == ["lunch", "late"] and tx["amount"].to_list()[-2:] == [18.5, 9.0]


def test_the_example_currents_mapping_is_the_worlds():
    from campaign_lab.world import CURRENTS_MAPPING
    assert (REPO / "examples" / "braze_currents_events.yaml").read_text() == CURRENTS_MAPPING


def test_an_enum_column_converts_its_categories_as_rows_would(tmp_path):
    "A parquet export's Enum column (a pandas/arrow dictionary) is converted once per category: same result as row by row, errors name rows."
    from campaign_lab.ingest import ExportError, Mapping, read_export
    rows = {"transaction_id": [1, 2, 3, 4], "customer_id": [7, 7, 8, 9], "ordered_at": ["2026-01-02 12:00:00"] * 4,
            "amount": [10.0, 12.5, 9.0, 30.0], "items": [1, 2, 1, 3], "used_offer": [False, True, False, False]}
    text = pl.DataFrame(rows | {"daypart": ["Dinner ", "lunch", None, "LATE"]})
    enum = text.with_columns(pl.col("daypart").cast(pl.Enum(["LATE", "lunch", "Dinner "])))   # the export's own order
    m = Mapping("transactions", values={"daypart": {"Dinner ": "dinner", "LATE": "late"}}, defaults={"daypart": "afternoon"})
    text.write_parquet(tmp_path / "text.parquet"); enum.write_parquet(tmp_path / "enum.parquet")
    a, b = read_export("transactions", tmp_path / "text.parquet", m), read_export("transactions", tmp_path / "enum.parquet", m)
    assert b["daypart"].to_list() == ["dinner", "lunch", "afternoon", "late"]
    assert a.equals(b) and b.schema == a.schema
    bad = text.with_columns(pl.col("daypart").cast(pl.Enum(["LATE", "lunch", "Dinner ", "brunch"])))
    bad = bad.with_columns(pl.when(pl.col("transaction_id") == 3).then(pl.lit("brunch")).otherwise("daypart").cast(bad.schema["daypart"]).alias("daypart"))
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ExportError, match=r"bad.parquet: column 'daypart': 1 value\(s\) are not one of .*'brunch' \(row 3\)"):
        read_export("transactions", tmp_path / "bad.parquet", m)
    unused = enum.with_columns(pl.col("daypart").cast(pl.String).cast(pl.Enum(["LATE", "lunch", "Dinner ", "brunch"])))
    unused.write_parquet(tmp_path / "unused.parquet")   # a category no row uses does not fail the file
    assert read_export("transactions", tmp_path / "unused.parquet", m).equals(a)
