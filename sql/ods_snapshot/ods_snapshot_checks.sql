-- Sorts every change row read by a run into valid (reject_reason NULL) or rejected, with the
-- first reason that applies. ods_dt_text / ods_seq_text hold the value as read (text sources
-- only), so that a null and a value that does not parse are told apart. Nothing is dropped:
-- rejected rows go to dq.rejects with this reason.
SELECT
  *,
  CASE
    {null_key_checks}
    WHEN ods_dt IS NULL AND ods_dt_text IS NULL THEN 'null ods_dt'
    WHEN ods_dt IS NULL THEN 'unparseable ods_dt'
    WHEN ods_seq IS NULL AND ods_seq_text IS NULL THEN 'null ods_seq'
    WHEN ods_seq IS NULL THEN 'unparseable ods_seq'
    WHEN ods_type IS NULL OR ods_type NOT IN ('I', 'U', 'D') THEN 'ods_type outside I/U/D'
  END AS reject_reason
FROM {changes}
