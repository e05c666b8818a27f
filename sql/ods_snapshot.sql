-- As-of dedup of ODS change rows: per key, the change with the greatest (ods_dt, ods_seq).
--
-- One aggregate, no window: Spark aggregates partially before the shuffle (one row per key
-- per input split leaves the map side), where a window must shuffle and sort every change.
-- bench/snapshot.py measures both (see sql/ods_snapshot_window.sql).
--
--   hi      max of (ods_dt, ods_seq, content): the winning position, and among changes at that
--           position the greatest content
--   lo      min of (~micros(ods_dt), ~ods_seq, content): bitwise NOT reverses the order of a
--           bigint without overflow, so this is the same winning position with the least content
--
-- hi.content = lo.content exactly when every change at the winning position is identical
-- (re-deliveries collapse); otherwise the key is a conflict, never resolved arbitrarily.
-- Content is ods_type plus every payload column that is not a key column. The comparison is
-- exact (no hashing) and does not depend on row order, partitioning or shuffle settings.
SELECT
  {keys},
  max(struct(ods_dt, ods_seq, {content})) AS hi,
  min(struct(~unix_micros(ods_dt) AS neg_dt, ~ods_seq AS neg_seq, {content})) AS lo,
  count(*) AS changes
FROM {changes}
GROUP BY {keys}
