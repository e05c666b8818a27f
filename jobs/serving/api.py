"""The recommendation API over Redis (`ostap serve`): one answer per request, from the current
version that jobs.serving.serving loaded, logged to the JSON-lines answer log."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

from jobs.core import abtest
from jobs.core.answer_log import REQUEST_ID, AnswerLog
from jobs.serving.serving import (
    DEFAULT_K,
    MAX_ID,
    MAX_K,
    POPULAR_MODEL,
    PREFIX,
    connect,
    safe_url,
    version_key,
)

# One round trip per request: current pointer, version meta and the list, read atomically.
# A Lua false/nil would end the reply array, so absent values come back as "".
_RECS_SCRIPT = """
local ver = redis.call('GET', KEYS[1])
if not ver then return {} end
local base = ARGV[1] .. 'v:' .. ver .. ':'
local meta = redis.call('HMGET', base .. 'meta', 'ds', 'treatment_share', 'experiment')
local list = redis.call('HGET', base .. 'rec:' .. ARGV[2], ARGV[3])
local cold = '0'
if not list then
  list = redis.call('GET', base .. 'popular') or '[]'
  cold = '1'
end
return {ver, meta[1] or '', meta[2] or '', meta[3] or '', list, cold}
"""

_LEADS_SCRIPT = """
local ver = redis.call('GET', KEYS[1])
if not ver then return {} end
local base = ARGV[1] .. 'v:' .. ver .. ':'
local ds = redis.call('HGET', base .. 'meta', 'ds') or ''
local list = redis.call('HGET', base .. 'leads', ARGV[2]) or ''
return {ver, ds, list}
"""



def _parse_id(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_ID:
        raise _BadRequest(f"{what} must be a non-negative integer (at most {MAX_ID}), got {text!r}")
    return int(text)


def _parse_k(raw: str | None, max_k: int) -> int:
    if raw is None:
        return min(DEFAULT_K, max_k)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= max_k:
        raise _BadRequest(f"k must be an integer within 1..{max_k}, got {raw!r}")
    return int(raw)


class _BadRequest(Exception):
    pass


def _parse_request(raw_id: str, what: str, max_k: int) -> tuple[int, int]:
    """The path id and the `k` query argument of a request, or _BadRequest (answered with 400)."""
    from flask import request

    return _parse_id(raw_id, what), _parse_k(request.args.get("k"), max_k)


def create_app(redis_url: str, log_path: str | Path | None, *, max_k: int = MAX_K,
               experiment: abtest.Experiment | None = None):
    """The Flask app. `experiment` (default: the configured current one) is only the first guess:
    each version carries the experiment (name and share) it was loaded with, and the arm always
    follows the served version's."""
    import redis
    from flask import Flask, request

    app = Flask("ostap-serve")
    app.json.sort_keys = False
    client = connect(redis_url)
    recs_script = client.register_script(_RECS_SCRIPT)
    leads_script = client.register_script(_LEADS_SCRIPT)
    answers = AnswerLog(log_path)
    guess = {"experiment": experiment or abtest.experiment()}
    redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError)
    app.config["ANSWER_LOG"] = answers
    app.config["REDIS_URL"] = redis_url

    def answer(status_code: int, body: dict, record: dict, started: float):
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        answers.write({"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                       "request_id": request_id(), **record, "status": status_code, "latency_ms": latency_ms})
        response = app.json.response(body)
        response.headers["X-Request-Id"] = request_id()
        return response, status_code

    def request_id() -> str:
        """The client's X-Request-Id when it is a sane token (its retries are then one exposure),
        else a fresh random id; the same for every use within one request."""
        from flask import g

        if "request_id" not in g:
            sent = request.headers.get("X-Request-Id", "")
            g.request_id = sent if REQUEST_ID.match(sent) else uuid.uuid4().hex
        return g.request_id

    def served_experiment(reply) -> abtest.Experiment:
        """The experiment the served version was loaded with (the guess follows it)."""
        name, share = reply[3], reply[2]
        current = guess["experiment"]
        if name and share and (name, int(share)) != (current.name, current.treatment_share):
            guess["experiment"] = abtest.Experiment(name, int(share), current.min_detectable_lift)
        return guess["experiment"]

    def error(status_code: int, kind: str, message: str, record: dict, started: float):
        return answer(status_code, {"error": kind, "message": message, "status": status_code},
                      {**record, "error": kind}, started)

    def unavailable(exc: Exception, record: dict, started: float):
        return error(503, "redis_unavailable",
                     f"the recommendation store (Redis at {safe_url(redis_url)}) is unreachable: "
                     f"{type(exc).__name__}; retry shortly", record, started)

    def not_loaded(record: dict, started: float):
        return error(503, "no_version", "no recommendation version is loaded yet; run `ostap serve load --ds D`",
                     record, started)

    @app.get("/recommendations/<client_id>")
    def recommendations(client_id: str):
        started = time.perf_counter()
        record = {"endpoint": "recommendations", "client_id": client_id}
        try:
            cid, k = _parse_request(client_id, "client_id", max_k)
        except _BadRequest as exc:
            return error(400, "bad_request", str(exc), record, started)
        record["client_id"] = cid
        experiment = guess["experiment"]
        arm = experiment.arm(cid)
        try:
            reply = recs_script(keys=[f"{PREFIX}current"], args=[PREFIX, abtest.MODEL_OF_ARM[arm], str(cid)])
            if reply and served_experiment(reply) != experiment:
                # The served version was loaded for another experiment: follow it (once per change).
                experiment = guess["experiment"]
                arm = experiment.arm(cid)
                reply = recs_script(keys=[f"{PREFIX}current"], args=[PREFIX, abtest.MODEL_OF_ARM[arm], str(cid)])
        except redis_errors as exc:
            return unavailable(exc, {**record, "experiment": experiment.name, "arm": arm}, started)
        if not reply:
            return not_loaded({**record, "experiment": experiment.name, "arm": arm}, started)
        version, ds, _share, _experiment, payload, cold = reply
        cold_start = cold == "1"
        model = POPULAR_MODEL if cold_start else abtest.MODEL_OF_ARM[arm]
        items = json.loads(payload)[:k]
        body = {"client_id": cid, "experiment": experiment.name, "arm": arm, "model": model,
                "cold_start": cold_start, "items": [{"item_id": i, "rank": r, "score": s} for i, r, s in items],
                "ds": ds, "version": version, "request_id": request_id()}
        return answer(200, body, {**record, "experiment": experiment.name, "arm": arm, "model": model,
                                  "cold_start": cold_start,
                                  "version": version, "ds": ds, "item_ids": [i for i, _, _ in items]}, started)

    @app.get("/leads/<premise_id>")
    def leads(premise_id: str):
        started = time.perf_counter()
        record = {"endpoint": "leads", "premise_id": premise_id}
        try:
            pid, k = _parse_request(premise_id, "premise_id", max_k)
        except _BadRequest as exc:
            return error(400, "bad_request", str(exc), record, started)
        record["premise_id"] = pid
        try:
            reply = leads_script(keys=[f"{PREFIX}current"], args=[PREFIX, str(pid)])
        except redis_errors as exc:
            return unavailable(exc, record, started)
        if not reply:
            return not_loaded(record, started)
        version, ds, payload = reply
        record.update(version=version, ds=ds)
        if not payload:
            return error(404, "unknown_premise",
                         f"premise {pid} has no leads in version {version} (ds {ds}): not vacant, "
                         "unknown, or no tenant passes its filters", record, started)
        tenants = json.loads(payload)[:k]
        body = {"premise_id": pid, "tenants": [{"client_id": u, "rank": r, "score": s} for u, r, s in tenants],
                "ds": ds, "version": version}
        return answer(200, body, {**record, "client_ids": [u for u, _, _ in tenants]}, started)

    @app.get("/health")
    def health():
        started = time.perf_counter()
        record = {"endpoint": "health"}
        try:
            version = client.get(f"{PREFIX}current")
            meta = client.hgetall(version_key(version, "meta")) if version else {}
        except redis_errors as exc:
            return unavailable(exc, record, started)
        if not version:
            return not_loaded(record, started)
        body = {"status": "ok", "version": version, "ds": meta.get("ds"), "loaded_at": meta.get("loaded_at"),
                "clients": int(meta.get("clients", 0))}
        return answer(200, body, {**record, "version": version, "ds": meta.get("ds")}, started)

    @app.errorhandler(404)
    def no_route(_exc):
        return {"error": "not_found", "message": f"no route {request.path}; see GET /health, "
                "/recommendations/<client_id>?k=, /leads/<premise_id>?k=", "status": 404}, 404

    @app.errorhandler(405)
    def bad_method(_exc):
        return {"error": "method_not_allowed", "message": f"{request.method} {request.path}: only GET",
                "status": 405}, 405

    return app
