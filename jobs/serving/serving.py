"""Recommendation serving: published lists loaded into Redis under versions, and the Flask API.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re

import numpy as np
import pandas as pd

from jobs.core import abtest, config, settings
from jobs.core.errors import BadInputError, DataQualityError, OstapError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES

log = logging.getLogger(__name__)

PREFIX = "ostap:rec:"
KEEP_VERSIONS = 3  # the current one and the two before it
HISTORY_LENGTH = 200
MODELS = ("lightfm", "baseline")
POPULAR_MODEL = "popular"
POPULAR_SIZE = 100
MAX_K = 100
DEFAULT_K = 10
WRITE_BATCH = 2000  # hash fields per HSET when loading
MAX_ID = 2**63 - 1  # ids are bigint in the marts

RECS = TABLES["marts.recommendations"]
LEADS = TABLES["marts.premise_leads"]
PREMISES = TABLES["ods.premises"]

_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------
# Redis connection


def redis_url_or_default(url: str | None) -> str:
    url = url or settings.REDIS_URL.get()
    if not url:
        raise OstapError("no Redis URL: pass --redis redis://HOST:PORT/0 or set OSTAP_REDIS_URL "
                         "(`ostap redis` starts a local one and prints its URL)")
    return url


def safe_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def connect(url: str, timeout: float = 1.0):
    """A client that fails fast when Redis is down (no long retry loop: the API answers 503
    at once) and reconnects by itself on the next command when Redis is back. One retry covers
    a pooled connection that died with a Redis restart."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), 1), decode_responses=True)


def _unavailable(url: str, exc: Exception) -> OstapError:
    return OstapError(f"Redis at {safe_url(url)} is unreachable ({type(exc).__name__}: {exc}); "
                      "start it (`ostap redis`) or fix --redis / OSTAP_REDIS_URL")


# ---------------------------------------------------------------------------------------------
# Reading the published marts


def _dataset_location(table, ds: str, root: str):
    """(pyarrow filesystem, path) of a published partition, or None if it is not published."""
    import pyarrow.fs as pafs

    uri = table.partition_path(ds, root)
    if config.is_local(uri):
        fs, path = pafs.LocalFileSystem(), config.local_path(uri)
    else:
        fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(f"{path}/_SUCCESS").type == pafs.FileType.NotFound:
        return None
    return fs, path


def read_published(table, ds: str, root: str, columns: list[str] | None = None):
    """A published partition as pandas (registry columns), or None if ds is not published."""
    import pyarrow.dataset as pads

    location = _dataset_location(table, ds, root)
    if location is None:
        return None
    fs, path = location
    dataset = pads.dataset(path, format="parquet", filesystem=fs)  # skips _SUCCESS and _* files
    return dataset.to_table(columns=columns or table.columns).to_pandas()


def _check_arms(recs: pd.DataFrame, ds: str, experiment: abtest.Experiment) -> None:
    arms = recs[["user_id", "arm"]].drop_duplicates()
    expected = np.array([experiment.arm(u) for u in arms["user_id"].to_numpy()])
    bad = arms[arms["arm"].to_numpy() != expected]
    if len(bad):
        sample = ", ".join(f"user_id {u} ({a})" for u, a in bad.head(3).itertuples(index=False))
        raise DataQualityError(
            f"{RECS.qualified} ds={ds}: column arm disagrees with experiment {experiment.name} "
            f"(treatment_share={experiment.treatment_share}) for {len(bad)} users, e.g. {sample}; "
            "load with the --experiment the recommend job used")


def popular_list(recs: pd.DataFrame, vacant_ids: set | None = None, size: int = POPULAR_SIZE) -> pd.DataFrame:
    """The cold-start list: premises ranked by how many tenants' published lists (both models)
    contain them, ties by the better mean rank, then premise id.

    Every listed premise passed the recommend job's hard filters (vacancy among them), so it
    is vacant on ds; when the ods.premises snapshot of ds is available, `vacant_ids` filters
    again (generic-mode marts have no premises). The score is the share of tenants whose
    lists contain the premise (0..1).
    """
    if recs.empty:
        return pd.DataFrame({"item_id": [], "rank": [], "score": []})
    frame = recs if vacant_ids is None else recs[recs["item_id"].isin(vacant_ids)]
    n_users = max(recs["user_id"].nunique(), 1)
    stats = frame.groupby("item_id").agg(tenants=("user_id", "nunique"), mean_rank=("rank", "mean")).reset_index()
    stats = stats.sort_values(["tenants", "mean_rank", "item_id"], ascending=[False, True, True]).head(size)
    return pd.DataFrame({"item_id": stats["item_id"].to_numpy(np.int64),
                         "rank": np.arange(1, len(stats) + 1, dtype=np.int64),
                         "score": stats["tenants"].to_numpy(np.float64) / n_users})


