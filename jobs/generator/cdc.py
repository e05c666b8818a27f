"""The ODS replica machinery shared by the demo generators.

A domain generator keeps the *source* state of an entity as numpy columns (one row per
source key, ever created) and calls `Entity.emit(idx, dt, op)` whenever the source
performs an insert, update or delete. `finalize` then turns those source operations into
what a replica lands: `ods_seq` from the source's operation counter, late rows,
re-deliveries and, on request, conflicts and malformed rows, split by `load_date`.

Conventions of the state columns (fast and byte-deterministic):
  timestamps  int64 microseconds since the epoch       null = INT64_MIN
  dates       int32 days since the epoch               null = INT32_MIN
  bigint/int  int64/int32                              null = the dtype's minimum
  double      float64                                  null = NaN
  boolean     bool                                     never null
  string      int codes decoded by `Entity.decoders[column]`, or an object array (None = null)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jobs.core.tables import ENTITY_PAYLOADS, TABLES

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
TICK_US = 100_000  # ods_dt resolution: 0.1 s
I64_NULL = np.iinfo(np.int64).min
I32_NULL = np.iinfo(np.int32).min

OP_I, OP_U, OP_D, OP_X = 0, 1, 2, 3
OP_NAMES = pa.array(["I", "U", "D", "X"])

# Rates of replica noise (fractions of all change rows of an entity).
FOLLOWUP_RATE = 0.01     # a second change of the same key within the same 0.1 s tick
REDELIVERY_RATE = 0.005  # identical change row delivered again
LATE_RATE = 0.008        # lands 1-3 days after its ods_dt day (re-deliveries on later days add ~0.3%)
CONFLICT_RATE = 0.001    # only with inject_conflicts (at least 3 per entity)
BAD_ROW_RATE = 0.001     # only with inject_bad_rows (at least 4 per entity)

# Activity of a CRM over the hours of a day (UTC), relative weights. Nothing before 02:00
# (nightly maintenance), which also keeps first-day changes after the initial load.
_HOUR_WEIGHTS = np.array([0, 0, 1, 1, 1, 2, 4, 8, 14, 18, 20, 20, 19, 20, 20, 19, 18, 16, 14, 12, 9, 6, 3, 2],
                         dtype=float)
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

Tweak = Callable[[dict[str, np.ndarray], np.random.Generator], None]


def daytime_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Times of day (microseconds, on the 0.1 s grid) of n source operations in business hours."""
    hours = rng.choice(24, size=n, p=_HOUR_P)
    return hours.astype(np.int64) * HOUR_US + rng.integers(0, HOUR_US // TICK_US, n) * TICK_US


def to_tick(us: np.ndarray) -> np.ndarray:
    return (np.asarray(us, dtype=np.int64) // TICK_US) * TICK_US


def codes_decoder(categories: list[str]) -> Callable[[np.ndarray], pa.Array]:
    """Decode int codes into strings; a negative code is null."""
    dictionary = pa.array(categories, type=pa.string())

    def decode(codes: np.ndarray) -> pa.Array:
        codes = np.asarray(codes)
        return dictionary.take(pa.array(codes.astype(np.int32), mask=codes < 0))

    return decode


def _arrow_type(ddl_type: str) -> pa.DataType:
    return {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "bigint": pa.int64(),
        "int": pa.int32(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "string": pa.string(),
    }[ddl_type]


def raw_schema(entity: str) -> pa.Schema:
    """The arrow schema of raw.<entity>, taken from the table registry."""
    from jobs.core.tables import _split_ddl

    fields = []
    for part in _split_ddl(TABLES[f"raw.{entity}"].schema):
        name, ddl_type = part.split()[:2]
        fields.append(pa.field(name, _arrow_type(ddl_type.lower())))
    return pa.schema(fields)


def null_of(array: np.ndarray):
    if array.dtype == object:
        return None
    if array.dtype.kind == "f":
        return np.nan
    if array.dtype.kind in "iu":
        return np.iinfo(array.dtype).min
    raise TypeError(f"column of dtype {array.dtype} cannot hold a null")


@dataclass
class Landed:
    """Change rows of one entity as the replica lands them, ready to write."""

    entity: str
    table: pa.Table        # raw schema, sorted by (load_day, ods_dt, ods_seq)
    load_days: np.ndarray  # int days since the epoch, aligned with table rows


class Entity:
    """Source state of one entity plus the log of source operations performed on it."""

    def __init__(self, name: str, state: dict[str, np.ndarray], tweak: Tweak, rng: np.random.Generator,
                 decoders: dict[str, Callable[[np.ndarray], pa.Array]] | None = None):
        schema = raw_schema(name)
        payload = [f.name for f in schema][3:]
        missing = set(payload) ^ set(state)
        if missing:
            raise ValueError(f"{name}: state columns differ from raw.{name}: {sorted(missing)}")
        self.name = name
        self.keys = ENTITY_PAYLOADS[name][0]
        self.schema = schema
        self.state = {c: state[c] for c in payload}
        self.tweak = tweak
        self.rng = rng
        self.decoders = decoders or {}
        self._rows: list[dict[str, np.ndarray]] = []
        self._dts: list[np.ndarray] = []
        self._ops: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(next(iter(self.state.values())))

    def emit(self, idx, dt, op: int, followups: bool = True) -> None:
        """Record source operations `op` on rows `idx` at times `dt` (state as it is now)."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if idx.size == 0:
            return
        dt = to_tick(np.broadcast_to(np.asarray(dt, dtype=np.int64), idx.shape))
        self._append({c: a[idx] for c, a in self.state.items()}, dt, op)
        if op == OP_D or not followups:
            return
        # A second operation on the same row inside the same 0.1 s tick: only ods_seq orders them.
        pick = self.rng.random(idx.size) < FOLLOWUP_RATE
        if pick.any():
            sub_idx = idx[pick]
            sub = {c: a[sub_idx] for c, a in self.state.items()}
            self.tweak(sub, self.rng)
            for c, values in sub.items():
                self.state[c][sub_idx] = values
            self._append({c: v.copy() for c, v in sub.items()}, dt[pick], OP_U)

    def _append(self, rows: dict[str, np.ndarray], dt: np.ndarray, op: int) -> None:
        self._rows.append(rows)
        self._dts.append(dt.copy())
        self._ops.append(np.full(dt.size, op, dtype=np.int8))

    def operations(self) -> int:
        return sum(d.size for d in self._dts)

    def finalize(self, first_day: int, last_day: int, seq_base: int, inject_conflicts: bool,
                 inject_bad_rows: bool) -> Landed:
        """Turn the source operations into landed change rows (see the module docstring)."""
        rng = self.rng
        cols = {c: np.concatenate([r[c] for r in self._rows]) for c in self.state}
        dt = np.concatenate(self._dts)
        ops = np.concatenate(self._ops)
        # Operations only up to the end of the last day have happened.
        keep = dt < (last_day + 1) * DAY_US
        order = np.argsort(dt[keep], kind="stable")  # emission order breaks ties: follow-ups come after
        cols = {c: v[keep][order] for c, v in cols.items()}
        dt, ops = dt[keep][order], ops[keep][order]
        n = dt.size
        # The source's local operation counter: increasing, with gaps (other tables share it).
        seq = seq_base + np.cumsum(rng.integers(1, 4, n, dtype=np.int64))
        load_day = dt // DAY_US
        # Late rows: land 1-3 days after their ods_dt day (only where that day is in the window).
        delay = rng.integers(1, 4, n)
        eligible = np.flatnonzero(load_day + delay <= last_day)
        late = rng.choice(eligible, size=min(eligible.size, round(LATE_RATE * n)), replace=False)
        load_day[late] += delay[late]

        extra_idx, extra_day, extra_kind = [], [], []
        # Re-deliveries: an identical row again, in the same or a later load.
        redelivered = np.sort(rng.choice(n, size=round(REDELIVERY_RATE * n), replace=False))
        extra_idx.append(redelivered)
        extra_day.append(np.minimum(load_day[redelivered] + rng.choice([0, 0, 1, 2, 3], redelivered.size),
                                    last_day))
        extra_kind.append(np.zeros(redelivered.size, dtype=np.int8))
        if inject_conflicts:
            candidates = np.flatnonzero(ops != OP_D)
            count = min(candidates.size, max(3, round(CONFLICT_RATE * n)))
            conflicted = np.sort(rng.choice(candidates, size=count, replace=False))
            extra_idx.append(conflicted)
            extra_day.append(np.minimum(load_day[conflicted] + rng.integers(0, 2, count), last_day))
            extra_kind.append(np.full(count, 1, dtype=np.int8))
        if inject_bad_rows:
            count = min(n, max(4, round(BAD_ROW_RATE * n)))
            bad = np.sort(rng.choice(n, size=count, replace=False))
            extra_idx.append(bad)
            extra_day.append(load_day[bad])
            extra_kind.append((2 + np.arange(count) % 4).astype(np.int8))
        ex_idx = np.concatenate(extra_idx)
        ex_kind = np.concatenate(extra_kind)
        ex_cols = {c: v[ex_idx] for c, v in cols.items()}
        ex_dt, ex_seq, ex_ops = dt[ex_idx], seq[ex_idx], ops[ex_idx]
        conflict = ex_kind == 1
        if conflict.any():
            sub = {c: v[conflict] for c, v in ex_cols.items()}
            self.tweak(sub, rng)
            for c in sub:
                ex_cols[c][conflict] = sub[c]
        for c in self.keys:  # kind 2: null key
            ex_cols[c][ex_kind == 2] = null_of(ex_cols[c])
        ex_ops[ex_kind == 3] = OP_X  # kind 3: unknown ods_type
        ex_dt[ex_kind == 4] = I64_NULL  # kind 4: null ods_dt
        ex_seq[ex_kind == 5] = I64_NULL  # kind 5: null ods_seq

        cols = {c: np.concatenate([v, ex_cols[c]]) for c, v in cols.items()}
        dt = np.concatenate([dt, ex_dt])
        seq = np.concatenate([seq, ex_seq])
        ops = np.concatenate([ops, ex_ops])
        load_day = np.concatenate([load_day, np.concatenate(extra_day)])
        order = np.lexsort((seq, dt, load_day))
        arrays = [
            pa.array(dt[order], mask=dt[order] == I64_NULL, type=pa.timestamp("us", tz="UTC")),
            pa.array(seq[order], mask=seq[order] == I64_NULL, type=pa.int64()),
            OP_NAMES.take(pa.array(ops[order].astype(np.int32))),
        ]
        for fld in self.schema:
            if fld.name in CDC_NAMES:
                continue
            arrays.append(self._to_arrow(fld, cols[fld.name][order]))
        return Landed(self.name, pa.Table.from_arrays(arrays, schema=self.schema), load_day[order])

    def _to_arrow(self, fld: pa.Field, values: np.ndarray) -> pa.Array:
        if fld.name in self.decoders:
            return self.decoders[fld.name](values)
        if fld.type == pa.bool_():
            return pa.array(values.astype(bool))
        if values.dtype == object:
            return pa.array(values, type=fld.type)
        if values.dtype.kind == "f":
            return pa.array(values, mask=np.isnan(values), type=fld.type)
        if fld.type == pa.date32():
            values = values.astype(np.int32)
            return pa.array(values, mask=values == I32_NULL, type=fld.type)
        if fld.type == pa.int32():
            values = values.astype(np.int32)
            return pa.array(values, mask=values == I32_NULL, type=fld.type)
        values = values.astype(np.int64)
        return pa.array(values, mask=values == I64_NULL, type=fld.type)


CDC_NAMES = ("ods_dt", "ods_seq", "ods_type")


def pick(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` distinct elements of `pool`, in ascending order (deterministic)."""
    count = int(min(count, pool.size))
    if count <= 0:
        return pool[:0]
    return np.sort(rng.choice(pool, size=count, replace=False))


def poisson(rng: np.random.Generator, mean: float) -> int:
    return int(rng.poisson(max(mean, 0.0)))


@dataclass
class Window:
    """The generated period: `first_day` carries the initial load, then `days` days of changes."""

    first_day: int  # days since the epoch
    days: int

    @property
    def last_day(self) -> int:
        return self.first_day + self.days - 1

    @property
    def start_us(self) -> int:
        return self.first_day * DAY_US

    def day_range(self) -> range:
        return range(self.first_day, self.last_day + 1)

    def initial_load_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The initial load copies every existing row between 00:00 and 02:00 of the first day."""
        return self.start_us + np.sort(rng.integers(0, 2 * HOUR_US // TICK_US, n)) * TICK_US


class Lifecycle:
    """Inserts, random updates, deletes and re-inserts after delete of a CRM entity, day by day."""

    def __init__(self, entity: Entity, born_us: np.ndarray):
        self.entity = entity
        self.born_us = np.asarray(born_us, dtype=np.int64)
        self.born_day = self.born_us // DAY_US
        n = self.born_us.size
        self.alive = np.zeros(n, dtype=bool)
        self.deleted_day = np.full(n, -1, dtype=np.int64)

    def initial_load(self, window: Window, rng: np.random.Generator) -> None:
        idx = np.flatnonzero(self.born_day < window.first_day)
        self.alive[idx] = True
        self.entity.emit(idx, window.initial_load_times(rng, idx.size), OP_I)

    def day(self, day: int, rng: np.random.Generator, update_rate: float, delete_rate: float,
            reinsert_rate: float, update: Callable[[np.ndarray], None] | None,
            busy: np.ndarray | None = None) -> None:
        """One day of the source: new rows, then updates/deletes of older rows, then re-inserts.

        `update(idx)` changes the state of rows idx (the entity's business logic); `busy` marks
        rows another process changes today (kept out of random updates so times stay ordered).
        """
        entity = self.entity
        new = np.flatnonzero(self.born_day == day)
        self.alive[new] = True
        entity.emit(new, self.born_us[new], OP_I)
        older = self.alive & (self.born_day < day)
        if busy is not None:
            older &= ~busy
        pool = np.flatnonzero(older)
        n_update = poisson(rng, update_rate * pool.size)
        n_delete = poisson(rng, delete_rate * pool.size)
        chosen = rng.permutation(pick(rng, pool, n_update + n_delete))
        updated, deleted = np.sort(chosen[:n_update]), np.sort(chosen[n_update:])
        if update is not None and updated.size:
            update(updated)
            entity.emit(updated, day * DAY_US + daytime_us(rng, updated.size), OP_U)
        entity.emit(deleted, day * DAY_US + daytime_us(rng, deleted.size), OP_D)
        self.alive[deleted] = False
        self.deleted_day[deleted] = day
        dead = np.flatnonzero(~self.alive & (self.deleted_day >= 0) & (self.deleted_day < day))
        if busy is not None:
            dead = dead[~busy[dead]]
        back = dead[rng.random(dead.size) < reinsert_rate]
        self.alive[back] = True
        self.deleted_day[back] = -1
        entity.emit(back, day * DAY_US + daytime_us(rng, back.size), OP_I)
