"""Fairness: bob's inference cannot stall alice (issue 14, item 6).

The attack: bob floods the server with slow in-process mock inferences. Before, every call
held a thread of the pool that also serves reads (anyio's default limiter, 40 threads), so
alice's ``GET /v0/datasets`` waited behind bob's calls and timed out. Now inference runs in a
pool of its own, each account may have ``inference_per_account`` calls at once (more get 429),
and a mock's options that make a call sleep, hang, allocate or exit are bounded at create.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest
from tests.conftest import ACCOUNT
from tests.security.conftest import ALICE, BOB
from tests.server.loopback import Served, serve

from assay import errors
from assay.client import Client
from assay.local import LocalPlatform, mocks

#: Bob's calls at once: more than the request thread pool (40) and the per-account limit (8).
FLOOD = 60
#: Seconds each of bob's calls sleeps (``Slow``: one call at a time, so 60 take a minute).
LATENCY = 1.0
#: A generous bound for alice's calls: today they answer in milliseconds; before, they waited
#: for bob's calls ahead of them (tens of seconds).
PATIENCE = 10.0


def _ready_session(client: Client, account: str, mock: type, kwargs: dict[str, object]) -> str:
    service = client.inferenceservices.create_mock(mock, account=account, kwargs=kwargs)
    created = client.inferencesessions.create({"account": account, "inferenceService": service.id})
    session = created.inferencesession.id
    assert client.inferencesessions.wait(session, timeout=60).status == "Ready"
    return session


def test_bobs_flood_of_slow_inference_cannot_stall_alice(
    attack_server: Served, alice: Client, bob: Client
) -> None:
    slow = _ready_session(bob, BOB, mocks.Slow, {"latency": LATENCY})
    own = _ready_session(alice, ALICE, mocks.TextCompletion, {"seed": 1})
    api = f"{attack_server.url}/v0"
    bob_auth = {"Authorization": f"Bearer {attack_server.token(BOB)}"}
    alice_auth = {"Authorization": f"Bearer {attack_server.token(ALICE)}"}
    limits = httpx.Limits(max_connections=FLOOD + 10, max_keepalive_connections=FLOOD + 10)
    with (
        httpx.Client(limits=limits, timeout=300) as http,
        ThreadPoolExecutor(FLOOD) as pool,
    ):

        def bob_infers() -> httpx.Response:
            url = f"{api}/inferencesessions/{slow}/infer/generate"
            return http.post(url, json={"text": "stall"}, headers=bob_auth)

        flood = [pool.submit(bob_infers) for _ in range(FLOOD)]
        reads = 0
        alice_inferred = False
        while not all(call.done() for call in flood):
            # httpx.ReadTimeout here is the attack working: alice's read waits for bob
            listed = http.get(f"{api}/datasets", headers=alice_auth, timeout=PATIENCE)
            assert listed.status_code == 200, listed.text
            reads += 1
            refused = [c.result() for c in flood if c.done() and c.result().status_code == 429]
            if refused and not alice_inferred:
                # bob is at his limit, with calls waiting: alice's own inference still runs
                reply = http.post(
                    f"{api}/inferencesessions/{own}/infer/generate",
                    json={"text": "mine"},
                    headers=alice_auth,
                    timeout=PATIENCE,
                )
                assert reply.status_code == 200, reply.text
                assert reply.json()[0]["text"].startswith("mine")
                alice_inferred = True
            # the next read once one of bob's calls ends, or after 0.1 s
            wait([c for c in flood if not c.done()], timeout=0.1, return_when=FIRST_COMPLETED)
        answers = [call.result() for call in flood]
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429}, statuses
    assert 1 <= statuses[200] < FLOOD, statuses  # bob was served, up to his limit
    assert alice_inferred and reads >= 1
    refused_answer = next(answer for answer in answers if answer.status_code == 429)
    detail = refused_answer.json()["detail"]
    assert f"account {BOB!r}" in detail
    assert "inference_per_account=8" in detail and "ASSAY_INFERENCE_PER_ACCOUNT" in detail
    assert int(refused_answer.headers["Retry-After"]) >= 1
    assert refused_answer.headers["X-Assay-Error"] == "TooManyRequestsError"


#: Bob's calls at once in the second attack: five times the request thread pool.
HOLDERS = 200


def test_with_the_account_limit_raised_inference_still_cannot_take_the_read_threads(
    tmp_path: Path,
) -> None:
    """An operator raised ``inference_per_account`` above the request thread pool: only the
    inference pool of its own, sized from that limit, keeps alice's reads and inference
    going while bob keeps 200 calls of 5 s each running."""
    env = {"ASSAY_INFERENCE_PER_ACCOUNT": "1000"}
    with (
        serve(tmp_path, env=env) as served,
        Client(served.url, served.token(BOB), progress=False, cache_dir=tmp_path / "b") as bob,
        Client(served.url, served.token(ALICE), progress=False, cache_dir=tmp_path / "a") as alice,
    ):
        held = _ready_session(bob, BOB, mocks.Faulty, {"latency": 5})
        own = _ready_session(alice, ALICE, mocks.TextCompletion, {"seed": 1})
        api = f"{served.url}/v0"
        bob_auth = {"Authorization": f"Bearer {served.token(BOB)}"}
        alice_auth = {"Authorization": f"Bearer {served.token(ALICE)}"}
        limits = httpx.Limits(max_connections=HOLDERS + 10, max_keepalive_connections=HOLDERS + 10)
        stop = threading.Event()
        answered = Counter[int]()
        lock = threading.Lock()

        def bob_holds(http: httpx.Client) -> None:
            while not stop.is_set():
                url = f"{api}/inferencesessions/{held}/infer/generate"
                status = http.post(url, json={"text": "hold"}, headers=bob_auth).status_code
                with lock:
                    answered[status] += 1

        with httpx.Client(limits=limits, timeout=300) as http, ThreadPoolExecutor(HOLDERS) as pool:
            holders = [pool.submit(bob_holds, http) for _ in range(HOLDERS)]
            try:
                reads = 0
                # until a whole round of bob's calls has ended (each takes 5 s) and more wait
                while sum(answered.values()) < HOLDERS:
                    listed = http.get(f"{api}/datasets", headers=alice_auth, timeout=PATIENCE)
                    assert listed.status_code == 200, listed.text  # before: ReadTimeout
                    reads += 1
                    reply = http.post(
                        f"{api}/inferencesessions/{own}/infer/generate",
                        json={"text": "mine"},
                        headers=alice_auth,
                        timeout=PATIENCE,
                    )
                    assert reply.status_code == 200, reply.text  # before: ReadTimeout
                    stop.wait(0.1)
            finally:
                stop.set()
                bob.inferencesessions.terminate(held)  # ends the calls in progress at once
                for holder in holders:
                    holder.result()
        assert answered[200] >= HOLDERS and reads >= 2, (answered, reads)


@pytest.mark.parametrize(
    ("mock", "kwargs", "expected"),
    [
        (mocks.Slow, {"latency": 3600}, "kwargs.latency is 3600 s, more than the 5 s"),
        (mocks.Faulty, {"latency": [0, 600]}, "kwargs.latency is 600 s, more than the 5 s"),
        (mocks.Faulty, {"timeout_rate": 0.5}, r"timeout_seconds is 3600 s \(its default\)"),
        (mocks.Faulty, {"exit_after": 1}, "kwargs.exit_after is 1; a multi-user server does not"),
        (mocks.Embedder, {"dim": 10**9}, "kwargs.dim is 1000000000, more than the 4096"),
        (mocks.TextCompletion, {"responses_per_request": 10**6}, "more than the 16"),
        (mocks.Classifier, {"labels": [f"l{i}" for i in range(2000)]}, "2000 labels, more"),
    ],
)
def test_a_mock_option_over_its_bound_is_refused_at_create(
    bob: Client, mock: type, kwargs: dict[str, object], expected: str
) -> None:
    name = f"{mock.__name__}-{next(iter(kwargs))}"
    with pytest.raises(errors.ValidationError, match=expected) as info:
        bob.inferenceservices.create_mock(mock, account=BOB, name=name, kwargs=kwargs)
    assert "runner.configuration.kwargs" in str(info.value)
    assert all(service.name != name for service in bob.inferenceservices.query())


def test_the_bounds_are_the_servers_own_and_hold_when_a_session_starts(
    platform: LocalPlatform,
) -> None:
    """The embedded platform runs its user's own mocks in its user's own process: any value.
    A service made before the bounds (or elsewhere) is checked again when a session of it
    starts on a multi-user platform."""
    hangs = platform.inferenceservices.create_mock(
        mocks.Faulty, account=ACCOUNT, kwargs={"timeout_rate": 0.5, "latency": 60}
    )
    core = platform._core
    core.policy = dataclasses.replace(core.policy, multi_user=True)
    session = platform.inferencesessions.create(
        {"account": ACCOUNT, "inferenceService": hangs.id}
    ).inferencesession
    ended = platform.inferencesessions.wait(session.id, timeout=60)
    assert ended.status == "Error"
    assert "runner.configuration.kwargs.latency is 60 s, more than the 5 s" in (ended.message or "")
