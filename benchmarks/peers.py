"""Per-decision cost of the other policy engines reachable from Python, on decision.py's policy.

    python benchmarks/peers.py [--repeats 7] [--seconds 0.2] [--rules 10,100,1000] [--quick]

:func:`peer_cases` builds decision.py's four-predicate policy (validity, subject CN ==
"api-client", issuer O == "Contoso Ltd", SHA-1 fingerprint in a set of three pins) in each
engine that is installed, and returns one zero-argument callable per engine that decides
on the same pre-extracted facts as decision.py's plain-Python case:

- cel-expr-python         CEL, Google's C++ implementation: one compiled expression over
                          typed variables;
- cel-python compiled     CEL in pure Python, the program transpiled to Python once
                          (``CompiledRunner``) and reused;
- cel-python interpreted  the same, walking the parsed tree on every evaluation
                          (``InterpretedRunner``, the library's default);
- cedarpy                 Cedar (Rust): one ``permit`` policy reading the request context;
- casbin                  pycasbin: a model whose matcher reads the request, one policy
                          line per pin;
- regopy                  Rego, Microsoft's rego-cpp: a module compiled once into a bundle.
                          (regorus, the Rust Rego engine, publishes no package on PyPI.)

:func:`peer_rule_cases` does the same for a policy of ``n`` allow rules, each pinning a
distinct CN (``api-client-0`` ...), where the request matches the last one; it adds
``cel-expr-python ||``, the ``n`` rules written as one CEL expression of ``n`` disjuncts.

Every policy is parsed and compiled once, outside the callable, as each engine recommends
for repeated evaluation; the callable does what one request costs: it turns the facts into
the engine's input (a context, an activation, an input document) and asks for a decision.
Each case is checked before it is returned: it must allow the matching facts and deny
facts that differ in one predicate (CN, issuer O, pin, validity; for the rule cases, an
unknown CN), so an engine cannot be fast by being wrong. An engine whose package is not
installed is left out silently (``pip install -e '.[bench]'`` installs them all).

Run alone, each case is warmed up, then timed over ``--repeats`` repeats of as many calls
as fill ``--seconds``; the tables show the median per decision, the spread (min..max of the
repeats), and the ratio to a plain-Python function over the same facts.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from common import NOW, measure

Facts = Mapping[str, Any]
"""``cn``, ``issuer_o``, ``sha1`` (lowercase hex): str; ``not_before``, ``not_after``:
UTC-aware datetime."""

Decide = Callable[[Facts, datetime], bool]
"""One decision on ``(facts, now)``: True for allow."""

CN = "api-client"
ISSUER_O = "Contoso Ltd"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# case name -> the distributions that provide it (the first one installed is used)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "cel-expr-python": ("cel-expr-python",),
    "cel-expr-python ||": ("cel-expr-python",),
    "cel-python compiled": ("cel-python",),
    "cel-python interpreted": ("cel-python",),
    "cedarpy": ("cedarpy",),
    # pycasbin is published as "casbin" (1.x, up to 1.43) and as "pycasbin" (2.x); both
    # install the same "casbin" module
    "casbin": ("casbin", "pycasbin"),
    "regopy": ("regopy",),
}


def installed_version(case: str) -> str | None:
    """The version of the distribution providing ``case``, or None if none is installed."""
    for distribution in DISTRIBUTIONS[case]:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def quote(text: str) -> str:
    """A string literal for CEL, Cedar and Rego alike (a JSON string is valid in all three)."""
    return json.dumps(text)


def literal_list(values: Iterable[str]) -> str:
    return ", ".join(quote(value) for value in values)


def rule_cns(n: int) -> list[str]:
    return [f"{CN}-{index}" for index in range(n)]


def variables(facts: Facts, now: datetime) -> dict[str, Any]:
    """The facts and ``now`` as the flat name -> value mapping the CEL expressions read."""
    return {
        "cn": facts["cn"],
        "issuer_o": facts["issuer_o"],
        "sha1": facts["sha1"],
        "not_before": facts["not_before"],
        "not_after": facts["not_after"],
        "now": now,
    }


# --- CEL: the same expression text for both implementations -------------------------------


def cel_policy(pins: Sequence[str]) -> str:
    return (
        "not_before <= now && now <= not_after"
        f" && cn == {quote(CN)} && issuer_o == {quote(ISSUER_O)}"
        f" && sha1 in [{literal_list(pins)}]"
    )


def cel_rules(n: int) -> list[str]:
    return [f"cn == {quote(cn)}" for cn in rule_cns(n)]


# The n-rule CEL cases compile one program per rule and try them in order on one
# activation (first allow wins), as a host that keeps CEL conditions per rule does, and as
# the n rules of the other engines are. For cel-expr-python, "cel-expr-python ||" also
# writes the n rules as one expression of n `||` disjuncts: one call into C++ instead of n.
# cel-python has no such case: its parser and evaluators exceed Python's recursion limit on
# such an expression near n = 1000.
CEL_CPP_MAX_CODE_POINTS = 100_000
"""CEL C++'s default limit on the length of an expression; the `||` case is left out past it."""


