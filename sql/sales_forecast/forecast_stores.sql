-- marts.forecast_stores: one row per store of the input, what the forecast did with it and why
-- (closed and no_history stores have no rows in the other tables).
SELECT store_id, status, history_months, first_month, last_sales_month, model AS chosen_model, note
FROM {result}
WHERE kind = 'store'
