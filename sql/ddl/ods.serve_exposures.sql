-- Snapshot of serve_exposures as of the end of ds: one row per live key. Answers of the recommendation API (GET /recommendations) landed from its answer log: the client, its A/B arm and experiment, the model and Redis version served and the premise ids shown ('|'-separated, in rank order).
-- keys: request_id
CREATE TABLE IF NOT EXISTS ods.serve_exposures (
  request_id string,
  served_at timestamp,
  experiment string,
  client_id bigint,
  arm string,
  model string,
  cold_start boolean,
  version string,
  item_ids string,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/serve_exposures';
