-- Tenant-premise events up to the end of :ds, one row per event, with the weight the recommender
-- learns from. Reads the temp views rec_deals, rec_proposals and rec_page_views (ods snapshots of ds).
--
-- Why these weights: a signed lease is the outcome the agency is paid for; an open deal or a
-- proposal that ended in a deal is nearly as strong; a proposal the tenant went to view says
-- more than a page view; a proposal merely shown says little. Rejected proposals and lost
-- deals keep weight 0: WARP learns from positives only, and the job uses them to know what a
-- tenant already turned down. The event time of a signed deal is its signing.
--
-- outcome_at: when the outcome behind the weight became known. A proposal made before the
-- evaluation split whose deal came after it was, at the split, only a shown proposal: the
-- time-split evaluation must not learn "deal" from it (that would leak the test deal into the
-- training data, and straight to the top of the baseline's "already proposed" list). A proposal
-- that ended in a deal is known at its first deal on the same premise; other outcomes at the
-- proposal (their answer time is not in the snapshot).
WITH first_deal AS (
    SELECT client_id, premise_id, MIN(created_at) AS created_at
    FROM rec_deals
    GROUP BY client_id, premise_id
),
events AS (
    SELECT client_id AS user_id, premise_id AS item_id,
           CASE WHEN status = 'signed' THEN COALESCE(signed_at, created_at) ELSE created_at END AS ts,
           CASE status WHEN 'signed' THEN 10.0 WHEN 'open' THEN 5.0 ELSE 0.0 END AS weight,
           CONCAT('deal_', status) AS kind,
           CASE WHEN status = 'signed' THEN COALESCE(signed_at, created_at) ELSE created_at END AS outcome_at
    FROM rec_deals
    UNION ALL
    SELECT p.client_id, p.premise_id, p.proposed_at,
           CASE p.outcome WHEN 'deal' THEN 8.0 WHEN 'viewed' THEN 3.0 WHEN 'shown' THEN 0.5 ELSE 0.0 END,
           CONCAT('proposal_', p.outcome),
           CASE WHEN p.outcome = 'deal' THEN GREATEST(p.proposed_at, COALESCE(d.created_at, p.proposed_at))
                ELSE p.proposed_at END
    FROM rec_proposals p
    LEFT JOIN first_deal d ON d.client_id = p.client_id AND d.premise_id = p.premise_id
    UNION ALL
    SELECT client_id, premise_id, viewed_at, 1.0, 'page_view', viewed_at
    FROM rec_page_views
)
SELECT user_id, item_id, ts, CAST(weight AS double) AS weight, kind, outcome_at
FROM events
WHERE user_id IS NOT NULL
  AND item_id IS NOT NULL
  AND ts IS NOT NULL
  AND kind IS NOT NULL
  AND ts < CAST(date_add(to_date(:ds), 1) AS timestamp)
