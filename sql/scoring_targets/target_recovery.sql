-- What the COALESCE of phones recovers, over the view targets_linked (the result of
-- scoring_targets.sql). "Clients only" is the old target table: Contracts joined to Clients
-- by client_id, every contract whose client has no phone dropped.
SELECT CAST(COUNT(*) AS BIGINT) AS contracts,
       CAST(COUNT_IF(phone_source = 'client') AS BIGINT) AS phones_from_clients,
       CAST(COUNT_IF(phone_source = 'application') AS BIGINT) AS phones_from_applications,
       CAST(COUNT_IF(phone IS NULL) AS BIGINT) AS contracts_without_phone,
       CAST(COUNT_IF(has_client_phone AND target = 1) AS BIGINT) AS positives_clients_only,
       CAST(COUNT_IF(phone IS NOT NULL AND target = 1) AS BIGINT) AS positives_kept,
       -- NULL when the old join kept no positive at all (no ratio to speak of)
       CAST(COUNT_IF(phone IS NOT NULL AND target = 1) AS DOUBLE)
           / NULLIF(COUNT_IF(has_client_phone AND target = 1), 0) AS positives_ratio,
       CAST(COUNT_IF(NOT client_in_snapshot) AS BIGINT) AS contracts_without_client,
       CAST(COUNT_IF(target IS NULL OR target NOT IN (0, 1)) AS BIGINT) AS bad_targets
FROM targets_linked