def cel_any(expressions: Sequence[str]) -> str | None:
    """One CEL expression true when any of ``expressions`` is; None if too long for CEL C++."""
    expression = " || ".join(expressions)
    return expression if len(expression) <= CEL_CPP_MAX_CODE_POINTS else None


def cel_cpp(expressions: Sequence[str]) -> Decide:
    from cel_expr_python import cel

    # CEL has a timestamp type; cel-expr-python converts a datetime only where the declared
    # type says TIMESTAMP (not inside a map of DYN), hence typed top-level variables.
    env = cel.NewEnv(
        variables={
            "cn": cel.Type.STRING,
            "issuer_o": cel.Type.STRING,
            "sha1": cel.Type.STRING,
            "not_before": cel.Type.TIMESTAMP,
            "not_after": cel.Type.TIMESTAMP,
            "now": cel.Type.TIMESTAMP,
        }
    )
    programs = [env.compile(expression) for expression in expressions]

    def allowed(result: Any) -> bool:
        # an evaluation error comes back as a value of type ERROR, not as an exception
        value = result.value()
        if not isinstance(value, bool):
            raise RuntimeError(f"cel-expr-python: {value}")
        return value

    if len(programs) == 1:
        (program,) = programs

        def decide(facts: Facts, now: datetime) -> bool:
            return allowed(program.eval(data=variables(facts, now)))

        return decide

    def decide_in_order(facts: Facts, now: datetime) -> bool:
        activation = env.Activation(variables(facts, now))
        return any(allowed(program.eval(activation)) for program in programs)

    return decide_in_order


def cel_python(expressions: Sequence[str], *, compiled: bool) -> Decide:
    import celpy
    from celpy import celtypes
    from celpy.adapter import json_to_cel

    runner = celpy.CompiledRunner if compiled else celpy.InterpretedRunner
    env = celpy.Environment(runner_class=runner)
    programs = [env.program(env.compile(expression)) for expression in expressions]

    def decide(facts: Facts, now: datetime) -> bool:
        # json_to_cel turns a datetime into a CEL timestamp
        activation = {name: json_to_cel(value) for name, value in variables(facts, now).items()}
        for program in programs:
            result = program.evaluate(activation)
            if not isinstance(result, celtypes.BoolType):
                raise RuntimeError(f"cel-python: {result!r}")
            if result:
                return True
        return False

    return decide


# --- Cedar ---------------------------------------------------------------------------------


def cedar_policy(pins: Sequence[str]) -> str:
    return f"""
permit (principal, action == Action::"request", resource)
when {{
  context.not_before <= context.now && context.now <= context.not_after &&
  context.cn == {quote(CN)} && context.issuer_o == {quote(ISSUER_O)} &&
  [{literal_list(pins)}].contains(context.sha1)
}};
"""


