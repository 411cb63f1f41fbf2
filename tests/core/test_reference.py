"""docs/reference.md is the generator's output, and the generator shows what the loader accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swqos_core import config, schema
from swqos_core.cli import main
from swqos_testing import reference

ROOT = Path(__file__).parents[2]


def test_committed_reference_matches_the_generator() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == reference.generate(), \
        "docs/reference.md is stale: run python -m swqos_testing.reference docs/reference.md"


def test_reference_lists_every_kernel_key() -> None:
    text = reference.generate()
    for cls in (config.CoreSettings, config.ProxySettings, config.EnclaveSettings,
                config.ProxyPipeline, config.EnclavePipeline):
        for row in schema.describe(cls):
            assert f"| `{row.key}` |" in text, (cls.__name__, row.key)


def test_reference_has_a_section_for_every_installed_first_party_implementation() -> None:
    from swqos_core import plugins

    pm, loaded, _ = plugins.load_plugins(reference.default_plugin_names())
    registry = plugins.collect_registrations(pm, loaded)
    text = reference.generate()
    names = [(kind, name) for kind, regs in registry.entries.items() for name in regs]
    assert len(names) > 10
    for kind, name in names:
        assert f"#### `[layers.{kind}.{name}]`" in text


# --- describe ----------------------------------------------------------------------------------


@dataclass
class Inner:
    """An inner table."""

    #: How many.
    count: int = 1


@dataclass
class Keyed:
    #: Where it is.
    path: Path


@dataclass
class Sample:
    #: The mode,
    #: on two comment lines.
    mode: Literal["halt", "serve"] = "halt"
    name: str = "x"
    """A docstring below the field."""
    inner: Inner = field(default_factory=Inner)
    keys: dict[str, Keyed] = field(default_factory=dict)
    maybe: list[Literal[1, 2]] | None = None
    required_flag: bool = field(default=False)


def test_describe_shows_literal_values_nested_shapes_and_sentences() -> None:
    rows = {r.key: r for r in schema.describe(Sample)}
    assert list(rows) == ["mode", "name", "inner", "inner.count", "keys", "keys.<name>.path", "maybe", "required_flag"]
    assert rows["mode"] == schema.SettingDoc("mode", "string", '"halt"', ('"halt"', '"serve"'),
                                             "The mode, on two comment lines.")
    assert rows["name"].doc == "A docstring below the field."
    assert rows["inner"].type == "table" and rows["inner"].doc == "An inner table."
    assert rows["inner.count"] == schema.SettingDoc("inner.count", "integer", "1", (), "How many.")
    assert rows["keys"].type == "table of tables" and rows["keys"].default == "{}"
    assert rows["keys.<name>.path"] == schema.SettingDoc("keys.<name>.path", "path", "required", (), "Where it is.")
    assert rows["maybe"].type == "list of integer, optional" and rows["maybe"].allowed == ("1", "2")
    assert rows["maybe"].default == "unset" and rows["required_flag"].default == "false"


def test_plugins_verbose_shows_allowed_values_nested_keys_and_meaning(capsys) -> None:
    main(["plugins", "--verbose"])  # its exit code says whether every installed plugin loaded: not this test's point
    out = capsys.readouterr().out
    assert 'client_header: string = "viewer-address"  (one of "viewer-address", "x-forwarded-for")' in out
    assert "keys.<name>.public_key: path = required" in out
    assert "PEM file with the issuer's EC P-256 public key" in out


def test_check_mode_reports_a_stale_file(tmp_path) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text("old\n")
    assert reference.main(["--check", str(stale)]) == 1
    assert reference.main([str(stale)]) == 0
    assert reference.main(["--check", str(stale)]) == 0
