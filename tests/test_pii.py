"""Personal data stays in the source zones (raw, ods, state): refused and conflicting change rows
keep personal values only as their keyed hash, and the quality gate's examples of personal
columns are masked in dq.validation_results, Data Docs and messages."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import ctx_for, personal_values_in, wh

from jobs.core import pii, quality, storage, tables
from jobs.core.errors import DataQualityError
from jobs.ods_snapshot.snapshot import build_snapshot

KEY = "pii-test-key-0123456789"
DS = "2024-01-01"
NAMES = {"Ivan Petrov", "Maria Sokolova", "Oleg Orlov"}
PHONES = {"+7 (916) 123-45-67": "79161234567", "89035554433": "79035554433", "+79267770011": "79267770011"}


def client_change(client_id, when, seq, name, msisdn, ods_type="U"):
    return {"ods_dt": dt.datetime.fromisoformat(when) if when else None, "ods_seq": seq, "ods_type": ods_type,
            "client_id": client_id, "full_name": name, "birth_date": dt.date(1980, 5, 17), "msisdn": msisdn,
            "region": "north", "created_at": dt.datetime(2023, 12, 1), "load_date": DS}


def bad_client_rows():
    phones = list(PHONES)
    return [
        client_change(1, "2024-01-01 08:00:00", 1, "Ivan Petrov", phones[0], "I"),
        # a refused row: no ods_seq
        client_change(2, "2024-01-01 09:00:00", None, "Maria Sokolova", phones[1], "I"),
        # a conflict: two different changes of key 3 at the same (ods_dt, ods_seq)
        client_change(3, "2024-01-01 10:00:00", 7, "Oleg Orlov", phones[2], "I"),
        client_change(3, "2024-01-01 10:00:00", 7, "Ivan Petrov", phones[0], "U"),
    ]


def write_raw_clients(spark, rows):
    table = tables.TABLES["raw.clients"]
    spark.createDataFrame(rows, schema=f"{table.schema}, load_date string").write.mode("append") \
        .partitionBy("load_date").parquet(table.path(wh()))


def dq_records(spark, name):
    return [r.asDict() for r in storage.read_partition(spark, tables.TABLES[f"dq.{name}"], DS, wh()).collect()]


def test_the_registry_marks_the_personal_columns_of_every_source_zone():
    for zone in ("raw", "ods", "state"):
        assert tables.TABLES[f"{zone}.clients"].personal == {"full_name": "name", "birth_date": "date",
                                                              "msisdn": "phone"}
        assert tables.TABLES[f"{zone}.applications"].personal == {"phone": "phone"}
    assert tables.TABLES["marts.scoring_targets"].personal == {}
    # Every source column whose name says it is personal is marked (a store's name is a business's).
    for entity, (_, payload, _) in tables.ENTITY_PAYLOADS.items():
        for column in (part.strip().split(" ")[0] for part in payload.split(",")):
            if any(word in column for word in ("name", "phone", "msisdn", "birth")) and column != "store_name":
                assert column in tables.TABLES[f"ods.{entity}"].personal, (entity, column)


def test_refused_and_conflicting_rows_keep_personal_values_only_as_their_keyed_hash(spark, warehouse, monkeypatch):
    monkeypatch.setenv(pii.KEY_ENV, KEY)
    write_raw_clients(spark, bad_client_rows())
    result = build_snapshot(spark, "clients", ctx_for(DS), on_conflict="quarantine", max_reject_share=1.0,
                            validate=False)
    assert (result.rejects, result.conflicts) == (1, 1)
    key = KEY.encode()
    name_hash = lambda name: pii.hash_phone(name, key)  # noqa: E731 - the same HMAC, of the text as is
    [reject] = [json.loads(r["row_json"]) for r in dq_records(spark, "rejects")]
    assert reject["full_name"] == name_hash("Maria Sokolova")
    assert reject["msisdn"] == pii.hash_phone("79035554433", key)  # equal to the published phone_hash
    assert reject["birth_date"] == name_hash("1980-05-17") and reject["region"] == "north"
    conflicts = sorted((json.loads(r["row_json"]) for r in dq_records(spark, "conflicts")), key=lambda r: r["ods_type"])
    assert [c["full_name"] for c in conflicts] == [name_hash("Oleg Orlov"), name_hash("Ivan Petrov")]
    assert personal_values_in([f"{wh()}/dq"], NAMES, set(PHONES.values())) == []
    # ... while the snapshot itself (a source zone) keeps them.
    assert personal_values_in([f"{wh()}/ods"], NAMES, set(PHONES.values()))


def test_without_a_key_refused_rows_record_personal_values_as_redacted(spark, warehouse, monkeypatch):
    monkeypatch.delenv(pii.KEY_ENV, raising=False)
    write_raw_clients(spark, bad_client_rows())
    build_snapshot(spark, "clients", ctx_for(DS), on_conflict="quarantine", max_reject_share=1.0, validate=False)
    [reject] = [json.loads(r["row_json"]) for r in dq_records(spark, "rejects")]
    assert (reject["full_name"], reject["msisdn"], reject["client_id"]) == (pii.REDACTED, pii.REDACTED, 2)
    assert personal_values_in([f"{wh()}/dq"], NAMES, set(PHONES.values())) == []


def test_the_quality_gate_masks_examples_of_personal_columns(spark, warehouse, caplog):
    table = tables.TABLES["ods.clients"]
    # "tel:" fails the suite's msisdn pattern (a warning), so GX keeps the values as examples.
    rows = [(i, name, dt.date(1980, 1, 1), f"tel:{phone}", "north", dt.datetime(2023, 1, 1),
             dt.datetime(2023, 12, 31, 10), i)
            for i, (name, phone) in enumerate(zip(sorted(NAMES), PHONES, strict=True), start=1)]
    rows.append((1, "Ivan Petrov", None, None, "north", None, dt.datetime(2023, 12, 31, 11), 9))  # a duplicate key
    frame = spark.createDataFrame(rows, table.spark_schema())
    with pytest.raises(DataQualityError) as refused:
        storage.publish_partition(frame, table, "2023-12-31", ctx=ctx_for(), check=quality.gate)
    message = str(refused.value)
    assert "expect_column_values_to_be_unique" in message  # the failures are named ...
    assert "msisdn (regex=^[0-9+() -]+$): 3 of 4 rows unexpected, e.g. [***67, ***33, ***11]" in caplog.text
    recorded = [r.asDict() for r in storage.read_partition(spark, tables.TABLES["dq.validation_results"],
                                                           "2023-12-31", wh()).collect()]
    regex = [r for r in recorded if r["expectation"] == "expect_column_values_to_match_regex"]
    assert regex and not regex[0]["success"] and "***" in regex[0]["observed_value"]  # ... the values masked
    assert personal_values_in([f"{wh()}/dq", f"{wh()}/reports"], NAMES, set(PHONES.values())) == []
    for text in (message, caplog.text):
        assert not any(phone in text for phone in PHONES) and not any(name in text for name in NAMES)
