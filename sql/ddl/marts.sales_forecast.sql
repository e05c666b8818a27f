-- Monthly sales forecast per store and model for the horizon from the month of ds.
-- keys: store_id, month, model
CREATE TABLE IF NOT EXISTS marts.sales_forecast (
  store_id int,
  month date,
  model string,
  yhat double,
  yhat_lower double,
  yhat_upper double,
  chosen boolean,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/sales_forecast';
