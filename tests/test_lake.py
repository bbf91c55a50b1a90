import datetime as dt
import threading

import polars as pl
import pytest

from campaign_lab.lake import (SchemaError, TABLES, catalog, fingerprint_file, read_table, table_versions, write_table)


def customers(n=3, opt_in=True):
    return pl.DataFrame({"customer_id": list(range(1, n + 1)), "signup_date": [dt.date(2024, 1, 1)] * n,
                         "email": [f"c{i}@x.io" for i in range(n)], "home_store": [1] * n,
                         "email_opt_in": [opt_in] * n}, schema=TABLES["customers"].schema)


def test_round_trip_every_table_schema(tmp_path):
    for name, spec in TABLES.items():
        empty = pl.DataFrame(schema=spec.schema)
        v = write_table(tmp_path, name, empty)
        assert v.version == 1 and v.rows == 0
        assert read_table(tmp_path, name).schema == spec.schema


def test_versions_are_immutable_and_identical_writes_reuse(tmp_path):
    v1 = write_table(tmp_path, "customers", customers(), run_id="r1")
    before = fingerprint_file(v1.path)
    v2 = write_table(tmp_path, "customers", customers(opt_in=False), run_id="r2")
    assert (v1.version, v2.version) == (1, 2)
    assert fingerprint_file(v1.path) == before == v1.fingerprint
    again = write_table(tmp_path, "customers", customers(opt_in=False))
    assert again.version == 2 and again.reused and again.run_id == "r2"
    assert [v.version for v in table_versions(tmp_path, "customers")] == [1, 2]
    assert read_table(tmp_path, "customers", version=1)["email_opt_in"].all()
    cat = catalog(tmp_path)
    assert cat.filter(table="customers")["run_id"].to_list() == ["r1", "r2"]


def test_write_refuses_wrong_schema_and_leaves_nothing(tmp_path):
    bad = customers().with_columns(pl.col("home_store").cast(pl.Int64)).drop("email").with_columns(extra=pl.lit(1))
    with pytest.raises(SchemaError) as e: write_table(tmp_path, "customers", bad)
    msg = str(e.value)
    assert "missing column(s) email" in msg and "unexpected column(s) extra" in msg and "home_store is Int64, expected Int32" in msg
    assert table_versions(tmp_path, "customers") == []


def test_read_names_drifted_columns(tmp_path):
    v = write_table(tmp_path, "customers", customers())
    customers().with_columns(pl.col("customer_id").cast(pl.String)).write_parquet(v.path)
    with pytest.raises(SchemaError, match="customer_id is String, expected Int64"): read_table(tmp_path, "customers")


def test_failed_write_leaves_no_version_and_no_temp(tmp_path, monkeypatch):
    write_table(tmp_path, "customers", customers())
    def boom(self, *a, **k): raise OSError("disk full")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"): write_table(tmp_path, "customers", customers(opt_in=False))
    monkeypatch.undo()
    assert [v.version for v in table_versions(tmp_path, "customers")] == [1]
    assert sorted(p.name for p in (tmp_path / "customers").iterdir()) == ["v000001.json", "v000001.parquet"]


def test_concurrent_writers_never_share_a_version(tmp_path):
    frames = [customers(n=i + 2) for i in range(8)]
    out = []
    threads = [threading.Thread(target=lambda f=f: out.append(write_table(tmp_path, "customers", f))) for f in frames]
    for t in threads: t.start()
    for t in threads: t.join()
    assert sorted(v.version for v in out) == list(range(1, 9))
    assert sorted(read_table(tmp_path, "customers", version=v.version).height for v in out) == list(range(2, 10))


def test_unknown_table_and_missing_version(tmp_path):
    with pytest.raises(KeyError, match="unknown lake table 'custmers'"): write_table(tmp_path, "custmers", customers())
    with pytest.raises(FileNotFoundError, match="no version"): read_table(tmp_path, "customers")
    write_table(tmp_path, "customers", customers())
    with pytest.raises(FileNotFoundError, match="no version 3"): read_table(tmp_path, "customers", version=3)
