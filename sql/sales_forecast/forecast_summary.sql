-- Overall backtest error per model and of the chosen models, pooled over stores and origins:
-- WAPE = sum |error| / sum |actual|; MAPE over the months with a non-zero actual.
WITH scored AS (
  SELECT model, chosen, abs_error, abs_actual, ape_sum, ape_count
  FROM {result}
  WHERE kind = 'backtest' AND origins > 0
),
labelled AS (
  SELECT model AS label, * FROM scored
  UNION ALL
  SELECT 'chosen' AS label, * FROM scored WHERE chosen
)
SELECT
  label                                                  AS model,
  COUNT(*)                                               AS stores,
  SUM(abs_error) / NULLIF(SUM(abs_actual), 0)            AS wape,
  SUM(ape_sum) / NULLIF(SUM(ape_count), 0)               AS mape
FROM labelled
GROUP BY label
ORDER BY label
