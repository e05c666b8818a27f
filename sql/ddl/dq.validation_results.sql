-- Great Expectations results of every validation.
-- keys: (none: an append log)
CREATE TABLE IF NOT EXISTS dq.validation_results (
  table_name string,
  suite string,
  expectation string,
  column_name string,
  severity string,
  success boolean,
  observed_value string,
  run_id string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/dq/validation_results';