def cedar_rules(n: int) -> str:
    return "\n".join(
        f'permit (principal, action == Action::"request", resource)'
        f" when {{ context.cn == {quote(cn)} }};"
        for cn in rule_cns(n)
    )


def cedar_datetime(moment: datetime) -> dict[str, Any]:
    """A value of Cedar's datetime extension type, in the JSON form of a context (to ms)."""
    utc = moment.astimezone(UTC)
    text = f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
    return {"__extn": {"fn": "datetime", "arg": text}}


def cedar(policy_text: str) -> Decide:
    import cedarpy

    policies = cedarpy.PolicySet.from_str(policy_text)
    entities = cedarpy.Entities.from_json_str("[]")

    def decide(facts: Facts, now: datetime) -> bool:
        request = {
            "principal": {"type": "Client", "id": facts["sha1"]},
            "action": {"type": "Action", "id": "request"},
            "resource": {"type": "Path", "id": "/"},
            "context": {
                "cn": facts["cn"],
                "issuer_o": facts["issuer_o"],
                "sha1": facts["sha1"],
                "not_before": cedar_datetime(facts["not_before"]),
                "not_after": cedar_datetime(facts["not_after"]),
                "now": cedar_datetime(now),
            },
        }
        result = cedarpy.is_authorized(request, policies, entities)
        # a policy that fails to evaluate is skipped, and the error only reported here
        if result.diagnostics.errors:
            raise RuntimeError(f"cedarpy: {result.diagnostics.errors}")
        return bool(result.allowed)

    return decide


# --- casbin --------------------------------------------------------------------------------

# pycasbin evaluates the matcher as a Python expression (simpleeval) over the request
# values as given, so the facts' datetimes are compared as they are: casbin has no time
# type of its own, and none is needed.
CASBIN_MODEL = """
[request_definition]
r = cert, now

[policy_definition]
p = {policy}

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = {matcher}
"""


def casbin_policy(pins: Sequence[str]) -> Decide:
    matcher = (
        "r.cert.not_before <= r.now && r.now <= r.cert.not_after"
        " && r.cert.cn == p.cn && r.cert.issuer_o == p.issuer_o && r.cert.sha1 == p.sha1"
    )
    lines = [[CN, ISSUER_O, pin] for pin in pins]
    return casbin_enforcer("cn, issuer_o, sha1", matcher, lines)


def casbin_rules(n: int) -> Decide:
    return casbin_enforcer("cn", "r.cert.cn == p.cn", [[cn] for cn in rule_cns(n)])


def casbin_enforcer(policy: str, matcher: str, lines: list[list[str]]) -> Decide:
    import casbin
    from casbin.model import Model

    model = Model()
    model.load_model_from_text(CASBIN_MODEL.format(policy=policy, matcher=matcher))
    enforcer = casbin.Enforcer(model)
    enforcer.add_policies(lines)

    def decide(facts: Facts, now: datetime) -> bool:
        return bool(enforcer.enforce(facts, now))

    return decide


# --- Rego ----------------------------------------------------------------------------------

# Rego has no time type: its time.* built-ins work on integer nanoseconds since the epoch,
# which is what the input document carries.
REGO_ENTRYPOINT = "certauth/allow"


def rego_policy(pins: Sequence[str]) -> str:
    return f"""package certauth

partners := {{{literal_list(pins)}}}

default allow := false

allow if {{
    input.not_before <= input.now
    input.now <= input.not_after
    input.cn == {quote(CN)}
    input.issuer_o == {quote(ISSUER_O)}
    input.sha1 in partners
}}
"""


def rego_rules(n: int) -> str:
    rules = "\n".join(f"allow if input.cn == {quote(cn)}" for cn in rule_cns(n))
    return f"package certauth\n\ndefault allow := false\n\n{rules}\n"


