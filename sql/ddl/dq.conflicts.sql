-- Changes of one key with equal (ods_dt, ods_seq) but different content.
-- keys: (none: an append log)
CREATE TABLE IF NOT EXISTS dq.conflicts (
  entity string,
  key_json string,
  ods_dt timestamp,
  ods_seq bigint,
  row_json string,
  run_id string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/dq/conflicts';
