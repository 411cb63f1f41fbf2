"""What a mounted page (the dashboard, :meth:`AdminService.mount`) may do besides answering: run
an admin operation, or write an admin audit line, as the operator the listener authenticated.

:class:`PageHost` runs an operation exactly as ``POST /v1/<name>`` does (the parameter and
unknown-trader checks of :class:`~swqos_ops.operations.OperationTable`, the handler, the audit
line), so a page adds no second path to any operation. The client address, request id and peer
credentials of the audit line are the ones of the request being answered: the listener sets them
(:func:`enter`) for the task that serves it before it calls the mounted handler.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from swqos_core.extensions import Actor
from swqos_core.layers import ClientAddress

if TYPE_CHECKING:
    from swqos_ops.listener import AdminService

_request: contextvars.ContextVar[tuple[ClientAddress, str, dict[str, int] | None]] = contextvars.ContextVar(
    "swqos_admin_mounted_request")


def enter(client: ClientAddress, rid: str, peer: dict[str, int] | None) -> None:
    """Called by the listener in the task answering a mounted path, before the handler runs."""
    _request.set((client, rid, peer))


class PageHost:
    """The admin listener's operations, for a page it serves (``host.invoke``, ``host.audit``)."""

    def __init__(self, service: AdminService) -> None:
        self.service = service

    async def invoke(self, name: str, params: Mapping[str, Any], actor: Actor) -> tuple[int, Mapping[str, Any]]:
        """Run operation ``name`` for ``actor``: (HTTP status, JSON body), audited like the API.

        Only from a mounted handler (outside one there is no request to attribute it to: LookupError).
        """
        client, rid, peer = _request.get()
        op = self.service.table.get(name)
        if op is None:
            return 404, {"error": f"unknown operation {name[:64]!r}", "request_id": rid}
        return await self.service.run_operation(op, dict(params), actor, client, rid, peer)

    def audit(self, operation: str, outcome: str, actor: Actor | None, detail: str | None, status: int) -> None:
        """One admin audit line (a refused form: ``ui:<name>``, ``refused``, 403)."""
        client, rid, peer = _request.get()
        self.service._audit(operation, outcome, actor, client, rid, None, detail, status, peer)


__all__ = ["PageHost", "enter"]
