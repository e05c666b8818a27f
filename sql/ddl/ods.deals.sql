-- Snapshot of deals as of the end of ds: one row per live key. Lease deals; status is open, signed or lost.
-- keys: deal_id
CREATE TABLE IF NOT EXISTS ods.deals (
  deal_id bigint,
  client_id bigint,
  premise_id bigint,
  manager_id int,
  created_at timestamp,
  status string,
  signed_at timestamp,
  monthly_rent double,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/deals';
