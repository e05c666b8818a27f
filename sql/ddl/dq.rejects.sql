-- Malformed change rows refused by the snapshot job, with the reason.
-- keys: (none: an append log)
CREATE TABLE IF NOT EXISTS dq.rejects (
  entity string,
  reason string,
  row_json string,
  run_id string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/dq/rejects';
