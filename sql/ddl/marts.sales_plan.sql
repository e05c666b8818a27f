-- Business plan per store and month: chosen forecast x ambition.
-- keys: store_id, month
CREATE TABLE IF NOT EXISTS marts.sales_plan (
  store_id int,
  month date,
  forecast double,
  ambition double,
  plan double,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/sales_plan';