def epoch_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def rego(module: str) -> Decide:
    from regopy import Input, Interpreter

    builder = Interpreter()
    builder.add_module("certauth.rego", module)
    bundle = builder.build(None, [REGO_ENTRYPOINT])
    if not bundle.ok():
        raise RuntimeError("regopy: the bundle did not build")
    # set_input then query: one interpreter is not for concurrent use
    interpreter = Interpreter()

    def decide(facts: Facts, now: datetime) -> bool:
        interpreter.set_input(
            Input(
                {
                    "cn": facts["cn"],
                    "issuer_o": facts["issuer_o"],
                    "sha1": facts["sha1"],
                    "not_before": epoch_ns(facts["not_before"]),
                    "not_after": epoch_ns(facts["not_after"]),
                    "now": epoch_ns(now),
                }
            )
        )
        output = interpreter.query_bundle_entrypoint(bundle, REGO_ENTRYPOINT)
        if not output.ok():
            raise RuntimeError(f"regopy: {output}")
        value = output[0][0]
        if not isinstance(value, bool):
            raise RuntimeError(f"regopy: {output}")
        return value

    return decide


# --- the cases -----------------------------------------------------------------------------


def checked(
    name: str, decide: Decide, allow: Facts, denials: Mapping[str, Facts], now: datetime
) -> Callable[[], bool]:
    """``decide`` on ``allow`` as a zero-argument callable, once it is seen to allow
    ``allow`` and to deny each of ``denials``."""
    if decide(allow, now) is not True:
        raise RuntimeError(f"{name}: does not allow the matching facts")
    for what, facts in denials.items():
        if decide(facts, now) is not False:
            raise RuntimeError(f"{name}: does not deny {what}")
    return lambda: decide(allow, now)


def peer_cases(facts: Facts, pins: list[str], now: datetime) -> dict[str, Callable[[], bool]]:
    """The four-predicate policy in each installed engine, deciding on ``facts`` at ``now``.

    ``facts`` must match the policy (CN "api-client", issuer O "Contoso Ltd", ``sha1`` one
    of ``pins``, valid at ``now``); every callable returns True.
    """
    builders: dict[str, Callable[[], Decide]] = {
        "cel-expr-python": lambda: cel_cpp([cel_policy(pins)]),
        "cel-python compiled": lambda: cel_python([cel_policy(pins)], compiled=True),
        "cel-python interpreted": lambda: cel_python([cel_policy(pins)], compiled=False),
        "cedarpy": lambda: cedar(cedar_policy(pins)),
        "casbin": lambda: casbin_policy(pins),
        "regopy": lambda: rego(rego_policy(pins)),
    }
    denials = {
        "another CN": {**facts, "cn": f"{CN}-other"},
        "another issuer O": {**facts, "issuer_o": "Fabrikam"},
        "an unpinned fingerprint": {**facts, "sha1": "0" * 40},
        "an expired certificate": {**facts, "not_after": now - timedelta(seconds=1)},
    }
    return {
        name: checked(name, build(), facts, denials, now)
        for name, build in builders.items()
        if installed_version(name) is not None
    }


