-- Sales per store and calendar month (daily, weekly or monthly input rows alike), with the
-- month's first day with sales: a store's opening month that starts after the 1st is partial.
-- Months at or after the forecast month are dropped later, per store, so that a store with
-- no history at all is still reported instead of vanishing here.
SELECT
  store_id,
  CAST(trunc(sale_date, 'MM') AS DATE)        AS month,
  SUM(sales)                                  AS sales,
  MIN(CASE WHEN sales > 0 THEN sale_date END) AS first_sale
FROM {source}
GROUP BY store_id, trunc(sale_date, 'MM')
