-- Snapshot of tenants as of the end of ds: one row per live key. Agency clients looking for space; business_types and districts are '|'-separated lists; river_bank is left, right or any; budget is the monthly rent they can pay.
-- keys: client_id
CREATE TABLE IF NOT EXISTS ods.tenants (
  client_id bigint,
  tenant_name string,
  business_types string,
  districts string,
  river_bank string,
  scale string,
  area_min double,
  area_max double,
  budget double,
  manager_id int,
  created_at timestamp,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/tenants';
