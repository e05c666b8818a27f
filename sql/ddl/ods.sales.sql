-- Snapshot of sales as of the end of ds: one row per live key. Daily sales per store.
-- keys: store_id, sale_date
CREATE TABLE IF NOT EXISTS ods.sales (
  store_id int,
  sale_date date,
  sales double,
  receipts int,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/sales';
