-- The window formulation of sql/ods_snapshot.sql, kept for bench/snapshot.py only.
-- rank() (not row_number(), which would pick one of several tied changes arbitrarily) keeps
-- every change at the winning (ods_dt, ods_seq); the outer aggregate then compares their
-- content exactly like the production query. Same output columns and rows.
SELECT
  {keys},
  max(struct(ods_dt, ods_seq, {content})) AS hi,
  min(struct(~unix_micros(ods_dt) AS neg_dt, ~ods_seq AS neg_seq, {content})) AS lo,
  count(*) AS changes
FROM (
  SELECT *, rank() OVER (PARTITION BY {keys} ORDER BY ods_dt DESC, ods_seq DESC) AS position_rank
  FROM {changes}
)
WHERE position_rank = 1
GROUP BY {keys}
