-- marts.forecast_backtest: rolling-origin error per store and model (NULL where undefined:
-- no origin ran, or every actual was zero). origins = 0 marks a model the store lacked history for.
SELECT
  store_id,
  model,
  origins,
  nanvl(mape, CAST(NULL AS DOUBLE)) AS mape,
  nanvl(wape, CAST(NULL AS DOUBLE)) AS wape,
  chosen
FROM {result}
WHERE kind = 'backtest'