def _vacant_premises(ds: str, root: str) -> set | None:
    premises = read_published(PREMISES, ds, root, columns=["premise_id", "vacant"])
    if premises is None:
        return None
    return set(premises.loc[premises["vacant"].eq(True), "premise_id"].astype(np.int64))


def _json_lists(frame: pd.DataFrame, key: str, id_col: str) -> dict[str, str]:
    """key value -> JSON text [[id, rank, score], ...] in rank order (plain loops over Python
    lists, faster than pandas string columns on large loads)."""
    if frame.empty:
        return {}
    frame = frame.sort_values([key, "rank"], kind="stable")
    keys = frame[key].to_numpy(np.int64)
    entries = [f"[{i},{r},{s!r}]" for i, r, s in zip(frame[id_col].to_numpy(np.int64).tolist(),
                                                       frame["rank"].to_numpy(np.int64).tolist(),
                                                       frame["score"].to_numpy(np.float64).tolist(), strict=True)]
    starts = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist()]
    ends = [*starts[1:], len(entries)]
    return {str(keys[a]): "[" + ",".join(entries[a:b]) + "]" for a, b in zip(starts, ends, strict=True)}


def _popular_json(popular: pd.DataFrame) -> str:
    return json.dumps([[int(i), int(r), float(s)] for i, r, s in
                       popular[["item_id", "rank", "score"]].itertuples(index=False)])


# ---------------------------------------------------------------------------------------------
# Versions: load, switch, rollback, prune


def version_key(version: str, part: str) -> str:
    return f"{PREFIX}v:{version}:{part}"


def _version_keys(version: str) -> list[str]:
    return [version_key(version, p) for p in ("meta", "leads", "popular", *(f"rec:{m}" for m in MODELS))]


def _hset_batches(pipe, key: str, mapping: dict[str, str]) -> None:
    items = list(mapping.items())
    for start in range(0, len(items), WRITE_BATCH):
        pipe.hset(key, mapping=dict(items[start:start + WRITE_BATCH]))


def load_frames(recs: pd.DataFrame, leads: pd.DataFrame | None, ds: str, redis_url: str, *,
                popular: pd.DataFrame | None = None, loaded_at: str | None = None,
                experiment: abtest.Experiment | None = None, source: str = "",
                make_current: bool = False) -> str | None:
    """Write lists (already read) under a new version, switch `current` to it, prune. Returns the
    version, or None when `ds` is older than the current version's date and not `make_current`:
    a backfill of past dates must not switch live traffic to old lists, so nothing is loaded."""
    if not _DS.match(ds):
        raise BadInputError(f"--ds {ds!r}: expected YYYY-MM-DD")
    missing = [m for m in MODELS if not recs["model"].eq(m).any()]
    if missing:
        raise BadInputError(f"{RECS.qualified} ds={ds}: no rows for model(s) {', '.join(missing)}; "
                            f"serving needs both {' and '.join(MODELS)}")
    experiment = experiment or abtest.experiment()
    _check_arms(recs, ds, experiment)
    leads = leads if leads is not None else pd.DataFrame(columns=LEADS.columns)
    popular = popular if popular is not None else popular_list(recs)
    payload = {m: _json_lists(recs[recs["model"] == m], "user_id", "item_id") for m in MODELS}
    lead_lists = _json_lists(leads, "item_id", "user_id")
    client = connect(redis_url, timeout=10.0)
    try:
        with client.lock(f"{PREFIX}lock", timeout=600, blocking_timeout=10):
            current = client.get(f"{PREFIX}current")
            current_ds = client.hget(version_key(current, "meta"), "ds") if current else None
            if current_ds and ds < current_ds and not make_current:
                skip = client.pipeline(transaction=True)
                _record(skip, {"event": "skip", "ds": ds, "current": current, "current_ds": current_ds})
                skip.execute()
                log.warning("serving stays on version %s (ds %s): ds %s is older, not loaded "
                            "(ostap serve load --make-current serves it anyway)", current, current_ds, ds)
                return None
            version = f"{ds}.{client.incr(f'{PREFIX}seq')}"
            meta = {"version": version, "ds": ds,
                    "loaded_at": loaded_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "experiment": experiment.name, "treatment_share": experiment.treatment_share,
                    "clients": int(recs["user_id"].nunique()),
                    "rec_rows": int(len(recs)), "premises_with_leads": len(lead_lists),
                    "lead_rows": int(len(leads)), "popular": int(len(popular)), "source": source}
            for m in MODELS:
                meta[f"clients_{m}"] = len(payload[m])
            # The data first, outside any transaction (readers do not see it before the switch).
            pipe = client.pipeline(transaction=False)
            for m in MODELS:
                _hset_batches(pipe, version_key(version, f"rec:{m}"), payload[m])
            _hset_batches(pipe, version_key(version, "leads"), lead_lists)
            pipe.set(version_key(version, "popular"), _popular_json(popular))
            pipe.hset(version_key(version, "meta"), mapping={k: str(v) for k, v in meta.items()})
            try:
                pipe.execute()
            except Exception:
                # A half-written version is never switched to; do not leave its keys behind.
                with contextlib.suppress(Exception):
                    client.unlink(*_version_keys(version))
                raise
            # The switch: one MULTI/EXEC.
            switch = client.pipeline(transaction=True)
            switch.set(f"{PREFIX}current", version)
            switch.rpush(f"{PREFIX}versions", version)
            _record(switch, {"event": "load", **meta})
            switch.execute()
            _prune(client, KEEP_VERSIONS)
    except Exception as exc:  # noqa: BLE001 - connection trouble becomes a one-line error
        _raise_if_connection(exc, redis_url)
        raise
    log.info("serving version %s (ds %s): %d clients, %d premises with leads, %d popular",
             version, ds, meta["clients"], len(lead_lists), len(popular))
    return version


