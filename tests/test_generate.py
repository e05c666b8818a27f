"""The demo source generator: layout, schemas, determinism, CDC noise at its rates, realism.

Expected figures are computed here from the written files with pandas (and Spark for the
schemas), independently of the generator's own bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.core.tables import ENTITIES, ENTITY_PAYLOADS, TABLES
from jobs.generator.generate import generate_demo

START = dt.date(2024, 1, 1)
DAYS = 12
LAST = START + dt.timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    counts = generate_demo(str(out), START.isoformat(), DAYS, seed=11, scale="small")
    return out, counts


@pytest.fixture(scope="module")
def frames(demo):
    out, _ = demo
    return {e: read_raw(out, e) for e in ENTITIES}


def read_raw(root, entity) -> pd.DataFrame:
    table = pads.dataset(f"{root}/raw/{entity}", format="parquet", partitioning="hive").to_table()
    df = table.to_pandas()
    df["load_date"] = pd.to_datetime(df["load_date"].astype(str)).dt.date
    return df


def payload_columns(df) -> list[str]:
    return [c for c in df.columns if c != "load_date"]


def snapshot(df, entity) -> pd.DataFrame:
    """Last change per key by (ods_dt, ods_seq); keys whose last change is a delete are gone."""
    keys = list(ENTITY_PAYLOADS[entity][0])
    last = df.sort_values(keys + ["ods_dt", "ods_seq"]).groupby(keys).tail(1)
    return last[last.ods_type != "D"]


def file_hashes(root) -> dict[str, str]:
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                hashes[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return hashes


def test_layout_one_plain_parquet_file_per_load_date_with_rows(demo):
    out, counts = demo
    assert sorted(counts) == sorted(ENTITIES)
    for entity in ENTITIES:
        folders = sorted(os.listdir(out / "raw" / entity))
        assert folders, entity
        rows = 0
        for folder in folders:
            assert folder.startswith("load_date=")
            day = dt.date.fromisoformat(folder.split("=", 1)[1])
            assert START <= day <= LAST
            assert os.listdir(out / "raw" / entity / folder) == ["part-00000.parquet"]
            n = pq.read_metadata(out / "raw" / entity / folder / "part-00000.parquet").num_rows
            assert n > 0, f"{entity}/{folder} is empty"
            rows += n
        assert rows == counts[entity]
    total = sum(counts.values())
    assert 20_000 <= total <= 60_000, total


ARROW_TYPES = {"timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(), "bigint": pa.int64(),
               "int": pa.int32(), "double": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}


def test_schema_of_every_entity_is_the_registry_schema(demo):
    out, _ = demo
    for entity in ENTITIES:
        ddl = [part.strip().split() for part in TABLES[f"raw.{entity}"].schema.split(",")]
        expected = [(name, ARROW_TYPES[kind]) for name, kind in ddl]
        assert expected[:3] == [("ods_dt", ARROW_TYPES["timestamp"]), ("ods_seq", pa.int64()),
                                ("ods_type", pa.string())]
        for folder in os.listdir(out / "raw" / entity):
            schema = pq.read_schema(out / "raw" / entity / folder / "part-00000.parquet")
            assert [(f.name, f.type) for f in schema] == expected, f"{entity}/{folder}"


def test_spark_reads_the_registry_types(demo, spark):
    """Spark sees TIMESTAMP (not TIMESTAMP_NTZ), DATE, BIGINT, INT, DOUBLE, BOOLEAN, STRING as registered."""
    out, _ = demo
    for entity in ("clients", "sales", "premises"):  # together they hold every type of the registry
        expected = TABLES[f"raw.{entity}"].spark_schema()
        got = spark.read.parquet(str(out / "raw" / entity / f"load_date={START}" / "part-00000.parquet")).schema
        assert [(f.name, f.dataType) for f in got] == [(f.name, f.dataType) for f in expected], entity


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_demo(str(tmp_path / name), "2024-03-01", 4, seed=seed, scale="small")
    a, b, c = (file_hashes(tmp_path / name) for name in "abc")
    assert a == b and len(a) > 20
    assert a != c


def test_initial_load_then_daily_inserts_updates_deletes_and_reinserts(frames):
    reinserts = deletes = 0
    for entity in ("clients", "premises", "tenants", "sales"):
        df = frames[entity]
        first_day = df[df.load_date == START]
        assert (first_day.ods_dt.dt.date == START).all()
        assert {"I", "U"} <= set(df.ods_type), entity
        deletes += int((df.ods_type == "D").sum())
        keys = list(ENTITY_PAYLOADS[entity][0])
        ordered = df.drop_duplicates(payload_columns(df)).sort_values(keys + ["ods_dt", "ods_seq"])
        previous = ordered.groupby(keys).ods_type.shift()
        reinserts += int(((ordered.ods_type == "I") & (previous == "D")).sum())
        # Every change after the first of a key follows a live row; a delete is not followed by an update.
        assert not (ordered.ods_type.isin(["U", "D"]) & (previous.isna() | (previous == "D"))).any(), entity
    assert deletes >= 10 and reinserts >= 2, (deletes, reinserts)
    later = pd.concat([frames[e][frames[e].load_date > START] for e in ENTITIES])
    assert set(later.load_date) == {START + dt.timedelta(days=i) for i in range(1, DAYS)}
    clients = frames["clients"]
    initial = clients[clients.load_date == START]
    assert initial.created_at.min() < pd.Timestamp("2020-01-01", tz="UTC")  # history of years


def test_cdc_noise_at_about_its_rates_and_no_conflicts_or_bad_rows_by_default(frames):
    totals = dict(rows=0, duplicates=0, same_tick=0, late=0, conflicts=0, bad=0)
    for entity, df in frames.items():
        keys = list(ENTITY_PAYLOADS[entity][0])
        cols = payload_columns(df)
        totals["rows"] += len(df)
        totals["duplicates"] += int(df.duplicated(cols).sum())
        distinct = df.drop_duplicates(cols)
        totals["same_tick"] += int(distinct.duplicated(keys + ["ods_dt"]).sum())
        totals["conflicts"] += int(distinct.duplicated(keys + ["ods_dt", "ods_seq"]).sum())
        totals["late"] += int((df.load_date > df.ods_dt.dt.date).sum())
        totals["bad"] += int((df[keys + ["ods_dt", "ods_seq"]].isna().any(axis=1)
                              | ~df.ods_type.isin(["I", "U", "D"])).sum())
        # ods_dt is on the 0.1 s grid and ods_seq grows with it.
        assert (df.ods_dt.dt.microsecond % 100_000 == 0).all(), entity
        by_seq = distinct.sort_values("ods_seq")
        assert (by_seq.ods_dt.diff().dropna() >= pd.Timedelta(0)).all(), entity
    n = totals["rows"]
    assert 0.003 <= totals["duplicates"] / n <= 0.008, totals
    assert 0.006 <= totals["same_tick"] / n <= 0.015, totals
    assert 0.007 <= totals["late"] / n <= 0.02, totals
    assert totals["conflicts"] == 0 and totals["bad"] == 0, totals


def test_injected_conflicts_and_bad_rows_only_when_asked(tmp_path):
    generate_demo(str(tmp_path), "2024-01-01", 5, seed=3, scale="small", inject_conflicts=True,
                  inject_bad_rows=True)
    for entity in ENTITIES:
        df = read_raw(tmp_path, entity)
        keys = list(ENTITY_PAYLOADS[entity][0])
        cols = payload_columns(df)
        good = df[df[keys + ["ods_dt", "ods_seq"]].notna().all(axis=1) & df.ods_type.isin(["I", "U", "D"])]
        distinct = good.drop_duplicates(cols)
        conflicts = distinct[distinct.duplicated(keys + ["ods_dt", "ods_seq"], keep=False)]
        assert conflicts.groupby(keys + ["ods_dt", "ods_seq"]).ngroups >= 3, entity
        assert df[keys].isna().any(axis=1).sum() >= 1, entity
        assert (df.ods_type == "X").sum() >= 1, entity
        assert df.ods_dt.isna().sum() >= 1 and df.ods_seq.isna().sum() >= 1, entity


def test_credit_clients_applications_contracts(frames):
    clients = snapshot(frames["clients"], "clients")
    apps = snapshot(frames["applications"], "applications")
    contracts = snapshot(frames["contracts"], "contracts")
    assert 0.35 <= clients.msisdn.isna().mean() <= 0.45
    assert frames["applications"].phone.notna().all()
    assert apps.groupby("client_id").size().max() >= 2
    linked = contracts.merge(apps, on="application_id", suffixes=("", "_app"))
    assert len(linked) == len(contracts)
    assert (linked.client_id == linked.client_id_app).all()
    assert (pd.to_datetime(linked.sign_date).dt.tz_localize("UTC") > linked.created_at).all()
    # Some clients applied again after a contract (the phone must come from on or before it).
    later = linked.merge(apps[["client_id", "created_at"]], on="client_id", suffixes=("", "_other"))
    assert (later.created_at_other.dt.date > later.sign_date).any()
    observed = contracts[contracts.sign_date <= LAST - dt.timedelta(days=90)]
    assert len(observed) >= 500
    assert 0.03 <= observed.bad_flag.mean() <= 0.07
    assert set(contracts.bad_flag) <= {0, 1}


def test_sales_history_seasonality_and_late_openings(frames):
    stores = snapshot(frames["stores"], "stores")
    sales = snapshot(frames["sales"], "sales")
    assert len(stores) == 10
    span = sales.groupby("store_id").sale_date.agg(["min", "max", "count"])
    months = (pd.to_datetime(span["max"]) - pd.to_datetime(span["min"])).dt.days / 30.44
    assert (months >= 48).mean() >= 0.7
    assert (months < 24).any()  # a store opened late
    assert (span["count"] >= (pd.to_datetime(span["max"]) - pd.to_datetime(span["min"])).dt.days * 0.98).all()
    assert (sales.sales >= 0).all() and (sales.sales == 0).any()
    dates = pd.to_datetime(sales.sale_date)
    by_month = sales.groupby(dates.dt.month).sales.mean()
    assert by_month[12] > 1.1 * by_month[11]
    by_weekday = sales.groupby(dates.dt.dayofweek).sales.mean()
    assert by_weekday[5] > 1.15 * by_weekday[6]  # Saturday beats Sunday


def test_leasing_entities_are_consistent_and_views_follow_tenant_needs(frames):
    premises = snapshot(frames["premises"], "premises")
    tenants = snapshot(frames["tenants"], "tenants")
    managers = snapshot(frames["managers"], "managers")
    assert (premises.groupby("district").river_bank.nunique() == 1).all()
    assert premises.district.nunique() == 10 and set(premises.river_bank) == {"left", "right"}
    assert 0.2 <= premises.vacant.mean() <= 0.8
    assert set(tenants.river_bank) == {"left", "right", "any"}
    assert tenants.business_types.str.contains("|", regex=False).any()
    assert tenants.districts.str.contains("|", regex=False).any()
    assert (tenants.area_min < tenants.area_max).all() and (tenants.budget > 0).all()
    fired = set(managers.manager_id[managers.fired])
    assert fired and tenants.manager_id.isin(fired).any() and not tenants.manager_id.isin(fired).all()
    for entity in ("deals", "proposals", "page_views"):
        df = snapshot(frames[entity], entity)
        assert df.client_id.isin(frames["tenants"].client_id).all(), entity
        assert df.premise_id.isin(frames["premises"].premise_id).all(), entity
    assert set(snapshot(frames["deals"], "deals").status) == {"open", "signed", "lost"}
    assert set(snapshot(frames["proposals"], "proposals").outcome) == {"shown", "viewed", "rejected", "deal"}
    # Tenants view premises that fit their districts and area far more often than chance.
    views = snapshot(frames["page_views"], "page_views").merge(tenants, on="client_id").merge(
        premises[["premise_id", "district", "area"]], on="premise_id")
    in_district = np.mean([d in ds.split("|") for d, ds in zip(views.district, views.districts, strict=True)])
    chance = np.mean([premises.district.isin(ds.split("|")).mean() for ds in tenants.districts])
    assert in_district > 1.5 * chance
    in_area = ((views.area >= views.area_min * 0.8) & (views.area <= views.area_max * 1.25)).mean()
    assert in_area > 0.5


def test_cli_prints_a_table_and_writes_into_the_warehouse_by_default(warehouse, capsys):
    assert main(["generate", "--days", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "page_views" in out and "total" in out
    assert (warehouse / "raw" / "clients" / "load_date=2024-01-02" / "part-00000.parquet").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--start", "2024-13-01", "YYYY-MM-DD"),
    ("--days", "0", "at least 1"),
    ("--days", "ten", "whole number"),
    ("--scale", "huge", "small, medium, large"),
    ("--seed", "-1", "negative"),
])
def test_bad_options_are_rejected_with_one_clear_line(tmp_path, capsys, option, value, words):
    assert main(["generate", "--out", str(tmp_path), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert option in err and words in err
    assert not (tmp_path / "raw").exists()
