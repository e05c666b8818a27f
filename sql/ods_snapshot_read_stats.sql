-- Figures of the rows a run read, in one pass: rows per reject reason (NULL = valid) and how
-- many valid rows are identical copies of another row. Copies are counted by a 64-bit hash of
-- the whole row: a collision could only lower this figure, never change the snapshot.
SELECT reject_reason, sum(copies) AS rows, sum(copies - 1) AS duplicate_rows
FROM (
  SELECT reject_reason, xxhash64({all_columns}) AS row_hash, count(*) AS copies
  FROM {checked}
  GROUP BY reject_reason, row_hash
)
GROUP BY reject_reason
