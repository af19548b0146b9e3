"""The cache of fetched answers (request/answers.py) on its own: single flight, renewal,
bounds, and replays refused by the floor. ``ask`` here is a function of the test's; the
whole path, over HTTP, is in test_ocsp.py and test_distribution_points.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from policyengine.request.answers import RETRY, Answers, Held

T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""The evaluation time the answers are asked at (moved by the tests, never read)."""


def answer(value: str, until: timedelta, *, mark: int = 0, size: int = 0) -> Held[str]:
    return Held(value, T0, T0 + until, mark=(mark,), size=size)


class Asker:
    """An ``ask`` that answers from a list, counting its calls; ``gate``, when set, holds
    each call until it is opened."""

    def __init__(self, *answers: Held[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Any, ...]] = []
        self.gate: threading.Event | None = None

    def __call__(self, now: datetime, floor: tuple[Any, ...]) -> Held[str]:
        self.calls.append(floor)
        if self.gate is not None:
            assert self.gate.wait(10)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_failed_renewal_leaves_the_old_answer_and_is_tried_again_after_retry() -> None:
    answers: Answers[str, str] = Answers(capacity=8, wait=1)
    failure = Held("down", T0, T0 + RETRY, lasting=False)
    ask = Asker(
        answer("first", timedelta(hours=1), mark=1),
        failure,
        answer("third", timedelta(hours=2), mark=3),
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


def test_the_floor_is_the_newest_mark_and_outlives_a_failure() -> None:
    """A failure kept over an ended answer carries its mark on: the ask after it still
    learns how new an answer it must not go below."""
    answers: Answers[str, str] = Answers(capacity=8, wait=1)
    ask = Asker(
        answer("new", timedelta(seconds=15), mark=5),
        Held("refused", T0, T0 + timedelta(minutes=1), lasting=False),
        answer("again", timedelta(hours=1), mark=5),
    )
    answers.get("k", T0, ask)
    answers.get("k", T0 + timedelta(seconds=16), ask)  # ended: asked, failed
    answers.get("k", T0 + timedelta(minutes=2), ask)  # the failure ended: asked again
    assert ask.calls == [(), (5,), (5,)]


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
