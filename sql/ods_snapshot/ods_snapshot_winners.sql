-- As-of dedup, step 2 of 2: one row per key from the winning changes kept by ods_snapshot.sql.
--
--   hi      the winning position (ods_dt, ods_seq) and, among the changes there, the greatest content
--   lo      the least content at that position
--   copies  changes at the winning position (identical re-deliveries collapse into one)
--
-- hi.content = lo.content exactly when every change at the winning position is identical;
-- otherwise the key is a conflict, never resolved arbitrarily. Content is ods_type plus every
-- payload column that is not a key column. The comparison is exact (no hashing). The input is
-- already partitioned and sorted by key, so this aggregate streams without another shuffle.
SELECT
  {keys},
  max(struct(ods_dt, ods_seq, {content})) AS hi,
  min(struct({content})) AS lo,
  count(*) AS copies,
  max(rows_in_group) AS due_rows,
  max(read_in_group) AS due_rows_read
FROM {ranked}
WHERE row_class = 0
GROUP BY {keys}
