-- Scoring targets: every contract whose outcome is observable, linked to a phone.
--
-- Inputs (temporary views the job registers from the ods snapshots as of ds; phones are
-- already normalised by jobs.pii.normalized_phone, so NULL means "no usable phone"):
--   targets_contracts    (contract_id, client_id, sign_date, bad_flag)
--   targets_clients      (client_id, client_phone)
--   targets_applications (application_id, client_id, created_at, application_phone)
-- Parameter :last_sign_date = ds - outcome window: a contract signed on or before it has
-- had the whole window to go bad, so its flag is a final outcome.
--
-- Phone = COALESCE(client's msisdn, phone of the client's latest application made on or
-- before the contract date). "On or before the contract date" = created_at before the
-- start of the day after sign_date (session time zone UTC): an application made later the
-- same day still counts, one made the next day would leak the future and never does.
-- Latest = greatest created_at, then greatest application_id, so ties are deterministic.
-- Applications without a usable phone are skipped, so the latest one that has a phone wins.
-- A client missing from the snapshot (deleted in the source) gives no msisdn; the contract
-- is still a live contract with a real outcome, so it keeps the phone of the client's
-- applications if they are still in the snapshot, and has no phone otherwise.
-- The result keeps contracts without a phone (phone NULL): the job counts them, then drops them.
WITH observable AS (
    SELECT contract_id, client_id, sign_date, bad_flag
    FROM targets_contracts
    WHERE sign_date <= :last_sign_date
),
prior_applications AS (
    SELECT o.contract_id,
           a.application_phone,
           ROW_NUMBER() OVER (
               PARTITION BY o.contract_id
               ORDER BY a.created_at DESC, a.application_id DESC
           ) AS recency
    FROM observable o
    JOIN targets_applications a
      ON a.client_id = o.client_id
     AND a.created_at < CAST(date_add(o.sign_date, 1) AS TIMESTAMP)
     AND a.application_phone IS NOT NULL
)
SELECT o.contract_id,
       o.client_id,
       o.sign_date,
       o.bad_flag AS target,
       c.client_id IS NOT NULL AS client_in_snapshot,
       c.client_phone IS NOT NULL AS has_client_phone,
       COALESCE(c.client_phone, p.application_phone) AS phone,
       CASE WHEN c.client_phone IS NOT NULL THEN 'client'
            WHEN p.application_phone IS NOT NULL THEN 'application'
       END AS phone_source
FROM observable o
LEFT JOIN targets_clients c
  ON c.client_id = o.client_id
LEFT JOIN prior_applications p
  ON p.contract_id = o.contract_id
 AND p.recency = 1
