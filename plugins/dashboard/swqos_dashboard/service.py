"""The ``dashboard`` service: holds the :class:`~swqos_dashboard.dashboard.Dashboard` for the
process, so its settings come from ``[layers.service.dashboard]`` like every other service's."""

from __future__ import annotations

from typing import Any

from swqos_dashboard.dashboard import Dashboard
from swqos_dashboard.settings import DashboardSettings


class DashboardService:
    """A :class:`~swqos_core.layers.Service`; the admin listener serves its pages."""

    def __init__(self, settings: DashboardSettings | None) -> None:
        self.settings = settings or DashboardSettings()
        self.dashboard = Dashboard(self.settings)

    async def start(self, app: Any) -> None:
        self.dashboard.bind(app)

    async def close(self) -> None:
        """Nothing to release: everything it holds is in memory."""
