-- Typed sales rows for `ostap forecast`, whatever the source (ods.sales or a --sales file).
-- try_cast keeps unparsable values as NULL so the job can name the offending rows.
SELECT
  CAST(store_id AS STRING)        AS store_id_raw,
  CAST(sale_date AS STRING)       AS sale_date_raw,
  CAST(sales AS STRING)           AS sales_raw,
  try_cast(store_id AS INT)       AS store_id,
  try_cast(sale_date AS DATE)     AS sale_date,
  try_cast(sales AS DOUBLE)       AS sales
FROM {source}
