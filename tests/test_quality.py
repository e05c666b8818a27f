"""The data-quality gate: suites from expectations/, bad inputs refused before publishing, results recorded.

Each bad input goes through storage.publish_partition (the path every job takes) and must give a
DataQualityError naming table, expectation, column and an offending value, leave no published
partition, and leave a failed row in dq.validation_results. The suites are read from
expectations/, never rebuilt here.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ctx_for  # noqa: E402

from jobs.core import quality, storage
from jobs.core.errors import DataQualityError
from jobs.core.tables import TABLES, published_tables

DS = "2024-03-01"
PREVIOUS_DS = "2024-02-29"
EXPECTATIONS = Path(__file__).resolve().parent.parent / "expectations"

# Values that satisfy the documented semantics of a column (tables.py descriptions).
GOOD_VALUES = {
    "river_bank": lambda i: ["left", "right"][i % 2],
    "status": lambda i: ["open", "signed", "lost"][i % 3],
    "outcome": lambda i: ["shown", "viewed", "rejected", "deal"][i % 4],
    "phone_source": lambda i: ["client", "application"][i % 2],
    "target": lambda i: i % 2,
    "bad_flag": lambda i: i % 2,
    "model": lambda i: "lightfm",
    "arm": lambda i: ["treatment", "control"][i % 2],
    "phone_hash": lambda i: f"{i:064x}",
    "msisdn": lambda i: f"+7 916 000-00-{i:02d}",
    "ambition": lambda i: 1.1,
    "rank": lambda i: 1,
    "k": lambda i: 10,
    "term_months": lambda i: 12,
    "floor": lambda i: 2,
    "yhat_lower": lambda i: 90.0,
    "yhat": lambda i: 100.0,
    "yhat_upper": lambda i: 110.0,
    "area_min": lambda i: 50.0,
    "area_max": lambda i: 150.0,
    "positives_ratio": lambda i: 0.5,
    "severity": lambda i: "warning",
}


FORECAST_TABLES = ("sales_forecast", "forecast_backtest")


def _good_value(column: str, ddl_type: str, i: int, day: dt.date, table_name: str):
    if column == "model" and table_name in FORECAST_TABLES:
        return ["lin3", "prophet", "ensemble"][i % 3]
    if table_name == "forecast_stores" and column in ("status", "chosen_model"):
        return {"status": "forecast", "chosen_model": "lin3"}[column]
    if table_name == "ab_readout" and column in ("metric", "p_value", "flags"):
        return {"metric": ["signed_any_share", "signed_shown_share", "rent_per_client"][i % 3], "p_value": 0.5,
                "flags": ["", "underpowered", "sample_ratio_mismatch,underpowered"][i % 3]}[column]
    if column in GOOD_VALUES:
        return GOOD_VALUES[column](i)
    if ddl_type in ("bigint", "int"):
        return i + 1
    if ddl_type == "double":
        return 10.0 * (i + 1)
    if ddl_type == "string":
        return f"{column}-{i}"
    if ddl_type == "boolean":
        return i % 2 == 0
    if ddl_type == "date":
        return day - dt.timedelta(days=30 + i)
    if ddl_type == "timestamp":
        return dt.datetime.combine(day, dt.time(10, 0)) - dt.timedelta(minutes=i)
    raise AssertionError(f"no good value for {column} {ddl_type}")


def good_frame(spark, table, n: int = 3, ds: str = DS):
    """n rows that respect the table's schema, keys and documented semantics."""
    from jobs.core.tables import _split_ddl

    day = dt.date.fromisoformat(ds)
    columns = [part.split(" ", 1) for part in _split_ddl(table.schema)]
    rows = [tuple(_good_value(name, ddl.strip(), i, day, table.name) for name, ddl in columns) for i in range(n)]
    return spark.createDataFrame(rows, table.spark_schema())


def premises(spark, n: int = 3, ds: str = DS):
    return good_frame(spark, TABLES["ods.premises"], n, ds)


def recorded(spark, root, ds: str = DS):
    path = f"{root}/dq/validation_results/ds={ds}"
    return [r.asDict() for r in spark.read.parquet(path).collect()] if Path(path).exists() else []


