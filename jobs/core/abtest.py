"""Stable A/B arms per client: one function for batch jobs, Spark columns and the serving layer.

A client's bucket is sha256 of the decimal text of its client_id, read as a 256-bit unsigned
integer, mod 100. The bucket depends on the client_id alone: never on the day, the session,
the run or the number of clients, so a client stays in its arm on every day and every rerun.
Bucket < treatment_share -> "treatment" (served the `lightfm` model), else "control"
(served `baseline`).

`arm_column` computes the very same bucket inside Spark without a Python UDF: the 64 hex
digits of `sha2(..., 256)` are reduced mod 100 eight hex digits (32 bits) at a time by
Horner's rule, which is exact in bigint arithmetic (acc < 100, so acc * 2^32 + chunk < 2^39).
"""

from __future__ import annotations

import hashlib

TREATMENT = "treatment"
CONTROL = "control"
DEFAULT_TREATMENT_SHARE = 50
MODEL_OF_ARM = {TREATMENT: "lightfm", CONTROL: "baseline"}

_CHUNK_HEX = 8  # 32 bits per step of the Horner reduction in Spark


def _check_share(treatment_share: int) -> int:
    share = int(treatment_share)
    if not 0 <= share <= 100:
        raise ValueError(f"treatment_share must be within 0..100, got {treatment_share!r}")
    return share


def bucket_for(client_id: int) -> int:
    """The client's stable bucket in 0..99."""
    digest = hashlib.sha256(str(int(client_id)).encode("ascii")).hexdigest()
    return int(digest, 16) % 100


def arm_for(client_id: int, treatment_share: int = DEFAULT_TREATMENT_SHARE) -> str:
    """'treatment' or 'control' for a client, the same on every day, rerun and machine."""
    return TREATMENT if bucket_for(client_id) < _check_share(treatment_share) else CONTROL


def bucket_column(client_id_col):
    """Spark Column: the same bucket as `bucket_for` (null for a null client_id)."""
    from pyspark.sql import functions as F

    column = F.col(client_id_col) if isinstance(client_id_col, str) else client_id_col
    digest = F.sha2(column.cast("bigint").cast("string"), 256)
    acc = F.lit(0).cast("bigint")
    for start in range(1, 65, _CHUNK_HEX):
        chunk = F.conv(F.substring(digest, start, _CHUNK_HEX), 16, 10).cast("bigint")
        acc = (acc * F.lit(2**32).cast("bigint") + chunk) % F.lit(100)
    return acc.cast("int")


def arm_column(client_id_col, treatment_share: int = DEFAULT_TREATMENT_SHARE):
    """Spark Column: the same arm as `arm_for` (null for a null client_id)."""
    from pyspark.sql import functions as F

    bucket = bucket_column(client_id_col)
    share = _check_share(treatment_share)
    return F.when(bucket.isNull(), F.lit(None).cast("string")).when(
        bucket < F.lit(share), F.lit(TREATMENT)).otherwise(F.lit(CONTROL))
