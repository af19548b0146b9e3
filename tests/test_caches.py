"""The one bounded cache: size, eviction order, admission, and many threads at once."""

from __future__ import annotations

import threading

import pytest

from policyengine.caches import BoundedCache


def test_it_keeps_at_most_its_size_the_least_recently_used_going_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.recall("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert len(cache) == 2
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3


def test_the_raw_lookup_does_not_mark_an_entry_as_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # a was stored first, and reading it through get did not move it
    assert "a" not in cache and cache.get("b") == 2


def test_put_replaces_and_keep_lets_the_first_entry_win() -> None:
    cache: BoundedCache[str, str] = BoundedCache(4)
    cache.put("k", "first")
    cache.put("k", "second")
    assert cache.get("k") == "second"
    assert cache.keep("k", "third") == "second"
    assert cache.keep("new", "value") == "value"
    assert cache.get("k") == "second" and len(cache) == 2


def test_size_zero_keeps_nothing_and_a_negative_size_is_refused() -> None:
    off: BoundedCache[str, int] = BoundedCache(0)
    off.put("a", 1)
    assert off.keep("a", 1) is None
    assert len(off) == 0 and off.get("a") is None and off.recall("a") is None
    with pytest.raises(ValueError, match="0 or more"):
        BoundedCache(-1)


def test_second_sighting_stores_a_key_only_when_offered_before() -> None:
    cache: BoundedCache[str, int] = BoundedCache(8, second_sighting=True)
    cache.put("a", 1)
    assert "a" not in cache  # only noted
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.keep("b", 2) is None
    assert cache.keep("b", 2) == 2


def test_a_flood_of_one_off_keys_pushes_out_no_returning_key() -> None:
    cache: BoundedCache[str, int] = BoundedCache(4, second_sighting=True)
    for _ in range(2):
        cache.put("returning", 0)
    for n in range(100):
        cache.put(f"one-off-{n}", n)
        assert cache.recall("returning") == 0
    assert len(cache) == 1


def test_its_notes_stay_bounded() -> None:
    cache: BoundedCache[int, int] = BoundedCache(3, second_sighting=True)
    for n in range(50):
        cache.put(n, n)
    assert cache._seen is not None and len(cache._seen) <= 3
    assert len(cache) == 0


def test_values_read_while_eight_threads_store_are_ones_stored() -> None:
    cache: BoundedCache[int, int] = BoundedCache(16, second_sighting=True)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(2000):
                key = (n * 7 + offset) % 40
                kept = cache.keep(key, key * 10)
                assert kept is None or kept == key * 10
                assert cache.recall(key) in (None, key * 10)
                cache.put(key, key * 10)
                assert len(cache) <= 16 + 8  # a put evicts one past the bound, under its lock
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) <= 16
    assert all(cache.get(k) == k * 10 for k in range(40) if k in cache)
