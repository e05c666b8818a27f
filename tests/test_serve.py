"""Recommendation serving against a real redis-server: load, serve, switch, roll back, arms,
cold start, Redis down and back, bad input, the answer log, and the real HTTP server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict

import pandas as pd
import pytest
from helpers import ctx_for  # noqa: E402

from jobs import cli
from jobs.core import abtest, quality, storage
from jobs.core.errors import DataQualityError, OstapError
from jobs.core.tables import TABLES
from jobs.local import net, redis_local
from jobs.serving import api, serving

DS1, DS2 = "2026-03-01", "2026-03-02"
USERS = list(range(1, 13))
ITEMS = 20
LIST_LEN = 5
UNKNOWN_CLIENT = 999
EXPERIMENT = abtest.experiment()  # the configured one, which load and the API read too


def lists_of(ds: str) -> dict[tuple[int, str], list[tuple[int, int, float]]]:
    """(user, model) -> [(item, rank, score)]: distinct per date and model, known in advance."""
    offset = 0 if ds == DS1 else 5
    out = {}
    for u in USERS:
        for model, step in (("lightfm", 1), ("baseline", 2)):
            mult = 3 if model == "lightfm" else 7
            out[(u, model)] = [(100 + (u * mult + step * j + offset) % ITEMS, j + 1, round(1.0 - 0.1 * j, 6))
                               for j in range(LIST_LEN)]
    return out


def leads_of(ds: str) -> dict[int, list[tuple[int, int, float]]]:
    offset = 0 if ds == DS1 else 1
    return {p: [(1 + (p + j + offset) % len(USERS), j + 1, 0.5 - 0.1 * j) for j in range(3)] for p in range(100, 105)}


def expected_popular(ds: str) -> list[int]:
    """Premises by distinct tenants listing them (both models), then mean rank, then id."""
    tenants, ranks = defaultdict(set), defaultdict(list)
    for (u, _model), items in lists_of(ds).items():
        for item, rank, _ in items:
            tenants[item].add(u)
            ranks[item].append(rank)
    return sorted(tenants, key=lambda i: (-len(tenants[i]), sum(ranks[i]) / len(ranks[i]), i))


OCCUPIED_DS1 = set(expected_popular(DS1)[:2])  # the two most listed premises were leased on DS1


def recs_frame(ds: str) -> pd.DataFrame:
    rows = [(u, item, rank, score, model, EXPERIMENT.arm(u))
            for (u, model), items in lists_of(ds).items() for item, rank, score in items]
    return pd.DataFrame(rows, columns=TABLES["marts.recommendations"].columns)


def leads_frame(ds: str) -> pd.DataFrame:
    rows = [(p, rank, u, score) for p, tenants in leads_of(ds).items() for u, rank, score in tenants]
    return pd.DataFrame(rows, columns=TABLES["marts.premise_leads"].columns)


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    """Two dates of marts.recommendations and marts.premise_leads, published through the gate."""
    root = str(tmp_path_factory.mktemp("serve_warehouse"))
    for ds in (DS1, DS2):
        for table, frame in ((TABLES["marts.recommendations"], recs_frame(ds)),
                             (TABLES["marts.premise_leads"], leads_frame(ds))):
            df = spark.createDataFrame(frame, schema=table.spark_schema())
            storage.publish_partition(df, table, ds, ctx=ctx_for(root=root), check=quality.gate)
    # DS1 also has its premises snapshot: the cold-start list must skip the occupied ones.
    premises = TABLES["ods.premises"]
    rows = [(p, 50.0, 1000.0, "center", "left", p not in OCCUPIED_DS1, 1, "office",
             dt.datetime(2026, 3, 1, 12), p) for p in range(100, 100 + ITEMS)]
    storage.publish_partition(spark.createDataFrame(rows, schema=premises.spark_schema()), premises, DS1,
                              ctx=ctx_for(root=root), check=quality.gate)
    return root


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with redis_local.running(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    client = serving.connect(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def answer_log(tmp_path):
    return tmp_path / "answers.jsonl"


def get(http, path: str):
    response = http.get(path)
    return response.status_code, response.get_json()


def assert_serves(http, ds: str, version: str) -> None:
    expected = lists_of(ds)
    for u in USERS:
        status, body = get(http, f"/recommendations/{u}?k=3")
        arm = EXPERIMENT.arm(u)
        assert status == 200
        assert (body["arm"], body["model"], body["cold_start"]) == (arm, abtest.MODEL_OF_ARM[arm], False)
        assert (body["ds"], body["version"], body["client_id"]) == (ds, version, u)
        want = expected[(u, abtest.MODEL_OF_ARM[arm])][:3]
        assert [(i["item_id"], i["rank"], i["score"]) for i in body["items"]] == want


def test_load_serve_switch_rollback_prune(published, redis_url, answer_log):
    from flask import Flask

    v1 = serving.load_version(ctx_for(DS1, root=published), redis_url, loaded_at="2026-03-01T06:00:00+00:00")
    app = api.create_app(redis_url, answer_log)
    assert isinstance(app, Flask)
    http = app.test_client()
    assert_serves(http, DS1, v1)
    assert get(http, "/health") == (200, {"status": "ok", "version": v1, "ds": DS1,
                                          "loaded_at": "2026-03-01T06:00:00+00:00", "clients": len(USERS)})

    v2 = serving.load_version(ctx_for(DS2, root=published), redis_url)
    assert v2 != v1
    assert_serves(http, DS2, v2)  # the same app follows the switch

    assert serving.rollback(redis_url) == v1
    assert_serves(http, DS1, v1)
    with pytest.raises(OstapError, match="nothing to roll back to"):
        serving.rollback(redis_url)

    # A rerun of one ds is a new version with identical answers; only three versions are kept.
    versions = [serving.load_version(ctx_for(DS1, root=published), redis_url) for _ in range(3)]
    assert len(set(versions + [v1])) == 4
    assert_serves(http, DS1, versions[-1])
    state = serving.status(redis_url)
    assert list(state["versions"]) == versions
    assert state["current"] == versions[-1]
    client = serving.connect(redis_url)
    assert client.exists(*serving._version_keys(v1)) == 0  # pruned
    assert client.exists(serving.version_key(versions[0], "rec:lightfm")) == 1
    assert {e["event"] for e in state["history"]} >= {"load", "rollback", "prune"}


def test_a_backfill_of_an_older_date_does_not_switch_live_traffic(published, redis_url, answer_log, capsys,
                                                                   monkeypatch):
    http = api.create_app(redis_url, answer_log).test_client()
    v2 = serving.load_version(ctx_for(DS2, root=published), redis_url)
    assert serving.load_version(ctx_for(DS1, root=published), redis_url) is None  # a backfill's day: not loaded
    state = serving.status(redis_url)
    assert state["current"] == v2 and list(state["versions"]) == [v2]
    assert state["history"][0] == {"event": "skip", "ds": DS1, "current": v2, "current_ds": DS2}
    assert_serves(http, DS2, v2)
    # The same through the command the DAG runs: it succeeds and says what it did.
    monkeypatch.setenv("OSTAP_WAREHOUSE", published)
    assert cli.main(["serve", "load", "--ds", DS1, "--redis", redis_url]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["version"] is None and said["current"] == v2 and "not loaded" in said["note"]
    # Asked for explicitly, an older date is served (rollback stays the way back).
    assert cli.main(["serve", "load", "--ds", DS1, "--redis", redis_url, "--make-current"]) == 0
    v1 = json.loads(capsys.readouterr().out)["version"]
    assert_serves(http, DS1, v1)
    assert serving.rollback(redis_url) == v2


def test_redis_dying_in_the_middle_of_a_load_leaves_the_current_version(published, tmp_path, answer_log,
                                                                         monkeypatch):
    import redis

    folder = tmp_path / "redis"
    server = redis_local.start(folder)
    try:
        v1 = serving.load_version(ctx_for(DS1, root=published), server.url)
        execute = redis.client.Pipeline.execute

        def dies_before_the_data_lands(pipe, *args, **kwargs):
            if not pipe.transaction:  # the load's data pipeline, before the switch
                redis_local.stop(server)
            return execute(pipe, *args, **kwargs)

        monkeypatch.setattr(redis.client.Pipeline, "execute", dies_before_the_data_lands)
        with pytest.raises(OstapError, match="unreachable"):
            serving.load_version(ctx_for(DS2, root=published), server.url)
        monkeypatch.undo()
        server = redis_local.start(folder, port=server.port)
        assert serving.status(server.url)["current"] == v1
        assert_serves(api.create_app(server.url, answer_log).test_client(), DS1, v1)
    finally:
        redis_local.stop(server)


def test_unknown_client_gets_cold_start_popular_list(published, redis_url, answer_log):
    version = serving.load_version(ctx_for(DS1, root=published), redis_url)
    http = api.create_app(redis_url, answer_log).test_client()
    status, body = get(http, f"/recommendations/{UNKNOWN_CLIENT}?k=100")
    assert status == 200
    assert body["cold_start"] is True and body["model"] == serving.POPULAR_MODEL
    assert body["arm"] == EXPERIMENT.arm(UNKNOWN_CLIENT)
    assert (body["ds"], body["version"]) == (DS1, version)
    assert [i["item_id"] for i in body["items"]] == [i for i in expected_popular(DS1) if i not in OCCUPIED_DS1]
    assert [i["rank"] for i in body["items"]] == list(range(1, len(body["items"]) + 1))
    status, body = get(http, f"/recommendations/{UNKNOWN_CLIENT}")
    assert len(body["items"]) == serving.DEFAULT_K

    serving.load_version(ctx_for(DS2, root=published), redis_url)  # no ods.premises of DS2: lists alone decide
    status, body = get(http, f"/recommendations/{UNKNOWN_CLIENT}?k=100")
    assert [i["item_id"] for i in body["items"]] == expected_popular(DS2)


def test_popular_list_keeps_only_vacant_premises():
    recs = recs_frame(DS1)
    vacant = set(expected_popular(DS1)[::2])
    popular = serving.popular_list(recs, vacant_ids=vacant)
    assert list(popular["item_id"]) == [i for i in expected_popular(DS1) if i in vacant]


def test_leads_and_unknown_premise(published, redis_url, answer_log):
    serving.load_version(ctx_for(DS2, root=published), redis_url)
    http = api.create_app(redis_url, answer_log).test_client()
    status, body = get(http, "/leads/101?k=2")
    assert status == 200
    assert [(t["client_id"], t["rank"]) for t in body["tenants"]] == [(u, r) for u, r, _ in leads_of(DS2)[101][:2]]
    status, body = get(http, "/leads/555")
    assert status == 404 and body["error"] == "unknown_premise"


@pytest.mark.parametrize("path", [
    "/recommendations/abc", "/recommendations/-5", "/recommendations/1.5", f"/recommendations/{2**63}",
    "/recommendations/%D9%A3",  # an Arabic-Indic digit: isdigit() but not an id
    "/recommendations/1?k=0", "/recommendations/1?k=101", "/recommendations/1?k=x", "/recommendations/1?k=-1",
    "/leads/x", "/leads/100?k=0",
])
def test_bad_ids_and_k_get_400(published, redis_url, answer_log, path):
    serving.load_version(ctx_for(DS1, root=published), redis_url)
    status, body = get(api.create_app(redis_url, answer_log).test_client(), path)
    assert status == 400
    assert body["error"] == "bad_request" and body["status"] == 400 and body["message"]


def test_answer_log_has_one_line_per_answer_with_the_arm(published, redis_url, answer_log):
    version = serving.load_version(ctx_for(DS1, root=published), redis_url)
    http = api.create_app(redis_url, answer_log).test_client()
    paths = [f"/recommendations/{u}" for u in USERS] + [f"/recommendations/{UNKNOWN_CLIENT}",
                                                        "/recommendations/bad", "/leads/100", "/health"]
    statuses = [http.get(p).status_code for p in paths]
    lines = [json.loads(line) for line in answer_log.read_text().splitlines()]
    assert [r["status"] for r in lines] == statuses
    recs = [r for r in lines if r["endpoint"] == "recommendations" and r["status"] == 200]
    assert len(recs) == len(USERS) + 1
    for record in recs:
        assert record["arm"] == EXPERIMENT.arm(record["client_id"])
        assert record["version"] == version and record["ds"] == DS1
        assert record["latency_ms"] >= 0
        if not record["cold_start"]:
            assert len(record["item_ids"]) == LIST_LEN and record["model"] == abtest.MODEL_OF_ARM[record["arm"]]
    assert {tuple(sorted(r)) for r in recs} == {tuple(sorted(
        ["ts", "request_id", "endpoint", "client_id", "experiment", "arm", "model", "cold_start", "version", "ds",
         "item_ids", "status", "latency_ms"]))}
    assert len({r["request_id"] for r in lines}) == len(lines)  # every answer its own id
    assert {r["experiment"] for r in recs} == {EXPERIMENT.name}


def test_load_refuses_arms_that_disagree_with_abtest(redis_url):
    recs = recs_frame(DS1)
    flipped = recs["user_id"].eq(USERS[0])
    recs.loc[flipped, "arm"] = recs.loc[flipped, "arm"].map({"treatment": "control", "control": "treatment"})
    with pytest.raises(DataQualityError, match=rf"marts.recommendations ds={DS1}: column arm .* user_id {USERS[0]}"):
        serving.load_frames(recs, leads_frame(DS1), DS1, redis_url)
    assert serving.status(redis_url)["current"] is None


def test_load_of_unpublished_date_names_the_table(published, redis_url):
    with pytest.raises(OstapError, match="marts.recommendations has no published partition ds=2026-01-01"):
        serving.load_version(ctx_for("2026-01-01", root=published), redis_url)


def test_redis_down_answers_503_and_recovers_without_restart(published, tmp_path, answer_log):
    folder = tmp_path / "redis"
    server = redis_local.start(folder)
    try:
        version = serving.load_version(ctx_for(DS1, root=published), server.url)
        http = api.create_app(server.url, answer_log).test_client()
        assert get(http, "/recommendations/1")[0] == 200

        redis_local.stop(server)
        for path in ("/recommendations/1", "/health", "/leads/100"):
            status, body = get(http, path)
            assert status == 503
            assert body["error"] == "redis_unavailable" and "unreachable" in body["message"]

        server = redis_local.start(folder, port=server.port)  # the snapshot saved at shutdown comes back
        status, body = get(http, "/recommendations/1")
        assert status == 200 and body["version"] == version
        assert get(http, "/health")[0] == 200
    finally:
        redis_local.stop(server)


def test_health_is_503_before_any_load(redis_url, answer_log):
    status, body = get(api.create_app(redis_url, answer_log).test_client(), "/health")
    assert status == 503 and body["error"] == "no_version"


def test_missing_redis_server_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(redis_local.shutil, "which", lambda name: None)
    monkeypatch.setattr(redis_local.os, "access", lambda path, mode: False)
    with pytest.raises(OstapError, match="apt-get install redis-server"):
        redis_local.start("/nonexistent")


def test_cli_load_status_rollback(published, redis_url, capsys, monkeypatch):
    monkeypatch.setenv("OSTAP_WAREHOUSE", published)  # what --warehouse would set, restored afterwards
    options = ["--redis", redis_url]
    assert cli.main(["serve", "load", "--ds", DS1, *options]) == 0
    assert cli.main(["serve", "load", "--ds", DS2, *options]) == 0
    assert cli.main(["serve", "rollback", *options]) == 0
    capsys.readouterr()
    assert cli.main(["serve", "status", *options]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["versions"][state["current"]]["ds"] == DS1
    assert cli.main(["serve", "load", "--redis", redis_url]) == 2  # --ds missing: one-line error


def test_real_http_server(published, redis_url, tmp_path):
    version = serving.load_version(ctx_for(DS1, root=published), redis_url)
    port = net.free_port()
    log_path = tmp_path / "http.jsonl"
    env = {**os.environ, "OSTAP_REDIS_URL": redis_url}
    server = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--port", str(port), "--log", str(log_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert json.loads(response.read())["version"] == version
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the service did not come up within 60 s"
                time.sleep(0.2)
        u = USERS[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommendations/{u}?k=2", timeout=5) as response:
            body = json.loads(response.read())
            assert response.headers["Content-Type"] == "application/json"
        assert body["arm"] == EXPERIMENT.arm(u) and len(body["items"]) == 2
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/recommendations/{u}?k=1000", timeout=5)
        assert bad.value.code == 400 and json.loads(bad.value.read())["error"] == "bad_request"
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert len(log_path.read_text().splitlines()) == 3
