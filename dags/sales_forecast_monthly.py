"""
### sales_forecast_monthly

Forecasts every store's monthly sales from the month of `ds` on, with the analysts' 3-month
linear baseline, seasonal naive and Prophet, each backtested on rolling origins; the model with
the lowest backtest WAPE per store makes the plan (forecast x ambition).

The timetable is a trigger cron on the 1st of each month: `ds` is the 1st of the month being
forecast and the history is every full month before it, read from the sales snapshot of `ds`.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param

from jobs.airflow.dag_defaults import DAG_DEFAULTS, asset, dag_tags, spark_job, wait_for_partitions

with DAG(
    dag_id="sales_forecast_monthly",
    schedule=CronTriggerTimetable("0 0 1 * *", timezone="UTC"),
    doc_md=__doc__,
    tags=dag_tags("forecast", "monthly"),
    params={"ambition": Param(1.0, type="number", minimum=0.5, maximum=2.0),
            "horizon": Param(3, type="integer", minimum=1, maximum=24)},
    **DAG_DEFAULTS,
) as dag:
    snapshots = wait_for_partitions("wait_for_snapshots", ["ods.sales"])
    forecast = spark_job(
        "forecast_sales", "forecast", "--ds", "{{ ds }}",
        "--horizon", "{{ params.horizon }}", "--ambition", "{{ params.ambition }}",
        pipeline="sales_forecast",
        outlets=[asset("marts.sales_forecast"), asset("marts.forecast_backtest"), asset("marts.sales_plan"),
                 asset("marts.forecast_stores")],
    )
    published = EmptyOperator(task_id="published")
    snapshots >> forecast >> published
