"""All or nothing per run (jobs.core.runs): a refused gate on the last table, or a kill -9 between
two swaps, leaves every table's previous partition, all of one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ctx_for, wh

from jobs.core import runs, storage
from jobs.core.errors import DataQualityError
from jobs.core.tables import TABLES

REPO = Path(__file__).resolve().parents[1]
DS = "2024-06-01"
PLAN, EVAL = TABLES["marts.sales_plan"], TABLES["marts.rec_eval"]


def outputs(spark, version: int) -> list[runs.Output]:
    plan = spark.createDataFrame([(1, None, 100.0 * version, 1.0, 100.0 * version)], PLAN.spark_schema())
    evaluation = spark.createDataFrame([("lightfm", "recall", 10, float(version))], EVAL.spark_schema())
    return [runs.Output(plan, PLAN, DS), runs.Output(evaluation, EVAL, DS)]


def published(spark) -> dict:
    """{table: (version in the rows, run id of the partition)}; absent tables left out."""
    found = {}
    for table, column in ((PLAN, "forecast"), (EVAL, "value")):
        if storage.path_exists(spark, f"{table.partition_path(DS, wh())}/_SUCCESS"):
            [row] = storage.read_partition(spark, table, DS, wh()).collect()
            found[table.qualified] = (int(row[column] / (100.0 if table is PLAN else 1.0)),
                                      runs.run_of(spark, table, DS, wh()))
    return found


def refuse(table_name: str):
    def check(df, table, value, ctx):
        if table.qualified == table_name:
            raise DataQualityError(f"{table.qualified} {value}: refused for the test")
    return check


def leftovers(root: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")
                  if p.name.startswith(("_staging", "_trash", "_lock")) or p.parent.name == "_runs")


def test_every_output_of_a_run_is_published_and_names_the_run(spark, warehouse):
    v1 = ctx_for(DS)
    paths = runs.publish_together(outputs(spark, 1), ctx=v1, check=None)
    assert set(paths) == {PLAN.qualified, EVAL.qualified}
    assert published(spark) == {PLAN.qualified: (1, v1.run_id), EVAL.qualified: (1, v1.run_id)}
    assert leftovers(wh()) == []


def test_a_refused_gate_on_the_last_table_leaves_every_previous_partition(spark, warehouse):
    v1 = ctx_for(DS)
    runs.publish_together(outputs(spark, 1), ctx=v1, check=None)
    with pytest.raises(DataQualityError, match="refused for the test"):
        runs.publish_together(outputs(spark, 2), ctx=ctx_for(DS), check=refuse(EVAL.qualified))
    assert published(spark) == {PLAN.qualified: (1, v1.run_id), EVAL.qualified: (1, v1.run_id)}
    assert leftovers(wh()) == []


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from jobs.core import runs
from jobs.core.spark import get_spark
from test_runs import outputs
from helpers import ctx_for

spark = get_spark("ostap-killed-run", master="local[1]", conf={"spark.ui.enabled": "false"})
swap_one, swaps = runs._swap_one, []

def killed_after_the_first(spark, entry):
    if swaps:
        os.kill(os.getpid(), signal.SIGKILL)  # between the two swaps
    swap_one(spark, entry)
    swaps.append(entry)

runs._swap_one = killed_after_the_first
runs.publish_together(outputs(spark, 2), ctx=ctx_for("2024-06-01", run_id="killedrun00"), check=None)
"""


def test_a_kill_between_two_swaps_is_rolled_back_by_the_next_run(spark, warehouse):
    v1 = ctx_for(DS)
    runs.publish_together(outputs(spark, 1), ctx=v1, check=None)
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(REPO), str(REPO / "tests")],
                            env=dict(os.environ, OSTAP_WAREHOUSE=wh(), OSTAP_SPARK_LOG_LEVEL="ERROR"),
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # The kill left one table swapped and its record behind (a reader sees two runs until a restart).
    assert published(spark) == {PLAN.qualified: (2, "killedrun00"), EVAL.qualified: (1, v1.run_id)}
    record = json.loads(Path(wh(), "_runs", "killedrun00.json").read_text())
    assert [e["table"] for e in record["partitions"]] == [PLAN.qualified, EVAL.qualified]

    # The restarted run rolls the killed one back before anything else, even when its own gate
    # then refuses it: the previous partitions of every table, all of one run.
    with pytest.raises(DataQualityError):
        runs.publish_together(outputs(spark, 3), ctx=ctx_for(DS), check=refuse(EVAL.qualified))
    assert published(spark) == {PLAN.qualified: (1, v1.run_id), EVAL.qualified: (1, v1.run_id)}
    assert leftovers(wh()) == []  # the killed run's locks, staging, trash and record are gone

    v4 = ctx_for(DS)
    runs.publish_together(outputs(spark, 4), ctx=v4, check=None)
    assert published(spark) == {PLAN.qualified: (4, v4.run_id), EVAL.qualified: (4, v4.run_id)}
