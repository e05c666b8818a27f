"""Credit sources: clients, applications, contracts (the scoring domain).

- clients: created over the 5 years before the start; about 40% have no msisdn. Daily new
  clients, updates (region moves, new numbers, name changes), a few deletes and re-inserts.
- applications: every client has one or more (different times; some after the client's
  contracts); the phone is always present: the client's msisdn for most of those who have
  one, a number of its own otherwise (so a client without msisdn can have several phones).
  Status goes pending -> approved/rejected one or two days after the application.
- contracts: from about 85% of approved applications, signed 1-10 days after the decision;
  bad_flag (about 5% of contracts) is revealed 90 days after signing (0 before that), more
  likely for young clients and large amounts relative to term.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.generator.cdc import (
    DAY_US,
    I64_NULL,
    OP_I,
    OP_U,
    Entity,
    Lifecycle,
    Window,
    codes_decoder,
    daytime_us,
    poisson,
)

REGIONS = ["Moscow", "Saint Petersburg", "Kazan", "Novosibirsk", "Yekaterinburg", "Samara", "Omsk",
           "Rostov", "Ufa", "Perm", "Voronezh", "Krasnodar"]
FIRST_NAMES = ["Alexander", "Maria", "Dmitry", "Anna", "Sergey", "Elena", "Andrey", "Olga", "Ivan",
               "Natalia", "Mikhail", "Tatiana", "Nikolai", "Irina", "Pavel", "Svetlana", "Oleg", "Yulia",
               "Artem", "Ekaterina"]
LAST_NAMES = ["Ivanov", "Smirnov", "Kuznetsov", "Popov", "Vasiliev", "Petrov", "Sokolov", "Mikhailov",
              "Novikov", "Fedorov", "Morozov", "Volkov", "Alekseev", "Lebedev", "Semenov", "Egorov",
              "Pavlov", "Kozlov", "Stepanov", "Nikolaev", "Orlov", "Andreev", "Makarov", "Nikitin"]
APP_STATUSES = ["pending", "approved", "rejected"]
TERMS = np.array([6, 12, 18, 24, 36, 48, 60], dtype=np.int32)
BAD_RATE = 0.05
MSISDN_MISSING = 0.40
OUTCOME_DAYS = 90  # bad_flag is known this many days after signing


def decode_names(codes: np.ndarray) -> pa.Array:
    first = pa.array(FIRST_NAMES).take(pa.array(codes // 1000))
    last = pa.array(LAST_NAMES).take(pa.array(codes % 1000))
    return pc.binary_join_element_wise(first, last, " ")


def decode_phone(numbers: np.ndarray) -> pa.Array:
    digits = pa.array(numbers, mask=numbers == I64_NULL, type=pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise("+", digits, "")


def new_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    return 79_000_000_000 + rng.integers(0, 1_000_000_000, n, dtype=np.int64)


def _tweak_client(cols, rng):
    cols["region"] = ((cols["region"] + rng.integers(1, len(REGIONS), cols["region"].size))
                      % len(REGIONS)).astype(cols["region"].dtype)


def _tweak_amount(cols, rng):
    cols["amount"] = np.round(cols["amount"] + 100.0 * rng.integers(1, 20, cols["amount"].size), 2)


def generate(window: Window, sizes: dict, rng: np.random.Generator) -> list[Entity]:
    first = window.first_day
    # ---- clients ------------------------------------------------------------------------
    n_initial = sizes["clients"]
    new_per_day = [poisson(rng, sizes["clients"] * 0.0025) for _ in window.day_range()]
    born_initial = (window.start_us - rng.integers(1, 5 * 365, n_initial) * DAY_US
                    + daytime_us(rng, n_initial))
    born_new = np.concatenate([d * DAY_US + daytime_us(rng, k) for d, k in zip(window.day_range(), new_per_day, strict=True)]
                              + [np.zeros(0, dtype=np.int64)])
    client_born = np.sort(np.concatenate([born_initial, born_new]))
    n_clients = client_born.size
    msisdn = new_phones(rng, n_clients)
    msisdn[rng.random(n_clients) < MSISDN_MISSING] = I64_NULL
    age_days = rng.integers(18 * 365, 75 * 365, n_clients)
    clients = Entity("clients", {
        "client_id": 100_001 + np.arange(n_clients, dtype=np.int64),
        "full_name": rng.integers(0, len(FIRST_NAMES), n_clients) * 1000 + rng.integers(0, len(LAST_NAMES), n_clients),
        "birth_date": (client_born // DAY_US - age_days).astype(np.int32),
        "msisdn": msisdn,
        "region": rng.integers(0, len(REGIONS), n_clients).astype(np.int16),
        "created_at": client_born,
    }, _tweak_client, rng, {"full_name": decode_names, "msisdn": decode_phone,
                            "region": codes_decoder(REGIONS)})
    initial_msisdn = msisdn.copy()

    def update_clients(idx):
        kind = rng.random(idx.size)
        has_phone = clients.state["msisdn"][idx] != I64_NULL
        moves = idx[(kind < 0.5) | ((kind < 0.8) & ~has_phone)]
        clients.state["region"][moves] = rng.integers(0, len(REGIONS), moves.size)
        renumbered = idx[(kind >= 0.5) & (kind < 0.8) & has_phone]
        clients.state["msisdn"][renumbered] = new_phones(rng, renumbered.size)
        renamed = idx[kind >= 0.8]
        clients.state["full_name"][renamed] = (clients.state["full_name"][renamed] // 1000 * 1000
                                               + rng.integers(0, len(LAST_NAMES), renamed.size))

    # ---- applications (all of them, history and window, decided up front) ---------------
    initial_clients = np.flatnonzero(client_born < window.start_us)
    apps_per_client = rng.geometric(0.6, initial_clients.size)
    app_client = np.repeat(initial_clients, apps_per_client)
    span = window.start_us - client_born[app_client]
    app_us = client_born[app_client] + (rng.random(app_client.size) * span).astype(np.int64)
    window_clients, window_us = [], []
    for d in window.day_range():
        k = poisson(rng, sizes["clients"] * 0.004)
        pool = np.flatnonzero(client_born < d * DAY_US)
        window_clients.append(rng.choice(pool, size=k))
        window_us.append(d * DAY_US + daytime_us(rng, k))
    app_client = np.concatenate([app_client] + window_clients)
    app_us = np.concatenate([app_us] + window_us)
    order = np.argsort(app_us, kind="stable")
    app_client, app_us = app_client[order], app_us[order]
    n_apps = app_us.size
    phone = new_phones(rng, n_apps)
    client_phone = initial_msisdn[app_client]
    use_msisdn = (client_phone != I64_NULL) & (rng.random(n_apps) < 0.8)
    phone[use_msisdn] = client_phone[use_msisdn]
    decision_day = app_us // DAY_US + 1 + (rng.random(n_apps) < 0.5)
    decision_us = decision_day * DAY_US + daytime_us(rng, n_apps)
    final_status = np.where(rng.random(n_apps) < 0.55, 1, 2).astype(np.int8)
    amount = np.round(np.exp(rng.normal(np.log(150_000), 0.6, n_apps)), -2)
    applications = Entity("applications", {
        "application_id": 5_000_001 + np.arange(n_apps, dtype=np.int64),
        "client_id": clients.state["client_id"][app_client],
        "phone": phone,
        "created_at": app_us,
        "amount": amount,
        "status": np.where(decision_us < window.start_us, final_status, 0).astype(np.int8),
    }, _tweak_amount, rng, {"phone": decode_phone, "status": codes_decoder(APP_STATUSES)})

    # ---- contracts ----------------------------------------------------------------------
    signed = np.flatnonzero((final_status == 1) & (rng.random(n_apps) < 0.85))
    sign_day = decision_day[signed] + rng.integers(1, 11, signed.size)
    sign_us = sign_day * DAY_US + daytime_us(rng, signed.size)
    order = np.argsort(sign_us, kind="stable")
    signed, sign_day, sign_us = signed[order], sign_day[order], sign_us[order]
    n_contracts = signed.size
    term = rng.choice(TERMS, n_contracts)
    contract_amount = np.round(amount[signed] * rng.uniform(0.7, 1.0, n_contracts), -2)
    age_years = (sign_day - clients.state["birth_date"][app_client[signed]]) / 365.25
    # Hidden risk: young clients and large monthly payments default more often.
    risk = np.exp(0.9 * (age_years < 25) + 0.4 * (age_years < 35)
                  + 0.5 * np.log(contract_amount / term / 10_000) + rng.normal(0, 0.5, n_contracts))
    bad_true = rng.random(n_contracts) < np.clip(BAD_RATE * risk / risk.mean(), 0, 0.9)
    reveal_day = sign_day + OUTCOME_DAYS
    contracts = Entity("contracts", {
        "contract_id": 9_000_001 + np.arange(n_contracts, dtype=np.int64),
        "client_id": applications.state["client_id"][signed],
        "application_id": applications.state["application_id"][signed],
        "sign_date": sign_day.astype(np.int32),
        "amount": contract_amount,
        "term_months": term.astype(np.int32),
        "bad_flag": (bad_true & (reveal_day < first)).astype(np.int32),
    }, _tweak_amount, rng)

    # ---- the replica: initial load, then day by day -------------------------------------
    client_life = Lifecycle(clients, client_born)
    client_life.initial_load(window, rng)
    initial_apps = np.flatnonzero(app_us < window.start_us)
    applications.emit(initial_apps, window.initial_load_times(rng, initial_apps.size), OP_I)
    initial_contracts = np.flatnonzero(sign_us < window.start_us)
    contracts.emit(initial_contracts, window.initial_load_times(rng, initial_contracts.size), OP_I)
    app_day = app_us // DAY_US
    for d in window.day_range():
        client_life.day(d, rng, update_rate=0.004, delete_rate=0.0004, reinsert_rate=0.15,
                        update=update_clients)
        new_apps = np.flatnonzero(app_day == d)
        applications.emit(new_apps, app_us[new_apps], OP_I)
        decided = np.flatnonzero((decision_day == d) & (app_us < d * DAY_US))
        applications.state["status"][decided] = final_status[decided]
        applications.emit(decided, decision_us[decided], OP_U)
        new_contracts = np.flatnonzero(sign_day == d)
        contracts.emit(new_contracts, sign_us[new_contracts], OP_I)
        revealed = np.flatnonzero(bad_true & (reveal_day == d) & (reveal_day >= first))
        contracts.state["bad_flag"][revealed] = 1
        contracts.emit(revealed, d * DAY_US + daytime_us(rng, revealed.size), OP_U)
    return [clients, applications, contracts]
