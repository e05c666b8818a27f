"""
### abtest_daily

The online A/B test of the recommendations for `ds`: lands that day's answers of `ostap serve`
(its answer log) as change rows of `raw.serve_exposures` (idempotent: one row per request id),
snapshots them like any source (`ods.serve_exposures`), then reads the experiment out on the
deals of `ods.deals` per exposed client (`marts.ab_readout`: per arm, the difference and the
lift with 95% intervals and p-values, sample-ratio and assignment checks, underpowered flags).
The run of `ds = D` starts at 00:00 UTC of D+1, when D's answers are all in the log.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

from jobs.airflow.dag_defaults import DAG_DEFAULTS, asset, dag_tags, spark_job, wait_for_partitions

with DAG(
    dag_id="abtest_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=dag_tags("abtest", "daily"),
    **DAG_DEFAULTS,
) as dag:
    deals = wait_for_partitions("wait_for_snapshots", ["ods.deals"])
    land = spark_job("land_exposures", "abtest", "land", "--ds", "{{ ds }}", pipeline="abtest")
    snapshot = spark_job(
        "snapshot_serve_exposures", "snapshot", "--entity", "serve_exposures", "--ds", "{{ ds }}", "--incremental",
        pipeline="ods_snapshot", outlets=[asset("ods.serve_exposures")], depends_on_past=True,
    )
    readout = spark_job("ab_readout", "abtest", "readout", "--ds", "{{ ds }}", pipeline="abtest",
                        outlets=[asset("marts.ab_readout")])
    published = EmptyOperator(task_id="published")
    land >> snapshot >> readout
    deals >> readout >> published
