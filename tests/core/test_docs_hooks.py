"""docs/hooks.md and swqos_core/hookspecs.py describe the same hooks with the same signatures."""

import inspect
import re
from pathlib import Path

from swqos_core import hookspecs
from swqos_core.plugins import CONTRIBUTION_HOOKS, HOOK_KINDS

DOC = (Path(__file__).parents[2] / "docs" / "hooks.md").read_text()


def spec_functions():
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "swqos_spec")
    }


def test_every_hook_has_a_heading_with_its_exact_signature():
    documented = set(re.findall(r"^### `(swqos_\w+\([^)]*\))`$", DOC, re.MULTILINE))
    expected = {f"{name}({', '.join(inspect.signature(fn).parameters)})" for name, fn in spec_functions().items()}
    assert documented == expected


def test_every_hook_has_a_docstring_saying_when_it_runs():
    for name, fn in spec_functions().items():
        doc = inspect.getdoc(fn) or ""
        assert doc, name
        assert re.search(r"\bCalled\b", doc), f"{name}: say when it is called"


def test_every_registration_hook_maps_to_a_layer_kind():
    registration = {n for n in spec_functions() if n.startswith("swqos_register_")}
    assert registration == set(HOOK_KINDS) | set(CONTRIBUTION_HOOKS)
    assert not set(HOOK_KINDS) & set(CONTRIBUTION_HOOKS)
