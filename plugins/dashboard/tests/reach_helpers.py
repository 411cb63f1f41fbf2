"""A stack config with the dashboard on a mutual-TLS admin listener, and a raw HTTP/1.1 exchange."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from swqos_ops.testing import ops_config

from .tls_helpers import client_cert, make_ca, write_ca


def dashboard_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> dict[str, Any]:
    """Operators' CA with ``operator-1`` and an expired ``operator-expired``, a rogue CA's ``mallory``
    (certificates in ``tmp_path``), and the admin listener on ``listen`` with mutual TLS."""
    ca = make_ca("swqos operators CA")
    ca_path = write_ca(ca[1], tmp_path / "operators-ca.pem")
    client_cert(ca, "operator-1", tmp_path)
    client_cert(ca, "operator-expired", tmp_path, expired=True)
    client_cert(make_ca("rogue CA"), "mallory", tmp_path)
    dev = tmp_path / "dev"  # running_stack writes its server certificate there
    cfg = ops_config(tmp_path, None, plugins=["auth_jwt", "ratelimit", "dashboard"], admin={
        "listen": listen, "client_ca": str(ca_path),
        "tls_cert": str(dev / "tls.crt"), "tls_key": str(dev / "tls.key")})
    cfg["pipeline"]["services"].append("dashboard")
    return cfg


async def raw_request(port: int, ctx: ssl.SSLContext, request: bytes) -> bytes:
    """Send ``request`` over TLS to 127.0.0.1:``port``; the whole answer (the listener closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def exchange(port: int, ctx: ssl.SSLContext, method: str, path: str, *, cookie: str | None = None,
                   form: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request as a same-origin browser would send it: (status, headers, body)."""
    import urllib.parse

    body = urllib.parse.urlencode(form).encode() if form is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Origin: https://localhost"]
    if cookie:
        lines.append(f"Cookie: swqos_ui={cookie}")
    if form is not None:
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    raw = await raw_request(port, ctx, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, payload