def assert_refused(spark, root, df, expectation: str, column: str, *fragments: str, ds: str = DS):
    table = TABLES["ods.premises"]
    with pytest.raises(DataQualityError) as caught:
        storage.publish_partition(df, table, ds, ctx=ctx_for(root=str(root)), check=quality.gate)
    message = str(caught.value)
    for part in ("ods.premises", expectation, f"column {column}" if column else "table", *fragments):
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message
    assert ds not in storage.list_partitions(spark, table, str(root))
    failed = [r for r in recorded(spark, root, ds) if not r["success"]]
    assert any(r["expectation"] == expectation and r["column_name"] == column and r["severity"] == "critical"
               and r["table_name"] == "ods.premises" for r in failed), failed
    return message


# ------------------------------------------------------------------------------------ the suites

def test_every_published_table_has_a_suite_true_to_the_registry(spark):
    from pyspark.sql.types import StructType

    for table in published_tables():
        path = EXPECTATIONS / table.pipeline / f"{table.zone}.{table.name}.json"
        assert path.exists(), f"{table.qualified} has no suite {path}"
        suite = json.loads(path.read_text())
        expectations = suite["expectations"]
        assert all(e["meta"]["severity"] in ("critical", "warning") for e in expectations), path
        registry = {f.name: type(f.dataType).__name__ for f in StructType.fromDDL(table.schema).fields}
        types = {e["kwargs"]["column"]: e["kwargs"]["type_"] for e in expectations
                 if e["type"] == "expect_column_values_to_be_of_type"}
        assert types == registry, path
        column_sets = [e["kwargs"]["column_set"] for e in expectations
                       if e["type"] == "expect_table_columns_to_match_set"]
        assert [sorted(c) for c in column_sets] == [sorted(registry)], path
        for key in table.keys:
            assert {"type": "expect_column_values_to_not_be_null", "column": key, "severity": "critical"} in [
                {"type": e["type"], "column": e["kwargs"].get("column"), "severity": e["meta"]["severity"]}
                for e in expectations], f"{path}: key {key} may be null"
        if table.keys:
            unique = [e for e in expectations if e["type"] in (
                "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")]
            assert any(e["kwargs"].get("column_list", [e["kwargs"].get("column")]) == list(table.keys)
                       for e in unique), f"{path}: key {table.keys} not unique"
        quality._build_suite(suite, path)  # every expectation is one GX can build


@pytest.mark.parametrize("name", [t.qualified for t in published_tables()])
def test_a_good_partition_passes_its_suite(spark, warehouse, name):
    table = TABLES[name]
    n = 1 if name == "marts.target_recovery" else 3
    verdict = quality.validate(good_frame(spark, table, n), table, DS, ctx_for(root=str(warehouse)), record=False)
    assert verdict.passed, verdict.summary()
    assert verdict.failed_warnings == [], verdict.summary()
    assert verdict.rows == n


# ------------------------------------------------------------------------------------ bad inputs

