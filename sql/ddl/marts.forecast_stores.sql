-- Every store of the forecast input and what became of it: status forecast, short_history (baseline only), closed or no_history (no forecast rows); note says why.
-- keys: store_id
CREATE TABLE IF NOT EXISTS marts.forecast_stores (
  store_id int,
  status string,
  history_months int,
  first_month date,
  last_sales_month date,
  chosen_model string,
  note string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/forecast_stores';
