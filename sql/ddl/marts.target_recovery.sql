-- How many targets the COALESCE of phones recovers against a Clients-only join.
-- keys: (none: an append log)
CREATE TABLE IF NOT EXISTS marts.target_recovery (
  contracts bigint,
  phones_from_clients bigint,
  phones_from_applications bigint,
  contracts_without_phone bigint,
  positives_clients_only bigint,
  positives_kept bigint,
  positives_ratio double,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/target_recovery';
