from __future__ import annotations

from pathlib import Path

import pytest

from swqos_auth_jwt.api_tokens import create_token


@pytest.fixture
def example_admin_store(tmp_path: Path) -> tuple[Path, str]:
    store = tmp_path / "admin-tokens.json"
    token, _ = create_token(store, "example-admin", "admin")
    return store, token
