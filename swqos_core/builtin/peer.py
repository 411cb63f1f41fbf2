"""Client address = the TCP peer. The last resort of the client-IP stage, and the right answer
when no CDN is in front (development)."""

from __future__ import annotations

from swqos_core.layers import ClientAddress, RequestHead
from swqos_core.net import parse_peer


class PeerResolver:
    async def resolve(self, head: RequestHead) -> ClientAddress:
        return ClientAddress(parse_peer(head.peer), "peer", head.peer)
