"""Scoring targets: phones from clients, else from the latest prior application; hashed; counted.

Expected rows and hashes are written out by hand (hashes with Python's hmac on the phone in
canonical form), not computed with the code under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import subprocess
import sys

import pytest
from helpers import ctx_for, wh  # noqa: E402

from jobs.cli import main
from jobs.core import pii, storage
from jobs.core.errors import BadInputError, OstapError
from jobs.core.tables import TABLES
from jobs.scoring_targets import targets

DS = "2024-06-30"  # with the default 90-day window: contracts signed on or before 2024-04-01
KEY = "test-key-0123456789abcdef"
CLI_SPARK = ["--master", "local[2]", "--conf", "spark.sql.shuffle.partitions=2"]


def h(phone: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), phone.encode(), hashlib.sha256).hexdigest()


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def write_ods(spark, entity: str, rows: list[dict], ds: str = DS) -> None:
    table = TABLES[f"ods.{entity}"]
    filled = [{"ods_dt": ts("2024-01-01 00:00:00"), "ods_seq": 1} | row for row in rows]
    df = spark.createDataFrame([tuple(r.get(c) for c in table.columns) for r in filled], table.spark_schema())
    storage.publish_partition(df, table, ds, ctx=ctx_for(), check=None)


CLIENTS = [
    {"client_id": 1, "msisdn": "+7 (916) 111-11-11"},   # phone on the client
    {"client_id": 2, "msisdn": None},                   # recovered from the latest prior application
    {"client_id": 3, "msisdn": None},                   # later applications ignored
    {"client_id": 4, "msisdn": None},                   # two applications at the same time
    {"client_id": 5, "msisdn": None},                   # no applications: excluded, counted
    # client 6 was deleted in the source: absent from the snapshot, has an application
    # client 7 was deleted and has no application
    {"client_id": 8, "msisdn": "-"},                    # a placeholder is no phone
    {"client_id": 9, "msisdn": "89163333333"},          # same phone as client 10's application
    {"client_id": 10, "msisdn": None},
]
APPLICATIONS = [
    # client 1's application is not used: the client's own phone wins
    {"application_id": 10, "client_id": 1, "phone": "+79160000010", "created_at": ts("2024-02-01 10:00:00")},
    {"application_id": 20, "client_id": 2, "phone": "+79160000020", "created_at": ts("2024-01-05 10:00:00")},
    {"application_id": 21, "client_id": 2, "phone": "+79160000021", "created_at": ts("2024-02-20 10:00:00")},
    {"application_id": 30, "client_id": 3, "phone": "+79160000030", "created_at": ts("2024-02-01 10:00:00")},
    # later on the signing day: still "on or before the contract date"
    {"application_id": 31, "client_id": 3, "phone": "+79160000031", "created_at": ts("2024-03-01 23:59:59.900")},
    # the next day and later: the future, never used (id 32 < 33 shows order is by time first)
    {"application_id": 33, "client_id": 3, "phone": "+79160000033", "created_at": ts("2024-03-02 00:00:00")},
    {"application_id": 32, "client_id": 3, "phone": "+79160000032", "created_at": ts("2024-05-10 09:00:00")},
    # same created_at: the higher application id wins
    {"application_id": 41, "client_id": 4, "phone": "+79160000041", "created_at": ts("2024-02-10 12:00:00")},
    {"application_id": 40, "client_id": 4, "phone": "+79160000040", "created_at": ts("2024-02-10 12:00:00")},
    {"application_id": 60, "client_id": 6, "phone": "8 (916) 000-00-60", "created_at": ts("2024-02-10 12:00:00")},
    {"application_id": 80, "client_id": 8, "phone": "9160000080", "created_at": ts("2024-03-10 12:00:00")},
    {"application_id": 100, "client_id": 10, "phone": "8-916-333-33-33", "created_at": ts("2024-03-10 12:00:00")},
]
CONTRACTS = [
    {"contract_id": 101, "client_id": 1, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 102, "client_id": 2, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 103, "client_id": 3, "sign_date": d("2024-03-01"), "bad_flag": 0},
    {"contract_id": 104, "client_id": 4, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 105, "client_id": 5, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 106, "client_id": 6, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 107, "client_id": 7, "sign_date": d("2024-03-01"), "bad_flag": 1},
    {"contract_id": 108, "client_id": 8, "sign_date": d("2024-04-01"), "bad_flag": 0},   # exactly ds - 90
    {"contract_id": 109, "client_id": 9, "sign_date": d("2024-03-15"), "bad_flag": 1},
    {"contract_id": 110, "client_id": 10, "sign_date": d("2024-03-15"), "bad_flag": 0},
    {"contract_id": 111, "client_id": 1, "sign_date": d("2024-04-02"), "bad_flag": 1},   # outcome not known yet
    # client 2 again, before any of its applications: nothing from applications to fall back on
    {"contract_id": 112, "client_id": 2, "sign_date": d("2024-01-04"), "bad_flag": 0},
]

EXPECTED = {
    101: (1, h("79161111111"), "client", d("2024-03-01"), 1),
    102: (2, h("79160000021"), "application", d("2024-03-01"), 1),
    103: (3, h("79160000031"), "application", d("2024-03-01"), 0),
    104: (4, h("79160000041"), "application", d("2024-03-01"), 1),
    106: (6, h("79160000060"), "application", d("2024-03-01"), 1),
    108: (8, h("79160000080"), "application", d("2024-04-01"), 0),
    109: (9, h("79163333333"), "client", d("2024-03-15"), 1),
    110: (10, h("79163333333"), "application", d("2024-03-15"), 0),
}
EXPECTED_RECOVERY = {
    "contracts": 11,                 # 111 is outside the window
    "phones_from_clients": 2,        # 101, 109
    "phones_from_applications": 6,   # 102, 103, 104, 106, 108, 110
    "contracts_without_phone": 3,    # 105 (no applications), 107 (deleted, no applications), 112
    "positives_clients_only": 2,     # 101, 109
    "positives_kept": 5,             # 101, 102, 104, 106, 109
    "positives_ratio": 2.5,
}


@pytest.fixture
def scoring_ods(spark, warehouse, monkeypatch):
    monkeypatch.setenv(pii.KEY_ENV, KEY)
    write_ods(spark, "clients", CLIENTS)
    write_ods(spark, "applications", APPLICATIONS)
    write_ods(spark, "contracts", CONTRACTS)
    return warehouse


def published_targets(spark, ds: str = DS) -> dict:
    rows = storage.read_partition(spark, TABLES["marts.scoring_targets"], ds, wh()).collect()
    return {r.contract_id: (r.client_id, r.phone_hash, r.phone_source, r.sign_date, r.target) for r in rows}


def test_phones_from_clients_else_latest_prior_application_and_rerun_is_identical(spark, scoring_ods):
    targets.build_and_publish(spark, ctx_for(DS))
    first = published_targets(spark)
    assert first == EXPECTED
    targets.build_and_publish(spark, ctx_for(DS))
    assert published_targets(spark) == first
    assert storage.list_partitions(spark, TABLES["marts.scoring_targets"], wh()) == [DS]


def test_recovery_is_published_and_printed_in_one_line(spark, scoring_ods, capsys):
    assert main(["targets", "--ds", DS, *CLI_SPARK]) == 0
    row = storage.read_partition(spark, TABLES["marts.target_recovery"], DS, wh()).collect()
    assert [r.asDict() for r in row] == [EXPECTED_RECOVERY]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("targets ")]
    assert lines == ["targets ds=2024-06-30: contracts=11 phones_from_clients=2 phones_from_applications=6 "
                     "contracts_without_phone=3 positives_clients_only=2 positives_kept=5 positives_ratio=2.500"]
    metrics = storage.read_partition(spark, TABLES["dq.job_metrics"], DS, wh()).collect()
    assert [(m.job, m.rows_read, m.live_keys) for m in metrics] == [("targets", 11, 8)]


def test_outcome_window_filters_contracts(spark, scoring_ods):
    def linked_ids(window):
        linked = targets.link_contracts(spark, ctx_for(DS), outcome_window_days=window)
        return sorted(r.contract_id for r in linked.where("phone IS NOT NULL").select("contract_id").collect())

    assert linked_ids(90) == sorted(EXPECTED)
    assert linked_ids(89) == sorted([*EXPECTED, 111])           # signed 2024-04-02
    assert linked_ids(108) == [101, 102, 103, 104, 106]         # signed up to 2024-03-14
    with pytest.raises(BadInputError, match="outcome-window-days"):
        targets.link_contracts(spark, ctx_for(DS), outcome_window_days=-1)


def test_missing_key_is_a_clear_error_and_nothing_is_published(spark, scoring_ods, monkeypatch, capsys):
    monkeypatch.delenv(pii.KEY_ENV)
    with pytest.raises(OstapError, match="OSTAP_PII_KEY.*ostap_pii_key"):
        targets.build_and_publish(spark, ctx_for(DS))
    assert main(["targets", "--ds", DS, *CLI_SPARK]) == 2
    assert "OSTAP_PII_KEY" in capsys.readouterr().err
    assert storage.list_partitions(spark, TABLES["marts.scoring_targets"], wh()) == []


def test_key_never_appears_in_the_query_plan(spark, scoring_ods):
    linked = targets.link_contracts(spark, ctx_for(DS))
    plan = targets.hashed_targets(linked, KEY.encode())._jdf.queryExecution().toString()
    assert "phone_hmac" in plan and KEY not in plan


def test_missing_snapshot_names_table_and_ds(spark, warehouse, monkeypatch):
    monkeypatch.setenv(pii.KEY_ENV, KEY)
    write_ods(spark, "contracts", CONTRACTS)
    write_ods(spark, "applications", APPLICATIONS)
    with pytest.raises(OstapError, match=r"ods\.clients has no published partition ds=2024-06-30.*snapshot"):
        targets.build_and_publish(spark, ctx_for(DS))


def test_bad_ds_and_bad_flag_are_refused(spark, scoring_ods):
    with pytest.raises(BadInputError, match="YYYY-MM-DD"):
        targets.build_and_publish(spark, ctx_for("30.06.2024"))
    write_ods(spark, "contracts", CONTRACTS + [
        {"contract_id": 113, "client_id": 1, "sign_date": d("2024-03-01"), "bad_flag": None}])
    with pytest.raises(BadInputError, match=r"ods\.contracts column bad_flag.*contract_id \[113\]"):
        targets.build_and_publish(spark, ctx_for(DS))
    assert storage.list_partitions(spark, TABLES["marts.scoring_targets"], wh()) == []


PHONE_FORMS = {
    "+7 (916) 123-45-67": "79161234567",
    "8 916 123 45 67": "79161234567",
    "79161234567": "79161234567",
    "9161234567": "79161234567",
    "+44 20 7946 0958": "442079460958",
    "-": None,
    "12345": None,
    "": None,
    None: None,
}


def test_phone_normalisation_in_spark_and_python_agree(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(raw,) for raw in PHONE_FORMS], "raw string")
    rows = df.select("raw", pii.normalized_phone(F.col("raw")).alias("norm"),
                     pii.phone_hash_column("raw", KEY.encode()).alias("hash")).collect()
    assert {r.raw: r.norm for r in rows} == PHONE_FORMS
    assert {r.raw: r.hash for r in rows} == {raw: (h(n) if n else None) for raw, n in PHONE_FORMS.items()}
    assert {raw: pii.normalize_phone(raw) for raw in PHONE_FORMS} == PHONE_FORMS
    # the key matters: another key, another hash
    other = df.select(pii.phone_hash_column("raw", b"another-key-0123456789").alias("hash")).collect()
    assert {r.hash for r in other} == {h("79161234567", "another-key-0123456789"), h("442079460958",
                                       "another-key-0123456789"), None}


def test_key_from_the_airflow_variable_only_under_airflow(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != pii.KEY_ENV and not k.startswith("AIRFLOW_CTX_")}
    env |= {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW_VAR_OSTAP_PII_KEY": "key-from-airflow-variable"}
    probe = [sys.executable, "-c", "from jobs.core import pii; print(pii.pii_key().decode())"]
    under_airflow = subprocess.run(probe, env=env | {"AIRFLOW_CTX_DAG_ID": "ostap_scoring"},
                                   capture_output=True, text=True, check=True)
    assert under_airflow.stdout.strip() == "key-from-airflow-variable"
    # outside an Airflow task the Variable is not consulted (and Airflow is not imported)
    monkeypatch.delenv(pii.KEY_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_OSTAP_PII_KEY", "key-from-airflow-variable")
    for name in [n for n in os.environ if n.startswith("AIRFLOW_CTX_")]:
        monkeypatch.delenv(name)
    with pytest.raises(OstapError, match="no key for hashing phones"):
        pii.pii_key()


# ---- generated data: the recovery figures against a count made here with pandas -------------

GEN_START, GEN_DAYS = "2024-01-01", 2
GEN_DS = "2024-01-02"  # the last generated day


def pandas_snapshot(root, entity: str, ds: str):
    """As of ds, per the design: landed by ds, ods_dt before ds+1, last (ods_dt, ods_seq) per key, D removes."""
    import pandas as pd

    keys = list(TABLES[f"ods.{entity}"].keys)
    raw = pd.read_parquet(f"{root}/raw/{entity}")
    raw["load_date"] = raw["load_date"].astype(str)
    for column in raw.columns:  # pyarrow gives UTC-aware timestamps; Spark's are naive UTC
        if getattr(raw[column].dtype, "tz", None) is not None:
            raw[column] = raw[column].dt.tz_convert("UTC").dt.tz_localize(None)
    due = raw[(raw["load_date"] <= ds) & (raw["ods_dt"] < pd.Timestamp(ds) + pd.Timedelta(days=1))]
    due = due.drop(columns="load_date").drop_duplicates()
    last = due.sort_values(["ods_dt", "ods_seq"]).groupby(keys, sort=False).tail(1)
    return last[last["ods_type"] != "D"].drop(columns="ods_type")


def pandas_recovery(root, ds: str, window_days: int = 90) -> dict:
    """The recovery figures counted independently: msisdn, else latest application by sign date."""
    import pandas as pd

    clients = pandas_snapshot(root, "clients", ds)
    apps = pandas_snapshot(root, "applications", ds)
    contracts = pandas_snapshot(root, "contracts", ds)
    contracts["sign_date"] = pd.to_datetime(contracts["sign_date"])
    observable = contracts[contracts["sign_date"] <= pd.Timestamp(ds) - pd.Timedelta(days=window_days)]
    client_phone = clients.set_index("client_id")["msisdn"].dropna().map(pii.normalize_phone).dropna()
    apps = apps.assign(norm=apps["phone"].map(pii.normalize_phone)).dropna(subset=["norm"])
    candidates = observable[["contract_id", "client_id", "sign_date"]].merge(apps, on="client_id")
    candidates = candidates[candidates["created_at"] < candidates["sign_date"] + pd.Timedelta(days=1)]
    latest = (candidates.sort_values(["created_at", "application_id"])
              .groupby("contract_id").tail(1).set_index("contract_id")["norm"])
    has_client = observable["client_id"].map(client_phone).notna().to_numpy()
    has_app = observable["contract_id"].map(latest).notna().to_numpy()
    bad = (observable["bad_flag"] == 1).to_numpy()
    n_clients_only = int((bad & has_client).sum())
    return {
        "contracts": len(observable),
        "phones_from_clients": int(has_client.sum()),
        "phones_from_applications": int((~has_client & has_app).sum()),
        "contracts_without_phone": int((~has_client & ~has_app).sum()),
        "positives_clients_only": n_clients_only,
        "positives_kept": int((bad & (has_client | has_app)).sum()),
        "positives_ratio": (int((bad & (has_client | has_app)).sum()) / n_clients_only) if n_clients_only else None,
    }


def test_recovery_on_generated_data_matches_an_independent_count(spark, warehouse, monkeypatch):
    from jobs.generator.generate import generate_demo
    from jobs.ods_snapshot.snapshot import build_snapshot

    monkeypatch.setenv(pii.KEY_ENV, KEY)
    generate_demo(str(warehouse), GEN_START, GEN_DAYS, seed=7, scale="small")
    for entity in ("clients", "applications", "contracts"):
        build_snapshot(spark, entity, ctx_for(GEN_DS))

    figures = targets.build_and_publish(spark, ctx_for(GEN_DS))
    print(targets.format_figures(GEN_DS, figures))  # visible with -s
    expected = pandas_recovery(warehouse, GEN_DS)
    assert {k: figures[k] for k in expected} == pytest.approx(expected)
    # the point of the job: applications recover phones, and with them positives
    assert figures["phones_from_applications"] > 0 and figures["positives_ratio"] > 1
    published = storage.read_partition(spark, TABLES["marts.scoring_targets"], GEN_DS, wh())
    assert published.count() == expected["phones_from_clients"] + expected["phones_from_applications"]
