"""
### scoring_targets_daily

Builds `marts.scoring_targets` for `ds`: contracts whose outcome is observable, linked to the
phone feature tables are keyed by (the client's msisdn, else the phone of the client's latest
application before the contract), published as a keyed hash. Starts once the clients,
contracts and applications snapshots of `ds` are published.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

from jobs.airflow.dag_defaults import DAG_DEFAULTS, asset, dag_tags, spark_job, wait_for_partitions

with DAG(
    dag_id="scoring_targets_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=dag_tags("scoring", "daily"),
    **DAG_DEFAULTS,
) as dag:
    snapshots = wait_for_partitions("wait_for_snapshots", ["ods.clients", "ods.contracts", "ods.applications"])
    targets = spark_job("build_targets", "targets", "--ds", "{{ ds }}",
                        pipeline="scoring_targets",
                        outlets=[asset("marts.scoring_targets"), asset("marts.target_recovery")])
    published = EmptyOperator(task_id="published")
    snapshots >> targets >> published
