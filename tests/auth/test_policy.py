"""The policy rule language and Zaqar's defaults (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidings import errors
from tidings.auth import Identity, Policy, PolicyError
from tidings.auth.policy import DEFAULT_RULES, parse_rule

MEMBER = Identity(project="p1", roles=frozenset({"member", "reader"}), user_id="u1")
ADMIN = Identity(project="p1", roles=frozenset({"Admin", "member"}), user_id="u2")
NOBODY = Identity(project="p2")
TARGET = {"project_id": "p1"}


def check(rule: str | list, identity: Identity, rules: dict | None = None) -> bool:
    policy = Policy({**(rules or {}), "it": rule})
    return policy.allows("it", identity, TARGET)


@pytest.mark.parametrize("rule, member, admin, nobody", [
    ("", True, True, True),
    ("@", True, True, True),
    ("!", False, False, False),
    ("role:admin", False, True, False),
    ("role:ADMIN", False, True, False),
    ("role:member", True, True, False),
    ("role:member and role:reader", True, False, False),
    ("role:reader or role:admin", True, True, False),
    ("not role:admin", True, False, True),
    ("role:member and not role:admin", True, False, False),
    # and binds tighter than or
    ("role:admin or role:member and role:reader", True, True, False),
    ("(role:admin or role:member) and role:reader", True, False, False),
    ("((role:admin))", False, True, False),
    ("rule:context_is_admin", False, True, False),
    ("rule:admin_or_owner", True, True, False),
    ("is_admin:True", False, True, False),
    ("is_admin:False", True, False, True),
    ("project_id:%(project_id)s", True, True, False),
    ("user_id:u1", True, False, False),
    ("project_id:%(missing)s", False, False, False),
    ("rule:no_such_rule", False, False, False),
    ("role:admin OR role:member", True, True, False),
    ([], True, True, True),
    ([["role:admin"], ["role:reader", "role:member"]], True, True, False),
])
def test_rules(rule: str | list, member: bool, admin: bool, nobody: bool) -> None:
    assert (check(rule, MEMBER), check(rule, ADMIN), check(rule, NOBODY)) == (
        member, admin, nobody)


def test_rule_references_compose() -> None:
    rules = {"readers": "role:reader", "writers": "rule:readers and role:member"}
    assert check("rule:writers", MEMBER, rules)
    assert not check("rule:writers", NOBODY, rules)


@pytest.mark.parametrize("rule", [
    "role:admin or", "and role:admin", "(role:admin", "role:admin)", "role", "role:",
    ":admin", "not", "role:admin role:member", "()",
])
def test_bad_rules_are_refused(rule: str) -> None:
    with pytest.raises(PolicyError, match="invalid rule"):
        parse_rule(rule)


def test_loops_are_refused() -> None:
    with pytest.raises(PolicyError, match="loop"):
        Policy({"a": "rule:b", "b": "role:x or rule:a"})
    with pytest.raises(PolicyError, match="loop"):
        Policy({"self": "rule:self"})


def test_zaqar_defaults() -> None:
    policy = Policy()
    for name, rule in DEFAULT_RULES.items():
        admin_only = rule == "role:admin"
        assert policy.allows(name, ADMIN, TARGET), name
        if name.startswith(("queues:", "messages:", "claims:", "subscription:", "topics:")):
            assert policy.allows(name, MEMBER, TARGET), name
        if admin_only:
            assert not policy.allows(name, MEMBER, TARGET), name
    assert not policy.allows("health:get", MEMBER, TARGET)
    assert policy.allows("ping:get", NOBODY, TARGET)
    assert not policy.allows("pools:create", MEMBER, TARGET)
    assert policy.allows("flavors:get_all", MEMBER, TARGET)
    assert not policy.allows("flavors:create", MEMBER, TARGET)


def test_unknown_action_uses_default_rule_or_is_denied() -> None:
    assert not Policy().allows("queues:frobnicate", ADMIN, TARGET)
    assert Policy({"default": "role:member"}).allows("queues:frobnicate", MEMBER, TARGET)


def test_enforce_raises_forbidden_with_a_description() -> None:
    with pytest.raises(errors.Forbidden) as info:
        Policy().enforce("health:get", MEMBER, TARGET)
    assert "health:get" in info.value.description


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_policy_file_overrides_defaults(tmp_path: Path, suffix: str) -> None:
    rules = {"queues:delete": "rule:context_is_admin", "health:get": ""}
    path = tmp_path / f"policy{suffix}"
    text = json.dumps(rules) if suffix == ".json" else "".join(
        f'"{name}": "{rule}"\n' for name, rule in rules.items())
    path.write_text(text)
    policy = Policy.load(path)
    assert not policy.allows("queues:delete", MEMBER, TARGET)
    assert policy.allows("queues:delete", ADMIN, TARGET)
    assert policy.allows("health:get", MEMBER, TARGET)
    assert policy.allows("queues:create", MEMBER, TARGET)  # default kept


def test_empty_policy_file_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("# nothing\n")
    assert Policy.load(path).rules == DEFAULT_RULES


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "mapping"),
    ("queues:get: [unclosed\n", "policy file"),
    ('"queues:get": "role:admin or"\n', "invalid rule"),
])
def test_bad_policy_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        Policy.load(path)
