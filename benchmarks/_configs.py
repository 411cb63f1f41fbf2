"""The configurations the harness runs, built from the dev stack.

``deployed`` is ``deploy/proxy.toml`` minus the CDN (the client is on loopback, so the TCP peer is
the client address): the same plugins and services: jwt authentication, the gcra limiter, the
kill switch reading a signed manifest from a file, the limits and tls_cv pre-checks, the sqlite
state store (limits, bans and admin changes survive a restart), the audit log and the admin
listener (metrics) on a 0600 Unix socket with Argon2id admin tokens. Its quotas are very high so
the limiter runs its full path without refusing the load.
``no_ops`` is the same without the two services of swqos-ops (no observer at all): the difference
is what the audit log and the metrics cost.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from swqos_dev import devstack

SCOPE = "bench"
HIGH = {"count": 100_000_000, "period": 1.0, "burst": 100_000_000}


def _manifest(directory: Path) -> dict[str, Any]:
    """A signed kill-switch manifest that halts nothing, and the [layers.revocation.file] table."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from swqos_killswitch.manifest import build_manifest
    from swqos_killswitch.signing import key_id, public_key_pem, sign_blob

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "cosign.pub").write_bytes(public_key_pem(key.public_key()))
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5)
    data = build_manifest(version=1, scope=SCOPE, issued_at=issued, expires=issued + dt.timedelta(days=1),
                          key_id=key_id(key.public_key()))
    (directory / "revocation.json").write_bytes(data)
    (directory / "revocation.json.sig").write_bytes(sign_blob(key, data))
    return {"path": str(directory / "revocation.json"), "public_key": str(directory / "cosign.pub"),
            "key_id": key_id(key.public_key()), "scope": SCOPE, "state_dir": str(directory / "state"),
            "poll_interval": 60.0}


def deployed(dev: devstack.DevDir, tmp: Path) -> dict[str, Any]:
    from swqos_auth_jwt.api_tokens import create_token

    cfg = devstack.proxy_config(dev, "127.0.0.1:0")
    cfg["swqos"]["plugins"] = ["auth_jwt", "ratelimit", "killswitch", "payload_tls_cv", "ops", "state"]
    cfg["proxy"].update({"max_request_bytes": 1024, "deadline_ms": 100, "max_enclave_inflight": 64})
    admin_tokens = tmp / "admin-tokens.json"
    create_token(admin_tokens, "bench-operator", "admin")
    cfg["pipeline"].update({"client_ip": ["peer"], "auth": ["jwt"], "rate_limit": ["gcra"],
                            "validate": ["limits", "tls_cv"], "revocation": ["file"],
                            "services": ["audit", "admin"], "store": "sqlite"})
    layers = cfg.setdefault("layers", {})
    layers["rate_limit"] = {"gcra": {"address": HIGH, "handshakes": HIGH, "trader": HIGH, "trader_sustained": HIGH}}
    layers["revocation"] = {"file": _manifest(tmp / "killswitch")}
    layers["store"] = {"sqlite": {"path": str(tmp / "state" / "swqos-state.sqlite3")}}  # as deploy/proxy.toml
    layers["service"] = {
        "audit": {"path": str(tmp / "audit.jsonl")},
        "admin": {"listen": f"unix://{tmp / 'admin.sock'}", "token_authenticator": "api_token",
                  "token_auth": {"store": str(admin_tokens), "accept_roles": ["admin"]}},
    }
    return cfg


def without_ops(cfg: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    out["swqos"]["plugins"] = [p for p in out["swqos"]["plugins"] if p != "ops"]
    out["pipeline"].pop("services", None)
    out["layers"].pop("service", None)
    if "store" in out["layers"]:  # its own state file: two proxies on one file would share their limits
        sqlite = out["layers"]["store"]["sqlite"]
        sqlite["path"] = sqlite["path"].replace("swqos-state.sqlite3", "swqos-state-no-ops.sqlite3")
    return out


def flood(dev: devstack.DevDir, quota: int) -> dict[str, Any]:
    """The existing flood scenario: one address at 10x its quota next to a well-behaved trader."""
    cfg = devstack.proxy_config(dev, "127.0.0.1:0")
    cfg["swqos"]["plugins"] = ["auth_jwt", "ratelimit", "cdn_cloudflare"]
    cfg["pipeline"]["client_ip"] = ["cloudflare"]
    cfg["layers"]["client_ip"] = {"cloudflare": {"extra_trusted_ranges": ["127.0.0.0/8"], "allow_non_global": True}}
    q = {"count": quota, "period": 1.0, "burst": quota}
    cfg["layers"]["rate_limit"] = {"gcra": {"address": q, "handshakes": q, "trader": q, "trader_sustained": HIGH}}
    return cfg


def write_all(dev: devstack.DevDir, tmp: Path, flood_quota: int) -> dict[str, Path]:
    """Write every config; returns name -> path."""
    dep = deployed(dev, tmp)
    configs = {"deployed": dep, "no_ops": without_ops(dep), "flood": flood(dev, flood_quota)}
    paths = {}
    for name, cfg in configs.items():
        paths[name] = tmp / f"proxy-{name}.toml"
        devstack.write_toml(paths[name], json.loads(json.dumps(cfg)))
    return paths
