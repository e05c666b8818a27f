-- Snapshot of contracts as of the end of ds: one row per live key. Signed credit contracts; bad_flag = 1 marks a bad outcome.
-- keys: contract_id
CREATE TABLE IF NOT EXISTS ods.contracts (
  contract_id bigint,
  client_id bigint,
  application_id bigint,
  sign_date date,
  amount double,
  term_months int,
  bad_flag int,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/contracts';
