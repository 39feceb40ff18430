"""Authorization: Zaqar's policy names, its default rules, and the small
part of oslo.policy's rule language those rules need.

A rule is a string:

- ``""`` or ``@``: always allowed; ``!``: never;
- ``role:admin``: the identity holds that role (case-insensitive);
- ``rule:name``: the rule of that name;
- ``is_admin:True``, ``project_id:%(project_id)s``: a credential compared
  with a value, which may name a field of the target (``%(...)s``);
- combined with ``not``, ``and``, ``or`` (in that order of precedence) and
  parentheses.

A policy file (YAML or JSON, a mapping of name to rule) overrides the
defaults rule by rule, as oslo.policy's does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

from tidings import errors
from tidings.auth.identity import Identity

UNPROTECTED = ""
ADMIN = "role:admin"


def _defaults() -> dict[str, str]:
    """Zaqar's defaults (zaqar/common/policies/*.py)."""
    rules = {
        "context_is_admin": ADMIN,
        "admin_or_owner": "is_admin:True or project_id:%(project_id)s",
        "ping:get": UNPROTECTED,
        "health:get": ADMIN,
    }
    unprotected = {
        # queues:redrive (a Tidings extension) as messages:delete_all: it does
        # in one step what claims, posts and deletes in the project can do.
        "queues": ("get_all", "create", "get", "delete", "update", "stats", "share", "purge",
                   "redrive"),
        "messages": ("get_all", "create", "get", "delete", "delete_all"),
        "claims": ("create", "get", "update", "delete"),
        "subscription": ("get_all", "create", "get", "delete", "update", "confirm"),
        "topics": ("get_all", "create", "get", "delete", "update", "stats", "purge"),
        "flavors": ("get_all", "get"),
    }
    admin_only = {
        "pools": ("get_all", "create", "get", "delete", "update"),
        "flavors": ("create", "delete", "update"),
    }
    for kind, rule in ((unprotected, UNPROTECTED), (admin_only, ADMIN)):
        for family, actions in kind.items():
            rules.update({f"{family}:{action}": rule for action in actions})
    return rules


DEFAULT_RULES: dict[str, str] = _defaults()


class PolicyError(ValueError):
    """A rule that cannot be parsed, or rules that refer to each other in a loop."""


# --- the checks -----------------------------------------------------------------

Credentials = Mapping[str, Any]
Target = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Const:
    value: bool

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        return self.value


@dataclass(frozen=True, slots=True)
class Role:
    name: str

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        return self.name.lower() in creds.get("roles", ())


@dataclass(frozen=True, slots=True)
class RuleRef:
    name: str

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        check = policy.checks.get(self.name)
        return check is not None and check(creds, target, policy)


@dataclass(frozen=True, slots=True)
class Generic:
    """``key:match``: the credential ``key``, as a string, equals ``match``
    (after ``%(field)s`` is filled in from the target)."""

    key: str
    match: str

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        try:
            expected = self.match % target if "%(" in self.match else self.match
        except (KeyError, TypeError, ValueError):
            return False
        actual = creds.get(self.key)
        return actual is not None and str(actual) == expected


@dataclass(frozen=True, slots=True)
class Not:
    check: Check

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        return not self.check(creds, target, policy)


@dataclass(frozen=True, slots=True)
class AllOf:
    checks: tuple[Check, ...]

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        return all(check(creds, target, policy) for check in self.checks)


@dataclass(frozen=True, slots=True)
class AnyOf:
    checks: tuple[Check, ...]

    def __call__(self, creds: Credentials, target: Target, policy: Policy) -> bool:
        return any(check(creds, target, policy) for check in self.checks)


Check = Union[Const, Role, RuleRef, Generic, Not, AllOf, AnyOf]
ALLOW = Const(True)
DENY = Const(False)


# --- the parser -----------------------------------------------------------------


def _tokens(rule: str) -> list[str]:
    """Words, with parentheses split off their ends (as oslo.policy does)."""
    tokens: list[str] = []
    for word in rule.split():
        opening = len(word) - len(word.lstrip("("))
        closing = len(word) - len(word.rstrip(")"))
        core = word[opening:len(word) - closing]
        tokens.extend("(" * opening)
        if core:
            tokens.append(core)
        tokens.extend(")" * closing)
    return tokens


