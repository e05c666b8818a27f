"""
### recommendations_daily

Trains the premise recommender (LightFM hybrid) and its baseline for `ds`, evaluates both on a
time split and publishes both arms' lists (`marts.recommendations`), leads per premise
(`marts.premise_leads`) and the offline metrics (`marts.rec_eval`), then loads both arms' lists
into Redis under a new serving version (`ostap serve load`, Redis at `$OSTAP_REDIS_URL`; the
previous version stays for `ostap serve rollback`). Starts once the snapshots it reads are
published for `ds`.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

from jobs.airflow.dag_defaults import (
    DAG_DEFAULTS,
    asset,
    dag_tags,
    ostap_command,
    spark_job,
    wait_for_partitions,
)

INPUTS = ["ods.tenants", "ods.premises", "ods.deals", "ods.proposals", "ods.managers", "ods.page_views"]

with DAG(
    dag_id="recommendations_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=dag_tags("recommendations", "daily"),
    **DAG_DEFAULTS,
) as dag:
    snapshots = wait_for_partitions("wait_for_snapshots", INPUTS)
    recommend = spark_job(
        "train_and_recommend", "recommend", "--ds", "{{ ds }}", "--k", "10",
        pipeline="recommendations",
        outlets=[asset("marts.recommendations"), asset("marts.premise_leads"), asset("marts.rec_eval")],
    )
    serving = ostap_command("load_serving", "serve", "load", "--ds", "{{ ds }}")
    published = EmptyOperator(task_id="published")
    snapshots >> recommend >> serving >> published
