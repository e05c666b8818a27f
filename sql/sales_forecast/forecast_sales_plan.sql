-- marts.sales_plan: the chosen model's forecast times the ambition factor.
SELECT
  store_id,
  month,
  yhat                            AS forecast,
  CAST(:ambition AS DOUBLE)       AS ambition,
  yhat * CAST(:ambition AS DOUBLE) AS plan
FROM {result}
WHERE kind = 'forecast' AND chosen