# One bad input of each suite's own, written by hand: what is done to a good 3-row partition, and
# the critical expectation that must refuse it. "duplicate key" copies row 0's key onto row 1,
# (column, value) puts value into row 1's column, "no rows" publishes an empty partition.
OWN_BAD_INPUT = {
    "ods.clients": ("duplicate key", "expect_column_values_to_be_unique", "client_id"),
    "ods.applications": (("amount", -1.0), "expect_column_values_to_be_between", "amount"),
    "ods.contracts": (("bad_flag", 2), "expect_column_values_to_be_in_set", "bad_flag"),
    "ods.stores": ("duplicate key", "expect_column_values_to_be_unique", "store_id"),
    "ods.sales": ("duplicate key", "expect_compound_columns_to_be_unique", "store_id,sale_date"),
    "ods.premises": (("price", -10.0), "expect_column_values_to_be_between", "price"),
    "ods.tenants": (("river_bank", "middle"), "expect_column_values_to_be_in_set", "river_bank"),
    "ods.managers": ("duplicate key", "expect_column_values_to_be_unique", "manager_id"),
    "ods.deals": (("status", "pending"), "expect_column_values_to_be_in_set", "status"),
    "ods.proposals": (("outcome", "clicked"), "expect_column_values_to_be_in_set", "outcome"),
    "ods.page_views": (("duration_s", -3), "expect_column_values_to_be_between", "duration_s"),
    "ods.serve_exposures": ("duplicate key", "expect_column_values_to_be_unique", "request_id"),
    "marts.scoring_targets": (("phone_hash", "+7 916 000-00-01"), "expect_column_values_to_match_regex", "phone_hash"),
    "marts.target_recovery": (("positives_ratio", -0.5), "expect_column_values_to_be_between", "positives_ratio"),
    "marts.sales_forecast": (("model", "arima"), "expect_column_values_to_be_in_set", "model"),
    "marts.forecast_backtest": (("wape", -0.1), "expect_column_values_to_be_between", "wape"),
    "marts.sales_plan": ("duplicate key", "expect_compound_columns_to_be_unique", "store_id,month"),
    "marts.forecast_stores": (("status", "open"), "expect_column_values_to_be_in_set", "status"),
    "marts.recommendations": (("arm", "both"), "expect_column_values_to_be_in_set", "arm"),
    "marts.premise_leads": (("rank", 0), "expect_column_values_to_be_between", "rank"),
    "marts.rec_eval": ("duplicate key", "expect_compound_columns_to_be_unique", "model,metric"),
    "marts.ab_readout": (("p_value", 1.5), "expect_column_values_to_be_between", "p_value"),
    "dq.rejects": ("no rows", "expect_table_row_count_to_be_between", ""),
    "dq.conflicts": ("no rows", "expect_table_row_count_to_be_between", ""),
    "dq.job_metrics": (("rejects", -1), "expect_column_values_to_be_between", "rejects"),
    "dq.validation_results": (("severity", "fatal"), "expect_column_values_to_be_in_set", "severity"),
}


def test_every_published_table_has_a_bad_input_of_its_own():
    assert sorted(OWN_BAD_INPUT) == sorted(t.qualified for t in published_tables())


@pytest.mark.parametrize("name", sorted(OWN_BAD_INPUT))
def test_each_suite_refuses_a_bad_input_of_its_own(spark, warehouse, name):
    table = TABLES[name]
    change, expectation, column = OWN_BAD_INPUT[name]
    rows = [r.asDict() for r in good_frame(spark, table, 1 if name == "marts.target_recovery" else 3).collect()]
    if change == "duplicate key":
        rows[1].update({key: rows[0][key] for key in table.keys})
    elif change == "no rows":
        rows = []
    else:
        rows[-1][change[0]] = change[1]
    df = spark.createDataFrame([tuple(r[c] for c in table.columns) for r in rows], table.spark_schema())
    verdict = quality.validate(df, table, DS, ctx_for(root=str(warehouse)), record=False)
    assert not verdict.passed, f"{name}: the suite let {change} through"
    assert (expectation, column) in [(c.expectation, c.column) for c in verdict.failed_critical], verdict.summary()



def test_null_key_is_refused(spark, warehouse):
    from pyspark.sql import functions as F

    df = premises(spark).withColumn("premise_id", F.when(F.col("premise_id") == 2, None).otherwise(F.col("premise_id")))
    assert_refused(spark, warehouse, df, "expect_column_values_to_not_be_null", "premise_id", "e.g. [NULL]")


def test_value_out_of_range_is_refused(spark, warehouse):
    from pyspark.sql import functions as F

    df = premises(spark).withColumn("area", F.when(F.col("premise_id") == 2, -42.5).otherwise(F.col("area")))
    message = assert_refused(spark, warehouse, df, "expect_column_values_to_be_between", "area", "-42.5",
                             "1 of 3 rows")
    assert "min_value=0" in message


def test_missing_column_is_refused(spark, warehouse):
    message = assert_refused(spark, warehouse, premises(spark).drop("price"),
                             "expect_table_columns_to_match_set", "", "missing ['price']")
    assert message.index("expect_table_columns_to_match_set") < message.index("column price")


def test_renamed_column_is_refused(spark, warehouse):
    assert_refused(spark, warehouse, premises(spark).withColumnRenamed("area", "area_m2"),
                   "expect_table_columns_to_match_set", "", "missing ['area']", "unexpected ['area_m2']")


def test_wrong_type_column_is_refused(spark, warehouse):
    from pyspark.sql import functions as F

    df = premises(spark).withColumn("floor", F.col("floor").cast("string"))
    assert_refused(spark, warehouse, df, "expect_column_values_to_be_of_type", "floor",
                   "type_=IntegerType", "observed StringType")


