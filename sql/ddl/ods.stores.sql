-- Snapshot of stores as of the end of ds: one row per live key. Retail stores.
-- keys: store_id
CREATE TABLE IF NOT EXISTS ods.stores (
  store_id int,
  store_name string,
  region string,
  store_format string,
  opened_date date,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/stores';
