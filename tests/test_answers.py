"""The cache of fetched answers (request/answers.py) on its own: single flight, renewal,
bounds, and the marks that refuse replays. ``ask`` here is a function of the test's; the
whole path, over HTTP, is in test_ocsp.py and test_distribution_points.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from policyengine.request.answers import RETRY, Answers, Floors, Held

T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""The evaluation time the answers are asked at (moved by the tests, never read)."""


def answer(value: str, until: timedelta, *, size: int = 0) -> Held[str]:
    return Held(value, T0, T0 + until, size=size)


class Asker:
    """An ``ask`` that answers from a list, counting its calls; ``gate``, when set, holds
    each call until it is opened."""

    def __init__(self, *answers: Held[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str | None] = []
        """The value of the answer each call would replace."""
        self.gate: threading.Event | None = None

    def __call__(self, now: datetime, previous: Held[str] | None) -> Held[str]:
        self.calls.append(previous.value if previous is not None else None)
        if self.gate is not None:
            assert self.gate.wait(10)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_failed_renewal_leaves_the_old_answer_and_is_tried_again_after_retry() -> None:
    answers: Answers[str, str] = Answers(capacity=8, wait=1)
    failure = Held("down", T0, T0 + RETRY, lasting=False)
    ask = Asker(
        answer("first", timedelta(hours=1)),
        failure,
        answer("third", timedelta(hours=2)),
    )
    assert answers.get("k", T0, ask).value == "first"  # type: ignore[union-attr]
    renewing = T0 + timedelta(minutes=55)  # in the last tenth (six minutes)
    assert answers.get("k", renewing, ask).value == "first"  # type: ignore[union-attr]
    answers.settle()
    assert len(ask.calls) == 2
    # the failure did not replace it; no second try before RETRY
    assert answers.get("k", renewing + timedelta(seconds=5), ask).value == "first"  # type: ignore[union-attr]
    answers.settle()
    assert len(ask.calls) == 2
    assert answers.get("k", renewing + RETRY, ask).value == "first"  # type: ignore[union-attr]
    answers.settle()
    assert len(ask.calls) == 3
    assert answers.get("k", T0 + timedelta(minutes=61), ask).value == "third"  # type: ignore[union-attr]
    assert len(ask.calls) == 3  # renewed before the first ended: no fetch on the way


def test_a_mark_refuses_what_is_older_and_outlives_the_answers() -> None:
    floors: Floors[str] = Floors(capacity=2)
    assert floors.admit("ca", (5, T0)) is None
    assert floors.admit("ca", (5, T0)) is None  # the same CRL again
    assert floors.admit("ca", (4, T0 + timedelta(days=1))) == (5, T0)  # a lower number
    assert floors.admit("ca", (6, T0)) is None
    assert floors.admit("other", (1, T0)) is None
    assert floors.admit("third", (1, T0)) is None
    assert floors.admit("ca", (1, T0)) is None  # let go for room: at most two marks


def test_an_answer_a_renewal_kept_meanwhile_is_not_overwritten_by_the_request_s() -> None:
    """The answer ended while its renewal was under way: the request asks itself, and when
    the renewal's newer answer came first, the request's is dropped."""
    answers: Answers[str, str] = Answers(capacity=8, wait=1)
    answers.get("k", T0, Asker(answer("first", timedelta(hours=1))))
    renewal = Asker(answer("renewed", timedelta(hours=3)))
    renewal.gate = threading.Event()
    answers.get("k", T0 + timedelta(minutes=55), renewal)  # the renewal waits at the gate
    late = Asker(Held("failed", T0, T0 + RETRY, lasting=False))
    late.gate = threading.Event()
    after = T0 + timedelta(minutes=61)
    got: list[Held[str] | None] = []
    asking = threading.Thread(target=lambda: got.append(answers.get("k", after, late)))
    asking.start()
    while not late.calls:
        time.sleep(0.01)
    renewal.gate.set()
    deadline = time.monotonic() + 10
    while answers._kept["k"].value != "renewed":  # the renewal keeps its answer
        assert time.monotonic() < deadline
        time.sleep(0.01)
    late.gate.set()
    asking.join(10)
    assert got[0] is not None and got[0].value == "renewed"
    assert answers.get("k", after, late).value == "renewed"  # type: ignore[union-attr]


def test_an_answer_that_ended_is_fetched_by_the_request_not_left_to_a_queued_renewal() -> None:
    """Renewals stuck behind slow fetches (two workers): a request that finds its answer
    ended asks itself, at once, instead of waiting for the queue and giving up."""
    answers: Answers[str, str] = Answers(capacity=64, wait=0.5)
    stuck = Asker(answer("old", timedelta(hours=1)))
    for key in range(6):
        answers.get(key, T0, stuck)
    stuck.gate = threading.Event()
    for key in range(6):  # two renewals run and wait on the gate, four are queued
        answers.get(key, T0 + timedelta(minutes=55), stuck)
    try:
        fresh = Asker(answer("fresh", timedelta(hours=2)))
        started = time.monotonic()
        got = answers.get(5, T0 + timedelta(minutes=61), fresh)
        assert got is not None and got.value == "fresh"
        assert time.monotonic() - started < 0.4
    finally:
        stuck.gate.set()
    answers.settle()
    assert answers.get(5, T0 + timedelta(minutes=62), fresh).value == "fresh"  # type: ignore[union-attr]


def test_capacity_and_budget_let_the_oldest_go() -> None:
    by_count: Answers[str, str] = Answers(capacity=2, wait=1)
    for key in "abc":
        by_count.get(key, T0, Asker(answer(key, timedelta(hours=1))))
    assert len(by_count) == 2
    asked = Asker(answer("a again", timedelta(hours=1)))
    by_count.get("a", T0, asked)
    assert len(asked.calls) == 1  # "a" went first
    by_size: Answers[str, str] = Answers(capacity=10, wait=1, budget=100)
    for key in "abc":
        by_size.get(key, T0, Asker(answer(key, timedelta(hours=1), size=40)))
    assert len(by_size) == 2
