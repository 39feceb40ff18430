"""docs/configuration.md is what the generator makes of config.py, and what
it says about each setting (key, variable, default) is what the loader reads."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec

from tidings import config_reference
from tidings.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def test_configuration_md_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == config_reference.reference_markdown(), (
        f"docs/configuration.md is out of date; regenerate it with: "
        f"{config_reference.REGENERATE}"
    )


def test_every_setting_is_described() -> None:
    assert config_reference.undocumented() == [], (
        "write a comment above each of these fields in src/tidings/config.py, "
        f"then run: {config_reference.REGENERATE}"
    )


def test_the_check_command_accepts_the_doc_and_refuses_a_stale_one(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tidings.config_reference", "--check"]
    ok = subprocess.run([*command, str(DOC)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("8888", "9999"), encoding="utf-8")
    refused = subprocess.run([*command, str(stale)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 1
    assert config_reference.REGENERATE in refused.stderr


def _leaves() -> list[config_reference.Setting]:
    return [s for section in config_reference.sections() for s in section.settings]


def test_documented_keys_and_defaults_load_as_the_defaults(tmp_path: Path) -> None:
    """A TOML file that sets every documented key to its documented default
    is accepted and changes nothing."""
    lines: dict[tuple[str, ...], list[str]] = {}
    for setting in _leaves():
        if setting.default == "unset":
            continue  # TOML has no null: leaving the key out is the default
        table = setting.path[:-1]
        lines.setdefault(table, []).append(f"{setting.path[-1]} = {setting.default}")
    text = "\n".join(lines.pop((), [])) + "\n"
    for table, entries in lines.items():
        text += f"\n[{'.'.join(table)}]\n" + "\n".join(entries) + "\n"
    tomllib.loads(text)  # the defaults are written as TOML values
    path = tmp_path / "tidings.toml"
    path.write_text(text, encoding="utf-8")
    loaded = load_settings(path, environ={})
    assert msgspec.to_builtins(loaded) == msgspec.to_builtins(Settings())


def test_documented_variables_set_their_setting() -> None:
    """Each documented TIDINGS_* variable reaches the setting it names."""
    settings = [s for s in _leaves() if s.type in ("int", "float", "str", "bool")]
    assert len(settings) > 50
    for setting in settings:
        # 3600 keeps every rule between settings (a port, a ttl above its floor).
        value = {"int": "3600", "float": "7.5", "str": "x7", "bool": "true"}[setting.type]
        value = {"sqlite_sync": "normal", "log_level": "debug"}.get(setting.key, value)
        loaded = msgspec.to_builtins(load_settings(environ={setting.env: value}))
        node = loaded
        for part in setting.path:
            node = node[part]
        assert str(node).lower() == value, (setting.env, node)


def test_a_field_comment_documents_the_fields_that_follow_it() -> None:
    comments = config_reference.field_comments(config_reference.config.NotificationSettings)
    # Two fields under one comment share it; a "# ---" rule is no description.
    assert comments["allowed_networks"] == comments["denied_networks"]
    assert "webhook targets" in comments["allowed_networks"].lower()
    assert not comments["worker_in_server"].startswith("---")
    assert "delivery worker inside the server process" in comments["worker_in_server"]
