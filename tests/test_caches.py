"""The one bounded cache (size, eviction order, admission, many threads at once), and the
speed layers built on it, each switched off, deciding as with every layer on."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pytest

from policyengine.caches import BoundedCache
from policyengine.load.document import parse_document
from policyengine.load.loader import compile_document
from policyengine.request.certificate import read_certificate
from policyengine.testing import make_certificate


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


# -- every layer off decides as every layer on ------------------------------------------


LAYER_SWITCHES = ("memo", "recall", "second_sighting", "der_names", "index")


@pytest.mark.parametrize("switch", LAYER_SWITCHES)
def test_each_speed_layer_off_decides_alike(switch: str) -> None:
    """The switches benchmarks/layers.py turns off change speed, never a decision: the
    same requests (returning, new, refused, through the header and as facts) are decided
    alike, message and all, with every layer on and with this one off."""
    now = datetime.now(UTC).replace(microsecond=0)
    valid = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=20)}
    rules = "".join(
        f'  - id: r{n}\n    effect: allow\n    when: valid and subject.CN == "c-{n}"\n'
        for n in range(10)
    )
    text = (
        "policy: layers\ncertificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\n"
        "rules:\n  - id: soon\n    effect: deny\n    when: expires within 7d\n" + rules
    )
    on = compile_document(parse_document(text, "on.yaml"), 8)
    off = compile_document(parse_document(text, "off.yaml"), 8, **{switch: False})
    certificates = [
        make_certificate({"CN": f"c-{n}", "O": "Contoso"}, **valid).der for n in (1, 5, 42)
    ]
    certificates.append(make_certificate({"CN": "c-2"}, not_before=now, not_after=now).der)
    values = [base64.b64encode(der).decode() for der in certificates] + ["not base64!"]
    for _ in range(3):  # first sighting, second, and kept
        for value in values:
            for peer in ("10.0.0.1", "192.0.2.9"):
                request = {"headers": [("X-ARR-ClientCert", value)], "remote_addr": peer}
                a = on.evaluate_request(**request, now=now)  # type: ignore[arg-type]
                b = off.evaluate_request(**request, now=now)  # type: ignore[arg-type]
                assert (a, a.message) == (b, b.message), (switch, value[:20], peer)
        for der in certificates:
            facts = read_certificate(der)
            for at in (now, now + timedelta(days=14), now + timedelta(days=30)):
                a, b = on.evaluate(facts, now=at), off.evaluate(facts, now=at)
                assert (a, a.message) == (b, b.message), (switch, at)
