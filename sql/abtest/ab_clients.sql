-- One row per client exposed in the experiment by the end of ds (the unit of analysis is the unit
-- of randomisation: the client): the arm its answers were logged with, how many arms it was logged
-- in, when it was first exposed, and what it signed in the window after that first exposure (up to
-- the end of ds): a lease on a premise it had been shown before signing, any lease, and their rent;
-- and how many premises its answers listed on average (a filter after one arm's model shortens them).
-- Views: ab_exposures (ods.serve_exposures of ds), ab_deals (ods.deals of ds).
WITH exposed AS (
  SELECT client_id, arm, served_at, item_ids
  FROM ab_exposures
  WHERE experiment = :experiment
),
clients AS (
  SELECT client_id,
         MIN(arm) AS logged_arm,
         COUNT(DISTINCT arm) AS arms_logged,
         MIN(served_at) AS first_exposed_at,
         COUNT(*) AS exposures,
         AVG(CASE WHEN item_ids = '' THEN 0 ELSE size(split(item_ids, '[|]')) END) AS items_per_exposure
  FROM exposed
  GROUP BY client_id
),
shown AS (
  SELECT client_id, CAST(item AS BIGINT) AS premise_id, MIN(served_at) AS first_shown_at
  FROM exposed LATERAL VIEW explode(split(item_ids, '[|]')) items AS item
  WHERE item <> ''
  GROUP BY client_id, CAST(item AS BIGINT)
),
signed AS (
  SELECT d.deal_id, d.client_id, d.premise_id, d.signed_at, d.monthly_rent
  FROM ab_deals d
  JOIN clients c ON d.client_id = c.client_id
  WHERE d.status = 'signed'
    AND d.signed_at >= c.first_exposed_at
    AND d.signed_at < c.first_exposed_at + make_dt_interval(:window_days)
    AND d.signed_at < CAST(:cutoff AS TIMESTAMP)
)
SELECT c.client_id, c.logged_arm, c.arms_logged, c.first_exposed_at, c.exposures, c.items_per_exposure,
       CAST(COUNT(s.deal_id) > 0 AS INT) AS signed_any,
       CAST(COUNT(sh.premise_id) > 0 AS INT) AS signed_shown,
       CAST(COALESCE(SUM(s.monthly_rent), 0) AS DOUBLE) AS rent_signed
FROM clients c
LEFT JOIN signed s ON s.client_id = c.client_id
LEFT JOIN shown sh ON sh.client_id = s.client_id AND sh.premise_id = s.premise_id AND sh.first_shown_at <= s.signed_at
GROUP BY c.client_id, c.logged_arm, c.arms_logged, c.first_exposed_at, c.exposures, c.items_per_exposure
