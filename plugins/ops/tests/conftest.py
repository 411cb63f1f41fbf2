from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --import-mode=importlib does not put test directories on sys.path; the helper modules have
# ops-specific names so they cannot collide with other test directories' helpers.
sys.path.insert(0, str(Path(__file__).parent))

from swqos_auth_jwt.api_tokens import create_token


@pytest.fixture
def admin_store(tmp_path: Path) -> tuple[Path, str]:
    """An Argon2id admin token store with one admin token: (store path, token)."""
    store = tmp_path / "admin-tokens.json"
    token, _ = create_token(store, "ops-admin", "admin")
    return store, token
