"""
### ods_snapshot_daily

Rebuilds the as-of snapshot of every ODS source entity for the run's date `ds` (the day whose
changes are complete: the timetable is a data-interval cron, so the run for `ds` starts at
00:00 UTC of the next day). Entities run in parallel; each task computes the snapshot
incrementally from the previous day's state (falling back to a full rebuild when there is none),
checks it with its Great Expectations suite and publishes `ods/<entity>/ds=<ds>` atomically.

Each entity's task waits for its own task of the previous run (`depends_on_past`): day D is
computed from the state day D-1 leaves, so in a backfill (whose runs overlap) it must not start
before D-1 is rewritten, or it would build on the state of before the backfill, or fall back to a
full rebuild. A failed day therefore holds the later days of that entity until it is cleared;
other entities go on.

`published` is the final task other DAGs can wait on.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

from jobs.airflow.dag_defaults import DAG_DEFAULTS, asset, dag_tags, spark_job
from jobs.core.tables import ENTITIES

with DAG(
    dag_id="ods_snapshot_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=dag_tags("ods", "daily"),
    **DAG_DEFAULTS,
) as dag:
    published = EmptyOperator(task_id="published")
    for entity in ENTITIES:
        snapshot = spark_job(
            f"snapshot_{entity}",
            "snapshot", "--entity", entity, "--ds", "{{ ds }}", "--incremental",
            pipeline="ods_snapshot",
            outlets=[asset(f"ods.{entity}")],
            depends_on_past=True,
        )
        snapshot >> published
