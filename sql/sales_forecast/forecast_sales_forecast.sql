-- marts.sales_forecast: every fitted model's forecast per store and month of the horizon.
SELECT store_id, month, model, yhat, yhat_lower, yhat_upper, chosen
FROM {result}
WHERE kind = 'forecast'
