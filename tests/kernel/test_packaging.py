"""Packaging facts that drift silently: kernel boundaries, one set of version bounds, the uv
workspace, and the hash-pinned requirements the enclave image is built from."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[2]
KERNEL = ROOT / "swqos_core"
#: Distributions whose code runs inside the enclave image (PCR0 measures their exact bytes).
ENCLAVE_DISTRIBUTIONS = ("pyproject.toml", "proto/pyproject.toml", "plugins/payload_tls_cv/pyproject.toml",
                         "plugins/kms_nitro/pyproject.toml")


def member_pyprojects() -> list[Path]:
    skip = {".venv", ".git", "node_modules"}
    return sorted(p for p in ROOT.rglob("pyproject.toml") if not skip & set(p.relative_to(ROOT).parts))


def dependencies(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_the_kernel_imports_no_plugin_no_client_and_no_test_kit():
    offenders = []
    for path in KERNEL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                if top.startswith("swqos_") and top not in ("swqos_core", "swqos_proto"):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def code_lines(path: Path) -> int:
    """Lines of code as cloc counts them: not blank, not a comment, not a docstring."""
    source = path.read_text()
    lines = source.splitlines()
    skip = {i for i, line in enumerate(lines, 1) if not line.strip() or line.strip().startswith("#")}
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    return len(lines) - len(skip)


def test_the_kernel_stays_small():
    lines = sum(code_lines(p) for p in KERNEL.rglob("*.py"))
    assert lines <= 4000, f"swqos_core has {lines} lines of code; the kernel's budget is 4,000"


def test_one_set_of_version_bounds_across_every_distribution():
    seen: dict[str, dict[str, str]] = {}
    for pyproject in member_pyprojects():
        for req in dependencies(pyproject):
            name = req.name.lower().replace("_", "-")
            seen.setdefault(name, {})[str(pyproject.relative_to(ROOT))] = str(req.specifier)
    differing = {name: where for name, where in seen.items() if len(set(where.values())) > 1}
    assert differing == {}


def test_every_distribution_is_a_uv_workspace_member_resolved_from_the_workspace():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    sources = root["tool"]["uv"]["sources"]
    names = set()
    for pyproject in member_pyprojects():
        if pyproject.parent == ROOT:
            continue
        rel = str(pyproject.parent.relative_to(ROOT))
        assert any(Path(rel).match(m) for m in members), f"{rel} is not a uv workspace member"
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        names.add(name)
        assert sources.get(name) == {"workspace": True}, f"{name}: [tool.uv.sources] {name} = {{ workspace = true }}"
    lock = (ROOT / "uv.lock").read_text()
    for name in names | {"swqos-core"}:
        assert f'name = "{name}"' in lock, f"uv.lock does not know {name}: run `uv lock`"


def test_the_enclave_requirements_are_hash_pinned_and_match_the_declared_bounds():
    declared: dict[str, Requirement] = {}
    for rel in ENCLAVE_DISTRIBUTIONS:
        for req in dependencies(ROOT / rel):
            if not req.name.startswith("swqos-") and not req.extras and "grpc" != req.name:
                declared[req.name.lower()] = req
    infile = {Requirement(line).name.lower(): Requirement(line)
              for line in (ROOT / "deploy/enclave/requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert {n: str(r.specifier) for n, r in infile.items()} == {n: str(r.specifier) for n, r in declared.items()}, \
        "deploy/enclave/requirements.in must list the enclave distributions' dependencies with the same bounds"
    text = (ROOT / "deploy/enclave/requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.MULTILINE))
    pins = {k.lower(): v for k, v in pins.items()}
    for name, req in infile.items():
        assert name in pins, f"{name} is not pinned: regenerate deploy/enclave/requirements.txt (see requirements.in)"
        assert req.specifier.contains(Version(pins[name])), f"{name}=={pins[name]} is outside {req.specifier}: regenerate"
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.strip())
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "every pin needs --hash (pip --require-hashes)"
