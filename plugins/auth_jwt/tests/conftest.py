from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .authjwt_helpers import Env

_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]  # generated once per session


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, *_KEYS)
