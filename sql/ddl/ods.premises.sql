-- Snapshot of premises as of the end of ds: one row per live key. Commercial premises for lease; price is the monthly rent.
-- keys: premise_id
CREATE TABLE IF NOT EXISTS ods.premises (
  premise_id bigint,
  area double,
  price double,
  district string,
  river_bank string,
  vacant boolean,
  floor int,
  premise_type string,
  ods_dt timestamp,
  ods_seq bigint,
  ds string
)
USING parquet
PARTITIONED BY (ds)
LOCATION '${warehouse}/ods/premises';
