"""Personal data: phone normalisation and the keyed phone hash every published table uses.

Published tables never carry a phone, only `phone_hash` = hex HMAC-SHA256(key, normalised phone).
Feature tables keyed by phone must hash with `phone_hash_column` too, so that the same phone
gives the same hash whichever table or source it came from.

Normalisation (Spark built-ins, so it runs in the JVM and is the same on every executor):
  - keep digits only: '+7 (916) 123-45-67', '8-916-123-45-67', '79161234567' are one phone;
  - 11 digits starting with 8 (the domestic trunk prefix) become 7 + the other 10 digits;
  - 10 digits (a number written without the country code) get the country code 7;
  - fewer than 10 digits is not a phone: NULL, so that a placeholder such as '-' or '0'
    counts as missing and the COALESCE falls through to the next source;
  - anything else (international numbers) is kept as its digits.

The key comes from configuration, never from code:
  1. the environment variable OSTAP_PII_KEY;
  2. under Airflow only (the env var missing and an Airflow task context present), the Airflow
     Variable `ostap_pii_key` (Airflow also resolves AIRFLOW_VAR_OSTAP_PII_KEY and secret backends).
A missing key is an OstapError. The key travels to executors inside the pickled UDF closure,
never as a literal in SQL text, so it does not show up in query plans or logs.
"""

import hashlib
import hmac
import logging
import os

from jobs.core import settings
from jobs.core.errors import OstapError

KEY_ENV = settings.PII_KEY.name
AIRFLOW_VARIABLE = "ostap_pii_key"
# A shorter key still works but is easy to brute-force over the small space of phone numbers.
MIN_KEY_CHARS = 16
COUNTRY_CODE = "7"

log = logging.getLogger(__name__)


def _under_airflow() -> bool:
    # Airflow exports AIRFLOW_CTX_* to a running task and to the processes it starts
    # (spark-submit included); outside a task, importing Airflow is slow and pointless.
    return any(name.startswith("AIRFLOW_CTX_") for name in os.environ)


def _airflow_variable() -> str | None:
    try:
        from airflow.sdk import Variable  # Airflow 3 task SDK
    except ImportError:
        return None
    try:
        return Variable.get(AIRFLOW_VARIABLE, default=None)
    except Exception as exc:  # noqa: BLE001 - no supervisor channel (e.g. inside spark-submit)
        log.warning("could not read the Airflow Variable %s: %s", AIRFLOW_VARIABLE, exc)
        return None


def pii_key() -> bytes:
    """The HMAC key for phone hashes, from OSTAP_PII_KEY or (under Airflow) Variable ostap_pii_key."""
    key = settings.PII_KEY.get()
    source = KEY_ENV
    if not key and _under_airflow():
        key, source = _airflow_variable(), f"Airflow Variable {AIRFLOW_VARIABLE}"
    if not key:
        raise OstapError(
            f"no key for hashing phones: set the environment variable {KEY_ENV} "
            f"(or, under Airflow, the Variable {AIRFLOW_VARIABLE}) to a secret of at least "
            f"{MIN_KEY_CHARS} characters; the same key must be used by every table keyed by phone_hash")
    if len(key) < MIN_KEY_CHARS:
        log.warning("the PII key from %s is shorter than %d characters: phone hashes are easy to reverse",
                    source, MIN_KEY_CHARS)
    return key.encode("utf-8")


def normalize_phone(phone: str | None) -> str | None:
    """Plain-Python twin of `normalized_phone` (for small lookups and checks outside Spark)."""
    if phone is None:
        return None
    digits = "".join(ch for ch in phone if "0" <= ch <= "9")
    if len(digits) < 10:
        return None
    if len(digits) == 11 and digits[0] == "8":
        return COUNTRY_CODE + digits[1:]
    if len(digits) == 10:
        return COUNTRY_CODE + digits
    return digits


def normalized_phone(column):
    """Spark Column: the phone in canonical digits (see the module docstring), or NULL."""
    from pyspark.sql import functions as F

    digits = F.regexp_replace(F.col(column) if isinstance(column, str) else column, r"[^0-9]", "")
    return (F.when(F.length(digits) < 10, F.lit(None).cast("string"))
            .when((F.length(digits) == 11) & digits.startswith("8"),
                  F.concat(F.lit(COUNTRY_CODE), F.substring(digits, 2, 10)))
            .when(F.length(digits) == 10, F.concat(F.lit(COUNTRY_CODE), digits))
            .otherwise(digits))


def hash_phone(normalised: str | None, key: bytes) -> str | None:
    """Hex HMAC-SHA256 of an already normalised phone."""
    if normalised is None:
        return None
    return hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_column(column, key: bytes | None = None):
    """Spark Column: hex HMAC-SHA256 of a column already in canonical form (NULL stays NULL).

    Spark 4.2 has no built-in HMAC, so this is a vectorised pandas UDF with Python's hmac.
    (This module does not use `from __future__ import annotations`: Spark reads the UDF's
    type hints to pick the UDF kind, and string hints naming a local import do not resolve.)
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    key = key if key is not None else pii_key()

    @pandas_udf("string")
    def phone_hmac(values: pd.Series) -> pd.Series:
        return values.map(lambda v: hash_phone(v, key) if isinstance(v, str) else None)

    return phone_hmac(column)


def optional_key() -> bytes | None:
    """The PII key when one is configured, else None (for records that can do without hashes)."""
    try:
        return pii_key()
    except OstapError:
        return None


REDACTED = "<redacted>"


def protected_column(column: str, kind: str, key: bytes | None):
    """Spark Column replacing a personal column's value outside the source zones: the keyed hash
    (phones normalised first, so it equals the published phone_hash), or REDACTED without a key."""
    from pyspark.sql import functions as F

    if key is None:
        return F.when(F.col(column).isNull(), F.lit(None).cast("string")).otherwise(F.lit(REDACTED))
    if kind == "phone":
        return phone_hash_column(column, key)
    return hmac_column(F.col(column).cast("string"), key)


def mask(value) -> str:
    """A personal value as messages and logs may show it: its last two characters at most."""
    if value is None:
        return "NULL"
    text = str(value)
    return "***" + (text[-2:] if len(text) >= 8 else "")


def phone_hash_column(column, key: bytes | None = None):
    """Spark Column: the published phone hash of a raw phone column (normalise, then HMAC)."""
    return hmac_column(normalized_phone(column), key)