def _raise_if_connection(exc: Exception, url: str) -> None:
    import redis

    if isinstance(exc, redis.exceptions.LockError):
        raise OstapError("another `ostap serve load` or `rollback` holds the lock "
                         f"{PREFIX}lock; retry when it has finished") from exc
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        raise _unavailable(url, exc) from exc


def _record(pipe, event: dict) -> None:
    pipe.lpush(f"{PREFIX}history", json.dumps(event, sort_keys=True))
    pipe.ltrim(f"{PREFIX}history", 0, HISTORY_LENGTH - 1)


def _prune(client, keep: int) -> list[str]:
    """Drop versions below the newest `keep` of the rollback stack (UNLINK frees in the background)."""
    versions = client.lrange(f"{PREFIX}versions", 0, -1)
    old = versions[:-keep] if len(versions) > keep else []
    if old:
        pipe = client.pipeline(transaction=True)
        pipe.ltrim(f"{PREFIX}versions", len(old), -1)
        for version in old:
            pipe.unlink(*_version_keys(version))
        _record(pipe, {"event": "prune", "versions": old})
        pipe.execute()
    return old


def load_version(ctx: RunContext, redis_url: str | None = None, *,
                 loaded_at: str | None = None, experiment: abtest.Experiment | None = None,
                 make_current: bool = False) -> str | None:
    """Load ctx.ds's published marts.recommendations and marts.premise_leads into Redis as a new
    version and make it current. Returns the version id; None when ds is older than the current
    version's date (a backfill), unless `make_current`."""
    ds, root = ctx.ds, ctx.warehouse
    redis_url = redis_url_or_default(redis_url)
    recs = read_published(RECS, ds, root)
    if recs is None:
        raise OstapError(f"{RECS.qualified} has no published partition ds={ds} under "
                         f"{root}; run `ostap recommend --ds {ds}` first")
    leads = read_published(LEADS, ds, root)
    if leads is None:
        log.warning("%s has no published partition ds=%s: no leads in this version", LEADS.qualified, ds)
    popular = popular_list(recs, _vacant_premises(ds, root))
    return load_frames(recs, leads, ds, redis_url, popular=popular, loaded_at=loaded_at,
                       experiment=experiment, source=root,
                       make_current=make_current)


def rollback(redis_url: str | None = None) -> str:
    """Switch `current` back to the version loaded before it; the abandoned version is dropped
    (reload its ds to get it back). Returns the version now current."""
    redis_url = redis_url_or_default(redis_url)
    client = connect(redis_url, timeout=10.0)
    try:
        with client.lock(f"{PREFIX}lock", timeout=60, blocking_timeout=10):
            versions = client.lrange(f"{PREFIX}versions", 0, -1)
            current = client.get(f"{PREFIX}current")
            if len(versions) < 2 or versions[-1] != current:
                raise OstapError(f"nothing to roll back to: current version {current or 'none'}, "
                                 f"kept versions {versions or 'none'}")
            previous = versions[-2]
            pipe = client.pipeline(transaction=True)
            pipe.set(f"{PREFIX}current", previous)
            pipe.rpop(f"{PREFIX}versions")
            pipe.unlink(*_version_keys(current))
            _record(pipe, {"event": "rollback", "from": current, "to": previous,
                           "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
            pipe.execute()
    except OstapError:
        raise
    except Exception as exc:  # noqa: BLE001
        _raise_if_connection(exc, redis_url)
        raise
    log.info("rolled back from %s to %s", current, previous)
    return previous


def status(redis_url: str | None = None, history: int = 10) -> dict:
    """Current version with its meta, the kept versions and the latest history events."""
    redis_url = redis_url_or_default(redis_url)
    client = connect(redis_url)
    try:
        current = client.get(f"{PREFIX}current")
        versions = client.lrange(f"{PREFIX}versions", 0, -1)
        metas = {v: client.hgetall(version_key(v, "meta")) for v in versions}
        events = [json.loads(e) for e in client.lrange(f"{PREFIX}history", 0, history - 1)]
    except Exception as exc:  # noqa: BLE001
        _raise_if_connection(exc, redis_url)
        raise
    return {"redis": safe_url(redis_url), "current": current, "versions": metas, "history": events}
