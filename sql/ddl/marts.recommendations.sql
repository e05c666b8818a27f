-- Top-k premises per tenant from both models; arm is the tenant's A/B arm.
-- keys: user_id, model, rank
CREATE TABLE IF NOT EXISTS marts.recommendations (
  user_id bigint,
  item_id bigint,
  rank int,
  score double,
  model string,
  arm string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/recommendations';
