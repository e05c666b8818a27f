-- Online A/B readout per experiment, metric and arm (treatment, control, diff, lift, needed) over the clients exposed up to ds; flags name what makes it untrustworthy.
-- keys: experiment, metric, arm
CREATE TABLE IF NOT EXISTS marts.ab_readout (
  experiment string,
  metric string,
  arm string,
  value double,
  ci_low double,
  ci_high double,
  p_value double,
  n_clients bigint,
  flags string,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/marts/ab_readout';