def peer_rule_cases(n: int, facts: Facts, now: datetime) -> dict[str, Callable[[], bool]]:
    """A policy of ``n`` allow rules, rule i allowing CN ``api-client-i``, in each installed
    engine where ``n`` rules are natural, deciding on ``facts`` with the CN of the last rule.

    The input is the whole of ``facts`` (only the CN differs), as for :func:`peer_cases`,
    so the two differ in the policy alone. Cedar: ``n`` policies; casbin: ``n`` policy
    lines; Rego: ``n`` definitions of one ``allow`` rule; CEL: ``n`` programs tried in
    order, and for cel-expr-python also one expression of ``n`` disjuncts (see above).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rules = cel_rules(n)
    builders: dict[str, Callable[[], Decide]] = {"cel-expr-python": lambda: cel_cpp(rules)}
    any_rule = cel_any(rules)
    if any_rule is not None:
        one = any_rule
        builders["cel-expr-python ||"] = lambda: cel_cpp([one])
    builders.update(
        {
            "cel-python compiled": lambda: cel_python(rules, compiled=True),
            "cel-python interpreted": lambda: cel_python(rules, compiled=False),
            "cedarpy": lambda: cedar(cedar_rules(n)),
            "casbin": lambda: casbin_rules(n),
            "regopy": lambda: rego(rego_rules(n)),
        }
    )
    allow = {**facts, "cn": rule_cns(n)[-1]}
    denials = {
        "an unknown CN": {**facts, "cn": f"{CN}-{n}"},
        "a CN that only prefixes the rules' CNs": {**facts, "cn": CN},
    }
    return {
        name: checked(name, build(), allow, denials, now)
        for name, build in builders.items()
        if installed_version(name) is not None
    }


# --- run alone -----------------------------------------------------------------------------


def plain_policy(pins: Sequence[str]) -> Decide:
    pin_set = frozenset(pins)

    def decide(facts: Facts, now: datetime) -> bool:
        return (
            facts["not_before"] <= now <= facts["not_after"]
            and facts["cn"] == CN
            and facts["issuer_o"] == ISSUER_O
            and facts["sha1"] in pin_set
        )

    return decide


def plain_rules(n: int) -> Decide:
    cns = rule_cns(n)

    def decide(facts: Facts, now: datetime) -> bool:
        return any(facts["cn"] == cn for cn in cns)

    return decide


def main() -> None:
    from policyengine.testing import make_certificate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2, help="per repeat of a case")
    parser.add_argument("--rules", default="10,100,1000", help="n for the n-rule table")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 2 short repeats, 10 rules"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.rules = 2, 0.02, "10"
    sizes = [int(size) for size in args.rules.split(",") if size]

    now = NOW
    cert = make_certificate(
        {"CN": CN, "O": ISSUER_O},
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    facts = {
        "cn": CN,
        "issuer_o": ISSUER_O,
        "sha1": cert.sha1,
        "not_before": cert.certificate.not_valid_before_utc,
        "not_after": cert.certificate.not_valid_after_utc,
    }
    pins = [cert.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]

    cases = {"plain python": checked("plain python", plain_policy(pins), facts, {}, now)}
    cases.update(peer_cases(facts, pins, now))
    results = {name: measure(case, args.repeats, args.seconds) for name, case in cases.items()}
    floor = statistics.median(results["plain python"])
    print("four predicates, one decision")
    print(f"{'case':<24}{'version':<10}{'median':>13}{'spread':>26}{'x plain':>10}")
    for name, samples in results.items():
        median = statistics.median(samples)
        spread = f"{min(samples) * 1e6:.2f}..{max(samples) * 1e6:.2f} µs"
        version = installed_version(name) if name in DISTRIBUTIONS else "-"
        print(f"{name:<24}{version:<10}{median * 1e6:>10.2f} µs{spread:>26}{median / floor:>10.1f}")

    if not sizes:
        return
    table: dict[str, dict[int, float]] = {}
    for n in sizes:
        allow = {**facts, "cn": rule_cns(n)[-1]}
        rule_cases = {"plain python": checked("plain python", plain_rules(n), allow, {}, now)}
        rule_cases.update(peer_rule_cases(n, facts, now))
        for name, case in rule_cases.items():
            table.setdefault(name, {})[n] = statistics.median(
                measure(case, args.repeats, args.seconds)
            )
    print()
    print("n rules, the last one allows: median per decision (x plain python)")
    print(f"{'case':<24}" + "".join(f"{f'n={n}':>22}" for n in sizes))
    for name, by_size in table.items():
        cells = []
        for n in sizes:
            if n in by_size:
                cells.append(
                    f"{by_size[n] * 1e6:.1f} µs ({by_size[n] / table['plain python'][n]:.0f}x)"
                )
            else:
                cells.append("-")
        print(f"{name:<24}" + "".join(f"{cell:>22}" for cell in cells))


if __name__ == "__main__":
    main()
