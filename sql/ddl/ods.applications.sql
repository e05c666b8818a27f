-- Snapshot of applications as of the end of ds: one row per live key. Credit applications; the phone is mandatory here.
-- keys: application_id
CREATE TABLE IF NOT EXISTS ods.applications (
  application_id bigint,
  client_id bigint,
  phone string,
  created_at timestamp,
  amount double,
  status string,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/applications';
