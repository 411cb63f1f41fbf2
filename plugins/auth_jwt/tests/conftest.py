from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

# --import-mode=importlib does not put test directories on sys.path; the helper module has a
# plugin-specific name so it cannot collide with another plugin's helpers.
sys.path.insert(0, str(Path(__file__).parent))

from authjwt_helpers import Env

_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]  # generated once per session


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, *_KEYS)
