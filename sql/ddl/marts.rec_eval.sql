-- Offline evaluation of the recommenders on a time split.
-- keys: model, metric
CREATE TABLE IF NOT EXISTS marts.rec_eval (
  model string,
  metric string,
  k int,
  value double,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/rec_eval';
