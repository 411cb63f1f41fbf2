"""``pip install ./proto .`` alone gives a ``swqos`` whose ``--help``, ``plugins`` and ``config check`` run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_config_check import proxy_toml, write_tls

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_the_kernel_installs_and_runs_without_any_plugin(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the working tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__",
                                                            "plugins", "libs", "clients", "testing", "examples"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src / "proto"), str(src)],
                             capture_output=True, text=True, timeout=600, env=env)
    assert install.returncode == 0, install.stderr[-2000:]
    swqos = str(venv / "bin" / "swqos")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([swqos, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)

    assert run("--help").returncode == 0
    listed = run("plugins")
    assert listed.returncode == 0 and "builtin" in listed.stdout
    assert "auth_jwt" not in listed.stdout  # nothing but the kernel is installed
    write_tls(tmp_path)
    assert run("config", "check", str(proxy_toml(tmp_path))).returncode == 0
    wants = proxy_toml(tmp_path)
    wants.write_text(wants.read_text().replace("plugins = []", 'plugins = ["killswitch"]'))
    missing = run("config", "check", str(wants))
    assert missing.returncode == 1 and "pip install swqos-killswitch" in missing.stderr
