"""The online A/B test: the answer log landed as raw.serve_exposures (idempotent, one row per
request id, no line lost across a restart of the real `ostap serve`), snapshotted like any source,
and the readout's statistics (a known lift recovered, an A/A quiet, SRM and integrity flags)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from helpers import ctx_for

from jobs import cli
from jobs.abtest import land, statistics
from jobs.core import abtest, storage
from jobs.core.errors import BadInputError
from jobs.core.tables import TABLES
from jobs.local import net, redis_local
from jobs.serving import serving

DS = "2026-03-10"
EXPERIMENT = abtest.experiment()


def answer(request_id: str, client_id: int, ts: str, items=(1, 2), **overrides) -> dict:
    arm = EXPERIMENT.arm(client_id)
    return {"ts": ts, "request_id": request_id, "endpoint": "recommendations", "client_id": client_id,
            "experiment": EXPERIMENT.name, "arm": arm, "model": abtest.MODEL_OF_ARM[arm], "cold_start": False,
            "version": f"{DS}.1", "ds": DS, "item_ids": list(items), "status": 200, "latency_ms": 1.0, **overrides}


def write_log(path, records, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def landed(root) -> pd.DataFrame:
    frame = pd.read_parquet(TABLES["raw.serve_exposures"].partition_path(DS, str(root)))
    return frame.sort_values("request_id").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Landing
# ----------------------------------------------------------------------------------------------

def test_landing_a_day_is_idempotent_one_row_per_request_id(spark, warehouse, tmp_path):
    log_path = tmp_path / "answers.jsonl"
    day = [answer(f"r{i}", 100 + i, f"{DS}T10:00:0{i}.000+00:00", items=(7, 8, 9)) for i in range(5)]
    others = [answer("r-yesterday", 1, "2026-03-09T23:59:59.999+00:00"),
              answer("r-bad", 2, f"{DS}T11:00:00.000+00:00", status=400),
              {"ts": f"{DS}T12:00:00.000+00:00", "request_id": "h1", "endpoint": "health", "status": 200}]
    # A copy of two lines in a rotated sibling (a re-delivered file) and a line being written right now.
    write_log(log_path, day + others, tail='{"ts": "' + DS)
    write_log(tmp_path / "answers.jsonl.1", day[:2])
    ctx = ctx_for(DS, root=warehouse)
    figures = land.land(spark, ctx, log_path)
    first = landed(warehouse)
    assert list(first["request_id"]) == [f"r{i}" for i in range(5)]
    assert figures["exposures"] == 5 and figures["repeated"] == 2 and figures["differing_repeats"] == 0
    assert list(first["item_ids"].unique()) == ["7|8|9"]
    assert set(first["ods_type"]) == {"I"} and list(first.columns) == TABLES["raw.serve_exposures"].columns
    assert storage.run_of(spark, TABLES["raw.serve_exposures"], DS, str(warehouse)) == ctx.run_id  # a manifest
    # Landing the day again (another run) gives the same rows.
    land.land(spark, ctx_for(DS, root=warehouse), log_path)
    pd.testing.assert_frame_equal(landed(warehouse), first)


def test_landing_refuses_answer_lines_without_a_column(spark, warehouse, tmp_path):
    log_path = tmp_path / "answers.jsonl"
    broken = answer("r1", 5, f"{DS}T10:00:00.000+00:00")
    del broken["arm"]
    write_log(log_path, [answer("r0", 4, f"{DS}T09:00:00.000+00:00"), broken])
    with pytest.raises(BadInputError, match=r"raw.serve_exposures load_date=2026-03-10: column arm is missing "
                                            r"in 1 answer lines \(e.g. answers.jsonl:2\)"):
        land.land(spark, ctx_for(DS, root=warehouse), log_path)
    log_path.write_text("not json\n")
    with pytest.raises(BadInputError, match="answers.jsonl: 1 lines are not JSON objects"):
        land.land(spark, ctx_for(DS, root=warehouse), log_path)
    assert not os.path.exists(TABLES["raw.serve_exposures"].partition_path(DS, str(warehouse)))


@pytest.mark.slow  # two landings and two snapshots: over 10 s (the suite alone is in tests/test_quality.py)
def test_landed_exposures_are_snapshotted_and_validated_like_any_source_and_an_empty_day_goes_on(
        spark, warehouse, tmp_path):
    log_path = tmp_path / "answers.jsonl"
    write_log(log_path, [answer(f"q{i}", 10 + i, f"{DS}T08:00:00.{i:03d}+00:00") for i in range(30)])
    next_day = "2026-03-11"
    options = ["--warehouse", str(warehouse)]
    assert cli.main(["abtest", "land", "--ds", DS, "--log", str(log_path), *options]) == 0
    assert cli.main(["snapshot", "--entity", "serve_exposures", "--ds", DS, "--full", *options]) == 0
    results = storage.read_partition(spark, TABLES["dq.validation_results"], DS, str(warehouse)).toPandas()
    assert (results["table_name"] == "ods.serve_exposures").sum() > 10 and results["success"].all()
    # The next day has no answers: an empty partition lands, and the incremental snapshot goes on.
    assert cli.main(["abtest", "land", "--ds", next_day, "--log", str(log_path), *options]) == 0
    assert pd.read_parquet(TABLES["raw.serve_exposures"].partition_path(next_day, str(warehouse))).empty
    assert cli.main(["snapshot", "--entity", "serve_exposures", "--ds", next_day, "--incremental", *options]) == 0
    ods = storage.read_partition(spark, TABLES["ods.serve_exposures"], next_day, str(warehouse)).toPandas()
    assert sorted(ods["request_id"]) == sorted(f"q{i}" for i in range(30))


# ----------------------------------------------------------------------------------------------
# The real service: a restart loses no line
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(spark, tmp_path_factory):
    """A real redis-server with lists loaded for clients 1..40."""
    root = str(tmp_path_factory.mktemp("abtest_serve_warehouse"))
    rows = [(u, 100 + (u + j) % 30, j + 1, 1.0 - 0.1 * j, model, EXPERIMENT.arm(u))
            for u in range(1, 41) for model in ("lightfm", "baseline") for j in range(5)]
    recs = pd.DataFrame(rows, columns=TABLES["marts.recommendations"].columns)
    with redis_local.running(tmp_path_factory.mktemp("redis")) as server:
        serving.load_frames(recs, None, DS, server.url)
        yield server.url, root


def _start_serve(redis_url: str, log_path, port: int):
    env = {**os.environ, "OSTAP_REDIS_URL": redis_url}
    process = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--port", str(port), "--log", str(log_path)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the service did not come up within 60 s"
            time.sleep(0.2)


def _ask(port: int, client_id: int, request_id: str | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/recommendations/{client_id}?k=3",
                                     headers={"X-Request-Id": request_id} if request_id else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_a_killed_and_restarted_service_loses_no_answer_line(spark, served, tmp_path):
    redis_url, _ = served
    log_path, port = tmp_path / "answers.jsonl", net.free_port()
    server = _start_serve(redis_url, log_path, port)
    try:
        before = [_ask(port, c)["request_id"] for c in range(1, 21)]
        _ask(port, 1, request_id="client-retry-1")
    finally:
        server.send_signal(signal.SIGKILL)  # no shutdown handler runs
        server.wait(timeout=10)
    server = _start_serve(redis_url, log_path, port)
    try:
        after = [_ask(port, c)["request_id"] for c in range(21, 41)]
        again = _ask(port, 1, request_id="client-retry-1")  # a client's retry: the same exposure
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert again["arm"] == EXPERIMENT.arm(1) and again["experiment"] == EXPERIMENT.name
    day = dt.datetime.now(dt.UTC).date().isoformat()  # the service stamps answers with its clock
    root = tmp_path / "warehouse"
    land.land(spark, ctx_for(day, root=root), log_path)
    frame = pd.read_parquet(TABLES["raw.serve_exposures"].partition_path(day, str(root)))
    assert sorted(frame["request_id"]) == sorted(before + after + ["client-retry-1"])
    assert sorted(frame["client_id"]) == sorted([*range(1, 41), 1])
    assert (frame["arm"] == [EXPERIMENT.arm(c) for c in frame["client_id"]]).all()


# ----------------------------------------------------------------------------------------------
# Statistics (in-process, as the benchmark runs them)
# ----------------------------------------------------------------------------------------------

def simulated_clients(n: int, base: float, lift: float, seed: int, experiment=EXPERIMENT) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1) + seed * 10_000_000
    arms = np.array([experiment.arm(int(i)) for i in ids])
    p = np.where(arms == abtest.TREATMENT, base * (1 + lift), base)
    signed = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"client_id": ids, "arm": arms, "arms_logged": 1, "signed_any": signed,
                         "signed_shown": signed * (rng.random(n) < 0.8), "rent_signed": signed * rng.gamma(4, 500, n)})


def rows_of(rows: list[dict], metric: str) -> dict[str, dict]:
    return {r["arm"]: r for r in rows if r["metric"] == metric}


def test_a_known_lift_is_recovered_inside_the_interval():
    clients = simulated_clients(20_000, 0.10, 0.30, seed=1)
    rows = statistics.readout(clients, EXPERIMENT, exposures=len(clients))
    signed = rows_of(rows, "signed_any_share")
    assert signed["lift"]["ci_low"] < 0.30 < signed["lift"]["ci_high"]
    assert signed["lift"]["p_value"] < 0.001 and signed["diff"]["ci_low"] > 0
    t = clients[clients["arm"] == "treatment"]["signed_any"]
    assert signed["treatment"]["value"] == pytest.approx(t.mean()) and signed["treatment"]["n_clients"] == len(t)
    assert "underpowered" not in signed["diff"]["flags"] and rows_of(rows, "treatment_share")["all"]["flags"] == ""
    rent = rows_of(rows, "rent_per_client")
    assert rent["lift"]["ci_low"] < rent["lift"]["value"] < rent["lift"]["ci_high"]


def test_an_aa_test_shows_no_difference_and_a_small_one_says_it_is_underpowered():
    rows = statistics.readout(simulated_clients(20_000, 0.10, 0.0, seed=2), EXPERIMENT)
    assert rows_of(rows, "signed_any_share")["diff"]["p_value"] > 0.05
    small = statistics.readout(simulated_clients(300, 0.10, 0.0, seed=3), EXPERIMENT)
    needed = rows_of(small, "signed_any_share")["needed"]
    assert "underpowered" in needed["flags"] and needed["value"] > 300


def test_sample_ratio_mismatch_fires_when_treatment_exposures_are_dropped():
    clients = simulated_clients(20_000, 0.10, 0.0, seed=4)
    treated = clients.index[clients["arm"] == "treatment"]
    dropped = clients.drop(np.random.default_rng(0).choice(treated, len(treated) // 10, replace=False))
    assert "sample_ratio_mismatch" in rows_of(statistics.readout(dropped, EXPERIMENT), "treatment_share")["all"]["flags"]
    assert "sample_ratio_mismatch" not in rows_of(statistics.readout(clients, EXPERIMENT), "treatment_share")["all"]["flags"]


def test_a_filter_after_one_arms_model_is_caught_by_the_length_of_the_lists_shown():
    clients = simulated_clients(5_000, 0.10, 0.0, seed=5)
    clients["items_per_exposure"] = 10.0
    same = statistics.readout(clients, EXPERIMENT, revenue=False)
    assert "shown_lists_differ" not in rows_of(same, "items_shown")["treatment"]["flags"]
    # A filter after LightFM drops the occupied premises from treatment's lists only.
    treated = clients["arm"] == "treatment"
    clients.loc[treated, "items_per_exposure"] = np.random.default_rng(1).choice([8.0, 9.0, 10.0], treated.sum())
    trimmed = statistics.readout(clients, EXPERIMENT, revenue=False)
    shown = rows_of(trimmed, "items_shown")
    assert shown["treatment"]["value"] == pytest.approx(9.0, abs=0.05) and shown["control"]["value"] == 10.0
    assert "shown_lists_differ" in shown["diff"]["flags"] and shown["diff"]["p_value"] < 0.001


def test_the_same_clients_treated_again_in_a_new_experiment_are_flagged():
    clients = simulated_clients(5_000, 0.10, 0.0, seed=6)
    fresh = statistics.readout(clients, EXPERIMENT, revenue=False, others=[abtest.Experiment("rec-older", 50)])
    again = rows_of(fresh, "treated_again_share")["all"]
    assert 0.47 < again["value"] < 0.53 and "same_clients_treated" not in again["flags"]
    # An earlier experiment that ran under the same name (the same salt) treated exactly these clients.
    reused = statistics.readout(clients, EXPERIMENT, revenue=False, others=[abtest.Experiment(EXPERIMENT.name, 50)])
    again = rows_of(reused, "treated_again_share")["all"]
    assert again["value"] == 1.0 and "same_clients_treated" in again["flags"]


# ----------------------------------------------------------------------------------------------
# The readout job on published snapshots
# ----------------------------------------------------------------------------------------------

def publish_inputs(spark, root, exposures: list[tuple], deals: list[tuple]) -> None:
    at = dt.datetime(2026, 3, 10, 12)
    for name, rows in (("ods.serve_exposures", exposures), ("ods.deals", deals)):
        table = TABLES[name]
        df = spark.createDataFrame([(*row, at, i + 1) for i, row in enumerate(rows)], schema=table.spark_schema())
        storage.publish_partition(df, table, DS, ctx=ctx_for(root=root), check=None)  # the suites: elsewhere


def test_readout_counts_deals_per_exposed_client_in_the_window_and_flags_integrity(spark, warehouse, capsys):
    exposed_at = dt.datetime(2026, 3, 2, 10)
    exposures, deals = [], []
    for c in range(1, 201):
        arm = EXPERIMENT.arm(c)
        exposures.append((f"e{c}", exposed_at, EXPERIMENT.name, c, arm, abtest.MODEL_OF_ARM[arm], False, "v",
                          f"{1000 + c}|{2000 + c}"))
        if c % 4 == 0:    # signs a premise it was shown, two days later: counts as shown and any
            deals.append((c, c, 1000 + c, 1, exposed_at, "signed", exposed_at + dt.timedelta(days=2), 100.0 * c))
        if c % 10 == 1:   # signs a premise it was not shown: any only
            deals.append((c, c, 5000, 1, exposed_at, "signed", exposed_at + dt.timedelta(days=1), 50.0))
        if c % 10 == 3:   # too late (outside the 3-day window), open, or before the exposure: none
            deals.append((c, c, 1000 + c, 1, exposed_at, "signed", exposed_at + dt.timedelta(days=5), 70.0))
        if c % 10 == 5:
            deals.append((c, c, 1000 + c, 1, exposed_at, "open", None, 70.0))
        if c % 10 == 7:
            deals.append((c, c, 1000 + c, 1, exposed_at, "signed", exposed_at - dt.timedelta(days=1), 70.0))
    wrong = "control" if EXPERIMENT.arm(7) == "treatment" else "treatment"  # one answer in the other arm
    exposures.append(("e7-wrong", exposed_at, EXPERIMENT.name, 7, wrong, "x", False, "v", "1"))
    exposures.append(("other", exposed_at, "another-experiment", 500, "treatment", "lightfm", False, "v", "1"))
    publish_inputs(spark, warehouse, exposures, [(i + 1, *d[1:]) for i, d in enumerate(deals)])
    assert cli.main(["abtest", "readout", "--ds", DS, "--window-days", "3", "--warehouse", str(warehouse)]) == 0
    assert "signed_any_share: treatment" in capsys.readouterr().out
    rows = storage.read_partition(spark, TABLES["marts.ab_readout"], DS, str(warehouse)).toPandas()
    clients = pd.DataFrame({"client_id": range(1, 201)})
    clients["arm"] = [EXPERIMENT.arm(c) for c in clients["client_id"]]
    clients["any"] = (clients["client_id"] % 4 == 0) | (clients["client_id"] % 10 == 1)
    clients["shown"] = clients["client_id"] % 4 == 0
    clients["rent"] = np.where(clients["client_id"] % 4 == 0, 100.0 * clients["client_id"], 0) \
        + np.where(clients["client_id"] % 10 == 1, 50.0, 0)
    got = {(m, a): r for m, a, r in zip(rows["metric"], rows["arm"], rows.to_dict("records"), strict=True)}
    for arm in ("treatment", "control"):
        mine = clients[clients["arm"] == arm]
        assert got[("exposed_clients", arm)]["value"] == len(mine)
        assert got[("signed_any_share", arm)]["value"] == pytest.approx(mine["any"].mean())
        assert got[("signed_shown_share", arm)]["value"] == pytest.approx(mine["shown"].mean())
        assert got[("rent_per_client", arm)]["value"] == pytest.approx(mine["rent"].mean())
    assert got[("assignment_mismatch_share", "all")]["value"] == pytest.approx(1 / 201)
    assert got[("clients_in_both_arms", "all")]["value"] == 1
    assert set(got[("signed_any_share", "diff")]["flags"].split(",")) == {
        "assignment_mismatch", "clients_in_both_arms", "underpowered"}


def test_readout_without_exposures_names_the_missing_partition(spark, warehouse, capsys):
    assert cli.main(["abtest", "readout", "--ds", DS, "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert "ods.serve_exposures has no published partition ds=2026-03-10" in err and "abtest land" in err


# ----------------------------------------------------------------------------------------------
# The closed loop (end to end)
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_closed_loop_through_the_real_service_lands_deals_and_exposures_and_flags_lost_treatment_lines(
        spark, warehouse, capsys):
    """Two days of the loop: generated tenants ask the real `ostap serve` (real Redis, lists of the
    real recommend job), sign by their hidden taste; their deals go raw -> snapshot, the answer lines
    land and are snapshotted, and each day is read out. 70% of treatment lines are lost: the
    sample-ratio test must say so, while the assignment checks stay clean."""
    from jobs.local import abtest_simulate

    args = cli.build_parser().parse_args(["abtest", "simulate", "--days", "2", "--visit-rate", "1",
                                          "--drop-treatment-exposures", "0.7", "--seed", "3"])
    result = abtest_simulate.simulate(spark, str(warehouse), args)
    days = result["days"]
    assert [d["ds"] for d in days] == ["2024-01-15", "2024-01-16"]
    for figures in days:
        assert figures["answers_kept"] + figures["answers_dropped"] == figures["visits"] > 150
        assert figures["exposures_landed"] == figures["answers_kept"]
        readout_rows = storage.read_partition(spark, TABLES["marts.ab_readout"], figures["ds"], str(warehouse)).toPandas()
        flags = set(readout_rows.loc[readout_rows["metric"] == "treatment_share", "flags"].iloc[0].split(","))
        assert "sample_ratio_mismatch" in flags and not flags & {"assignment_mismatch", "clients_in_both_arms"}
    deals = storage.read_partition(spark, TABLES["ods.deals"], "2024-01-16", str(warehouse)).toPandas()
    simulated = deals[deals["deal_id"] >= result["first_deal_id"]]
    assert len(simulated) == sum(d["deals"] for d in days) > 0 and set(simulated["status"]) == {"signed"}
    exposures = storage.read_partition(spark, TABLES["ods.serve_exposures"], "2024-01-16", str(warehouse)).toPandas()
    assert len(exposures) == sum(d["answers_kept"] for d in days)
    assert (exposures["arm"] == [EXPERIMENT.arm(c) for c in exposures["client_id"]]).all()
    # The run report of the last day carries the readout and the plot of the cumulative lift by day.
    page = open(result["report"]).read()
    assert "A/B test readout" in page and "abtest/ds=2024-01-16/cumulative_lift.png" in page
    assert (warehouse / "reports" / "abtest" / "ds=2024-01-16" / "cumulative_lift.png").stat().st_size > 1000
