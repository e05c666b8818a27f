-- Snapshot of proposals as of the end of ds: one row per live key. Premises a manager proposed to a tenant; outcome is shown, viewed, rejected or deal.
-- keys: proposal_id
CREATE TABLE IF NOT EXISTS ods.proposals (
  proposal_id bigint,
  client_id bigint,
  premise_id bigint,
  manager_id int,
  proposed_at timestamp,
  outcome string,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/proposals';
