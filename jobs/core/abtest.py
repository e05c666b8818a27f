"""Stable A/B arms per client and per experiment: one function for batch jobs, Spark columns, the
serving layer and the readout.

A client's bucket is sha256 of `<salt><client_id>` (the id as decimal text), read as a 256-bit
unsigned integer, mod 100; an experiment's salt is its name and a colon, so a new experiment
reshuffles the clients (the same clients do not land in treatment in every test), while within
one experiment the bucket depends on the client_id alone: never on the day, the session, the run
or the number of clients. Bucket < treatment_share -> "treatment" (served the `lightfm` model),
else "control" (served `baseline`). The empty salt is the unnamed split of earlier versions.

The experiment (its name and treatment share) is configured once, in the TOML file
$OSTAP_EXPERIMENTS (default: experiments.toml beside this module), which `ostap recommend`,
`ostap serve load` and `ostap abtest readout` all read (`experiment()`).

`arm_column` computes the very same bucket inside Spark without a Python UDF: the 64 hex
digits of `sha2(..., 256)` are reduced mod 100 eight hex digits (32 bits) at a time by
Horner's rule, which is exact in bigint arithmetic (acc < 100, so acc * 2^32 + chunk < 2^39).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from pathlib import Path

from jobs.core import settings
from jobs.core.errors import BadInputError

TREATMENT = "treatment"
CONTROL = "control"
ARMS = (TREATMENT, CONTROL)
DEFAULT_TREATMENT_SHARE = 50
MODEL_OF_ARM = {TREATMENT: "lightfm", CONTROL: "baseline"}
DEFAULT_CONFIG = Path(__file__).with_name("experiments.toml")

_CHUNK_HEX = 8  # 32 bits per step of the Horner reduction in Spark
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_share(treatment_share: int) -> int:
    share = int(treatment_share)
    if not 0 <= share <= 100:
        raise ValueError(f"treatment_share must be within 0..100, got {treatment_share!r}")
    return share


def bucket_for(client_id: int, salt: str = "") -> int:
    """The client's stable bucket in 0..99 (under an experiment's salt)."""
    digest = hashlib.sha256(f"{salt}{int(client_id)}".encode()).hexdigest()
    return int(digest, 16) % 100


def arm_for(client_id: int, treatment_share: int = DEFAULT_TREATMENT_SHARE, salt: str = "") -> str:
    """'treatment' or 'control' for a client, the same on every day, rerun and machine."""
    return TREATMENT if bucket_for(client_id, salt) < _check_share(treatment_share) else CONTROL


def bucket_column(client_id_col, salt: str = ""):
    """Spark Column: the same bucket as `bucket_for` (null for a null client_id)."""
    from pyspark.sql import functions as F

    column = F.col(client_id_col) if isinstance(client_id_col, str) else client_id_col
    digest = F.sha2(F.concat(F.lit(salt), column.cast("bigint").cast("string")), 256)
    acc = F.lit(0).cast("bigint")
    for start in range(1, 65, _CHUNK_HEX):
        chunk = F.conv(F.substring(digest, start, _CHUNK_HEX), 16, 10).cast("bigint")
        acc = (acc * F.lit(2**32).cast("bigint") + chunk) % F.lit(100)
    return acc.cast("int")


def arm_column(client_id_col, treatment_share: int = DEFAULT_TREATMENT_SHARE, salt: str = ""):
    """Spark Column: the same arm as `arm_for` (null for a null client_id)."""
    from pyspark.sql import functions as F

    bucket = bucket_column(client_id_col, salt)
    share = _check_share(treatment_share)
    return F.when(bucket.isNull(), F.lit(None).cast("string")).when(
        bucket < F.lit(share), F.lit(TREATMENT)).otherwise(F.lit(CONTROL))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named A/B split: its name salts the hash; treatment_share percent of clients are treated.
    `min_detectable_lift` is the relative lift the readout sizes the test for (80% power, 5%)."""

    name: str
    treatment_share: int = DEFAULT_TREATMENT_SHARE
    min_detectable_lift: float = 0.2

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise BadInputError(f"experiment name {self.name!r}: use 1-64 letters, digits, '_', '.', '-'")
        try:
            _check_share(self.treatment_share)
        except (TypeError, ValueError):
            raise BadInputError(f"experiment {self.name}: treatment_share must be an integer within 0..100, "
                                f"got {self.treatment_share!r}") from None
        if not 0 < float(self.min_detectable_lift) < 10:
            raise BadInputError(f"experiment {self.name}: min_detectable_lift must be within (0, 10), "
                                f"got {self.min_detectable_lift!r}")

    @property
    def salt(self) -> str:
        return f"{self.name}:"

    def arm(self, client_id: int) -> str:
        return arm_for(client_id, self.treatment_share, self.salt)

    def arm_column(self, client_id_col):
        return arm_column(client_id_col, self.treatment_share, self.salt)


def config_path() -> Path:
    return Path(settings.EXPERIMENTS.get() or DEFAULT_CONFIG)


def experiments(path: str | Path | None = None) -> tuple[str, dict[str, Experiment]]:
    """(the current experiment's name, every configured experiment by name) from the TOML file."""
    path = Path(path) if path else config_path()
    try:
        config = tomllib.loads(path.read_text())
    except OSError as exc:
        raise BadInputError(f"experiment config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"experiment config {path}: not valid TOML ({exc})") from None
    table = config.get("experiments")
    current = config.get("current")
    if not isinstance(table, dict) or not table or not isinstance(current, str):
        raise BadInputError(f"experiment config {path}: needs `current = \"NAME\"` and at least one "
                            "[experiments.NAME] table with treatment_share")
    known = {}
    for name, options in table.items():
        unknown = set(options) - {"treatment_share", "min_detectable_lift"}
        if unknown:
            raise BadInputError(f"experiment config {path}: [experiments.{name}] has unknown keys "
                                f"{', '.join(sorted(unknown))}")
        known[name] = Experiment(name, **options)
    if current not in known:
        raise BadInputError(f"experiment config {path}: current = {current!r} is not one of "
                            f"{', '.join(sorted(known))}")
    return current, known


def experiment(name: str | None = None, path: str | Path | None = None) -> Experiment:
    """The named experiment of the configuration (default: its current one)."""
    current, known = experiments(path)
    name = name or current
    if name not in known:
        raise BadInputError(f"unknown experiment {name!r}; configured in {path or config_path()}: "
                            f"{', '.join(sorted(known))}")
    return known[name]