class _Parser:
    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.tokens = _tokens(rule)
        self.pos = 0

    def parse(self) -> Check:
        if not self.tokens:
            return ALLOW
        check = self._or()
        if self.pos != len(self.tokens):
            self._fail(f"unexpected {self.tokens[self.pos]!r}")
        return check

    def _fail(self, why: str) -> None:
        raise PolicyError(f"invalid rule {self.rule!r}: {why}")

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.lower() == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Check:
        checks = [self._and()]
        while self._keyword("or"):
            checks.append(self._and())
        return checks[0] if len(checks) == 1 else AnyOf(tuple(checks))

    def _and(self) -> Check:
        checks = [self._not()]
        while self._keyword("and"):
            checks.append(self._not())
        return checks[0] if len(checks) == 1 else AllOf(tuple(checks))

    def _not(self) -> Check:
        if self._keyword("not"):
            return Not(self._not())
        return self._atom()

    def _atom(self) -> Check:
        token = self._peek()
        if token is None:
            self._fail("it ends too early")
        assert token is not None
        self.pos += 1
        if token == "(":
            check = self._or()
            if self._peek() != ")":
                self._fail("a parenthesis is not closed")
            self.pos += 1
            return check
        if token == "@":
            return ALLOW
        if token == "!":
            return DENY
        if token == ")" or token.lower() in ("and", "or", "not"):
            self._fail(f"unexpected {token!r}")
        kind, sep, match = token.partition(":")
        if not sep or not kind or not match:
            self._fail(f"{token!r} is not a check (kind:value)")
        if kind == "role":
            return Role(match)
        if kind == "rule":
            return RuleRef(match)
        return Generic(kind, match)


def parse_rule(rule: str | list[Any]) -> Check:
    """One rule; a list is oslo.policy's old form: any of all of checks."""
    if isinstance(rule, list):
        if not rule:
            return ALLOW
        alternatives = [item if isinstance(item, list) else [item] for item in rule]
        return AnyOf(tuple(
            AllOf(tuple(parse_rule(str(check)) for check in alternative))
            for alternative in alternatives
        ))
    if not isinstance(rule, str):
        raise PolicyError(f"a rule must be a string, not {type(rule).__name__}")
    return _Parser(rule).parse()


# --- the policy -----------------------------------------------------------------


class Policy:
    def __init__(self, rules: Mapping[str, str | list[Any]] | None = None) -> None:
        merged: dict[str, Any] = {**DEFAULT_RULES, **(rules or {})}
        self.rules = merged
        self.checks: dict[str, Check] = {}
        for name, rule in merged.items():
            try:
                self.checks[name] = parse_rule(rule)
            except PolicyError as exc:
                raise PolicyError(f"policy {name!r}: {exc}") from None
        self._check_cycles()

    @classmethod
    def load(cls, path: str | Path | None) -> Policy:
        """Zaqar's defaults, overridden by the rules of a YAML or JSON file."""
        if not path:
            return cls()
        text = Path(path).read_text()
        try:
            if str(path).endswith(".json"):
                rules = json.loads(text)
            else:
                import yaml  # JSON is YAML too

                rules = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
            raise PolicyError(f"policy file {path}: {exc}") from None
        if rules is None:
            rules = {}
        if not isinstance(rules, dict) or not all(isinstance(k, str) for k in rules):
            raise PolicyError(f"policy file {path}: expected a mapping of names to rules")
        return cls(rules)

    def _check_cycles(self) -> None:
        def refs(check: Check) -> list[str]:
            if isinstance(check, RuleRef):
                return [check.name]
            if isinstance(check, Not):
                return refs(check.check)
            if isinstance(check, (AllOf, AnyOf)):
                return [name for sub in check.checks for name in refs(sub)]
            return []

        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise PolicyError("rules refer to each other in a loop: "
                                  + " -> ".join((*path, name)))
            if name in done or name not in self.checks:
                return
            for ref in refs(self.checks[name]):
                visit(ref, (*path, name))
            done.add(name)

        for name in self.checks:
            visit(name, ())

    def allows(self, action: str, identity: Identity, target: Target) -> bool:
        # An action no rule names falls back on "default", else is denied.
        check = self.checks.get(action) or self.checks.get("default")
        return check is not None and check(identity.credentials(), target, self)

    def enforce(self, action: str, identity: Identity, target: Target) -> None:
        if not self.allows(action, identity, target):
            raise errors.Forbidden(f"The policy does not allow {action} for this user.")
