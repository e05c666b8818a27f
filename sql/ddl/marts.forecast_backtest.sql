-- Rolling-origin backtest error per store and model.
-- keys: store_id, model
CREATE TABLE IF NOT EXISTS marts.forecast_backtest (
  store_id int,
  model string,
  origins int,
  mape double,
  wape double,
  chosen boolean,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/forecast_backtest';
