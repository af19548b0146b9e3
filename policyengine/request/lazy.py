"""Facts computed on first read and kept: the descriptors certificate facts are made of.

Owns :class:`once` and :func:`fact` (a cached fact whose errors become a
:class:`~policyengine.errors.FactError` naming the part that could not be read), used by
:class:`~policyengine.request.certificate.CertificateFacts` and the parts of it defined in
:mod:`policyengine.request.keys` and :mod:`policyengine.request.extensions`. Imports only
``policyengine.errors``: no cryptography, nothing of ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from policyengine.errors import FactError

__all__ = ["fact", "first_line", "once"]

_T = TypeVar("_T")


class once(Generic[_T]):  # a decorator, named as one
    """A fact computed on first read and kept in the instance (``@once``).

    Not ``functools.cached_property``, and not named after it: that one takes a lock on
    every first read (Python 3.11), which was a tenth of the cost of deciding on a
    certificate never seen before. Two threads reading the same fact at once may both
    compute it; facts are pure, so either result is the same.
    """

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> _T:
        if instance is None:
            return self  # type: ignore[return-value]
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


class _GuardedFact(once[_T]):
    """A cached fact whose errors become a FactError naming what could not be read."""

    def __init__(self, compute: Callable[[Any], _T], what: str) -> None:
        super().__init__(compute)
        self.what = what

    def __get__(self, instance: Any, owner: type | None = None) -> _T:
        if instance is None:
            return self  # type: ignore[return-value]
        try:
            value = self.compute(instance)
        except FactError:
            raise
        except Exception as exc:
            raise FactError(f"{self.what} cannot be read: {first_line(exc)}") from None
        instance.__dict__[self.name] = value
        return value


def fact(what: str) -> Callable[[Callable[[Any], _T]], once[_T]]:
    """A lazily computed, cached fact; any error reading it becomes a FactError naming it."""

    def decorate(method: Callable[[Any], _T]) -> once[_T]:
        return _GuardedFact(method, what)

    return decorate


def first_line(exc: BaseException) -> str:
    """An exception's message in one line of at most 200 characters (its type if empty)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
