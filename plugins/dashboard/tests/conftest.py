"""Fixtures of the dashboard tests: a small app (real kernel state, real AdminOperations) and a
dashboard mounted on a recording operations host."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from swqos_core.extensions import AdminOperation
from swqos_core.plugins import Contributions
from swqos_core.state import EnclaveIdentity, ServiceState
from swqos_dashboard.dashboard import Dashboard
from swqos_dashboard.settings import DashboardSettings

from .dashboard_helpers import Clock, FakeEnclave, RecordingHost, Revocations


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations() -> Revocations:
    return Revocations()


@pytest.fixture
def app(revocations: Revocations) -> SimpleNamespace:
    state = ServiceState("0.1.0")
    state.set_enclave(True, EnclaveIdentity(b"\x01" * 32, None, 5))
    contributions = Contributions()
    for op in (
        AdminOperation("revoke-trader", revocations.revoke, "revoke", params={"sub": "trader", "force": "f"},
                       subject_param="sub", policy=revocations),
        AdminOperation("restore-trader", revocations.restore, "restore", params={"sub": "trader"},
                       policy=revocations),
    ):
        contributions.admin_operations[op.name] = ("fake_auth", op)
    contributions.status["cdn"] = ("fake_cdn", lambda: {"provider": "fake", "ranges_age_seconds": 12})
    return SimpleNamespace(state=state, enclave=FakeEnclave(5), contributions=contributions,
                           layers={"store": [("memory", object())]}, plugins=[])


@pytest.fixture
def dashboard(app: SimpleNamespace, clock: Clock) -> tuple[Dashboard, RecordingHost]:
    dash = Dashboard(DashboardSettings(), clock)
    dash.bind(app)
    host = RecordingHost(app.contributions.admin_operations)
    dash.mount("/ui", host)
    return dash, host
