-- Top tenants per vacant premise.
-- keys: item_id, rank
CREATE TABLE IF NOT EXISTS marts.premise_leads (
  item_id bigint,
  rank int,
  user_id bigint,
  score double,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/premise_leads';
