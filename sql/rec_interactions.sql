-- Tenant-premise events up to the end of :ds, one row per event, with the weight the recommender
-- learns from. Reads the temp views rec_deals, rec_proposals and rec_page_views (ods snapshots of ds).
--
-- Why these weights: a signed lease is the outcome the agency is paid for; an open deal or a
-- proposal that ended in a deal is nearly as strong; a proposal the tenant went to view says
-- more than a page view; a proposal merely shown says little. Rejected proposals and lost
-- deals keep weight 0: WARP learns from positives only, and the job uses them to know what a
-- tenant already turned down. The event time of a signed deal is its signing.
WITH events AS (
    SELECT client_id AS user_id, premise_id AS item_id,
           CASE WHEN status = 'signed' THEN COALESCE(signed_at, created_at) ELSE created_at END AS ts,
           CASE status WHEN 'signed' THEN 10.0 WHEN 'open' THEN 5.0 ELSE 0.0 END AS weight,
           CONCAT('deal_', status) AS kind
    FROM rec_deals
    UNION ALL
    SELECT client_id, premise_id, proposed_at,
           CASE outcome WHEN 'deal' THEN 8.0 WHEN 'viewed' THEN 3.0 WHEN 'shown' THEN 0.5 ELSE 0.0 END,
           CONCAT('proposal_', outcome)
    FROM rec_proposals
    UNION ALL
    SELECT client_id, premise_id, viewed_at, 1.0, 'page_view'
    FROM rec_page_views
)
SELECT user_id, item_id, ts, CAST(weight AS double) AS weight, kind
FROM events
WHERE user_id IS NOT NULL
  AND item_id IS NOT NULL
  AND ts IS NOT NULL
  AND kind IS NOT NULL
  AND ts < CAST(date_add(to_date(:ds), 1) AS timestamp)
