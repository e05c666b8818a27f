-- The aggregate formulation of the dedup, kept for bench/snapshot.py only (the job uses the
-- window of ods_snapshot.sql + ods_snapshot_winners.sql; see there why). Same per-key hi/lo:
--   hi   max of (ods_dt, ods_seq, content)
--   lo   min of (~micros(ods_dt), ~ods_seq, content): bitwise NOT reverses the order of a bigint
--        without overflow, so this is the same winning position with the least content
SELECT
  {keys},
  max(struct(ods_dt, ods_seq, {content})) AS hi,
  min(struct(~unix_micros(ods_dt) AS neg_dt, ~ods_seq AS neg_seq, {content})) AS lo,
  count(*) AS changes
FROM {changes}
GROUP BY {keys}
