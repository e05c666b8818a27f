-- Snapshot of managers as of the end of ds: one row per live key. Agency managers; fired ones keep their history.
-- keys: manager_id
CREATE TABLE IF NOT EXISTS ods.managers (
  manager_id int,
  manager_name string,
  hired_date date,
  fired boolean,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/managers';
