-- Snapshot of clients as of the end of ds: one row per live key. Credit clients; msisdn is missing for about 40% of them.
-- keys: client_id
CREATE TABLE IF NOT EXISTS ods.clients (
  client_id bigint,
  full_name string,
  birth_date date,
  msisdn string,
  region string,
  created_at timestamp,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/clients';
