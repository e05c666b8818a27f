-- As-of dedup of ODS change rows, step 1 of 2: every row a run reads, in one pass (one scan,
-- one shuffle by key, one sort), cut down to what the snapshot, the state and dq need.
--
--   row_class 0  due (ods_dt < cutoff): only the changes at the key's greatest (ods_dt, ods_seq)
--                are kept; rank(), not row_number(), keeps every one of them when they tie, so
--                that step 2 (ods_snapshot_winners.sql) can tell re-deliveries from conflicts
--   row_class 1  pending (ods_dt >= cutoff): kept whole, they wait in the state
--   row_class 2  rejected (reject_reason set): kept whole, they go to dq.rejects
--
-- Why a window and not an aggregate (max(struct(ods_dt, ods_seq, ...)), sql/ods_snapshot/ods_snapshot_aggregate.sql):
-- Spark has no hash aggregate for struct buffers, so the aggregate becomes a sort aggregate that
-- sorts every row on the map side, shuffles two whole-row buffers (hi and lo) per key and input
-- split, and sorts again; with changes of one key spread over many files the map side reduces
-- little. Here the rows are shuffled once by key (DISTRIBUTE BY, so no map-side sort), sorted
-- on fixed-width columns, and struct comparisons only happen on the few winning rows.
-- bench/snapshot.py times both. The order is total on (key, ods_dt, ods_seq), so the rows kept
-- do not depend on row order, partitioning or shuffle settings.
--
-- rows_in_group / read_in_group count the rows of the (key, class) group before the cut: the
-- run's figures come from here instead of a separate counting pass. read_here is 0 for rows
-- that come from the previous state (incremental runs), 1 for change rows read now.
SELECT *
FROM (
  SELECT
    *,
    rank() OVER (PARTITION BY {keys}, row_class ORDER BY ods_dt DESC, ods_seq DESC) AS position_rank,
    count(*) OVER whole_group AS rows_in_group,
    sum(read_here) OVER whole_group AS read_in_group
  FROM (
    SELECT
      *,
      CASE WHEN reject_reason IS NOT NULL THEN 2 WHEN ods_dt >= {cutoff} THEN 1 ELSE 0 END AS row_class
    FROM {changes}
    DISTRIBUTE BY {keys}
  )
  WINDOW whole_group AS (PARTITION BY {keys}, row_class ORDER BY ods_dt DESC, ods_seq DESC
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
WHERE row_class > 0 OR position_rank = 1