def test_empty_input_is_refused(spark, warehouse):
    df = spark.createDataFrame([], TABLES["ods.premises"].spark_schema())
    assert_refused(spark, warehouse, df, "expect_table_row_count_to_be_between", "", "rows=0")


def test_row_count_collapse_against_the_previous_day_is_refused(spark, warehouse, monkeypatch):
    # Ten rows make a meaningful baseline here; by default the band needs 100 (tiny tables swing).
    monkeypatch.setenv("OSTAP_DQ_MIN_PREVIOUS_ROWS", "10")
    table = TABLES["ods.premises"]
    storage.publish_partition(premises(spark, 10, PREVIOUS_DS), table, PREVIOUS_DS, ctx=ctx_for(root=warehouse),
                              check=quality.gate)
    message = assert_refused(spark, warehouse, premises(spark, 4), "expect_table_row_count_to_be_between", "",
                             "rows=4", f"previous ds={PREVIOUS_DS} rows=10", "min_value=5")
    assert "1 critical expectation(s) failed" in message
    assert storage.list_partitions(spark, table, str(warehouse)) == [PREVIOUS_DS]
    # Within the band (5 of 10 rows = 0.5x) the same day publishes.
    storage.publish_partition(premises(spark, 5), table, DS, ctx=ctx_for(root=str(warehouse)), check=quality.gate)
    assert storage.list_partitions(spark, table, str(warehouse)) == [PREVIOUS_DS, DS]


def test_warnings_are_recorded_and_the_partition_is_published(spark, warehouse):
    from pyspark.sql import functions as F

    table = TABLES["ods.premises"]
    df = premises(spark).withColumn("floor", F.when(F.col("premise_id") == 1, 999).otherwise(F.col("floor")))
    storage.publish_partition(df, table, DS, ctx=ctx_for(root=str(warehouse), run_id="warnrun"), check=quality.gate)
    assert storage.list_partitions(spark, table, str(warehouse)) == [DS]
    rows = [r for r in recorded(spark, warehouse) if r["run_id"] == "warnrun"]
    suite = json.loads((EXPECTATIONS / "ods_snapshot" / "ods.premises.json").read_text())
    assert len(rows) == len(suite["expectations"])
    assert [(r["expectation"], r["column_name"], r["severity"]) for r in rows if not r["success"]] == [
        ("expect_column_values_to_be_between", "floor", "warning")]
    index = warehouse / "reports" / "data_docs" / "index.html"
    page = next((warehouse / "reports" / "data_docs" / "validations" / "ods.premises" / f"ds={DS}").glob(
        "warnrun.passed.html"))
    assert "warnrun" in index.read_text() and "floor" in page.read_text()


def test_a_table_without_a_suite_is_refused(spark, warehouse, monkeypatch, tmp_path):
    monkeypatch.setenv("OSTAP_EXPECTATIONS_DIR", str(tmp_path))
    table = TABLES["ods.premises"]
    with pytest.raises(DataQualityError, match="ods.premises has no expectation suite"):
        storage.publish_partition(premises(spark), table, DS, ctx=ctx_for(root=str(warehouse)), check=quality.gate)
    assert storage.list_partitions(spark, table, str(warehouse)) == []


# ------------------------------------------------------------------------------------ CLI, imports

def test_ostap_validate_prints_a_verdict(spark, warehouse, capsys):
    from jobs import cli

    table = TABLES["marts.recommendations"]
    storage.publish_partition(good_frame(spark, table), table, DS, ctx=ctx_for(root=str(warehouse)), check=quality.gate)
    assert cli.main(["validate", "--table", "recommendations", "--ds", DS, "--run-id", "byhand"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"marts.recommendations ds={DS}: PASSED") and "rows=3" in out
    assert any(r["run_id"] == "byhand" for r in recorded(spark, warehouse))
    assert cli.main(["validate", "--table", "recommendations", "--ds", "2024-03-02"]) == 2
    assert "no published partition ds=2024-03-02" in capsys.readouterr().err


def test_jobs_modules_do_not_import_great_expectations():
    code = ("import sys, jobs.core.quality, jobs.warehouse.validate, jobs.core.storage, jobs.cli; jobs.cli.build_parser(); "
            "assert 'great_expectations' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
