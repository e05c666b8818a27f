-- Figures of every job run.
-- keys: (none: an append log)
CREATE TABLE IF NOT EXISTS dq.job_metrics (
  job string,
  entity string,
  mode string,
  rows_read bigint,
  live_keys bigint,
  deletes_applied bigint,
  duplicates_collapsed bigint,
  conflicts bigint,
  rejects bigint,
  seconds double,
  run_id string,
  finished_at timestamp,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/dq/job_metrics';
