-- Snapshot of page_views as of the end of ds: one row per live key. Premise pages viewed on the site by known tenants.
-- keys: view_id
CREATE TABLE IF NOT EXISTS ods.page_views (
  view_id bigint,
  client_id bigint,
  premise_id bigint,
  viewed_at timestamp,
  session_id string,
  duration_s int,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/page_views';
