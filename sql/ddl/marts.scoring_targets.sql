-- Contracts with observable outcome, linked to a hashed phone (client or application).
-- keys: contract_id
CREATE TABLE IF NOT EXISTS marts.scoring_targets (
  contract_id bigint,
  client_id bigint,
  phone_hash string,
  phone_source string,
  sign_date date,
  target int,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/scoring_targets';
