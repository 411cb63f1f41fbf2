"""What each page shows, read from the running app through the kernel's typed views only:
``app.state``, ``app.enclave`` (an :class:`~swqos_core.extensions.EnclaveView`), the status
sections and the subject policies that plugins contributed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from swqos_core.errors import Rejection
from swqos_core.extensions import AdminOperation, SubjectPolicy
from swqos_core.identity import to_base58

log = logging.getLogger("swqos.dashboard")

#: Seconds the Overview and Audit pages wait for the enclave's fresh answer.
ENCLAVE_QUERY_SECONDS = 2.0


def status_sections(app: Any) -> dict[str, Any]:
    """Every plugin's status section; one broken section does not hide the others."""
    sections: dict[str, Any] = {}
    for name, (owner, report) in sorted(app.contributions.status.items()):
        try:
            sections[name] = dict(report())
        except Exception:
            log.exception("status section %r of plugin %r failed", name, owner)
            sections[name] = {"error": "status report failed (see the log)"}
    return sections


async def enclave_now(app: Any) -> dict[str, Any]:
    """Ask the enclave now (its key, counter and measurement); the last known values if it does not answer."""
    out: dict[str, Any] = {"address": None, "reachable": False, "public_key": None, "measurement": None,
                           "signatures": None, "error": None}
    client = app.enclave
    ident = app.state.enclave_identity
    if ident is not None:
        out.update(public_key=to_base58(ident.public_key), measurement=ident.measurement)
    if client is None:
        out["error"] = "no enclave connection"
        return out
    out["address"] = client.address
    out["inflight"] = client.inflight
    out["max_inflight"] = client.max_inflight
    out["busy_refusals"] = client.busy_refusals
    try:
        public_key, signatures, measurement, _ = await asyncio.wait_for(client.identity(b"", 0),
                                                                        ENCLAVE_QUERY_SECONDS)
    except (Rejection, TimeoutError, OSError, ValueError) as exc:
        out["error"] = exc.reason if isinstance(exc, Rejection) else type(exc).__name__
        out["signatures"] = client.enclave_signatures  # its last answer (a ping)
        return out
    out.update(reachable=True, public_key=to_base58(public_key), measurement=measurement, signatures=signatures)
    return out


def kill_switch(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The kill-switch sources of the ``kill_switch`` section, one row each."""
    section = sections.get("kill_switch") or {}
    return [{"source": name, **value} for name, value in sorted(section.items()) if isinstance(value, Mapping)]


def policies(operations: Mapping[str, tuple[str, AdminOperation]]) -> list[tuple[str, SubjectPolicy]]:
    """One entry per distinct SubjectPolicy the operations carry, with its owner."""
    seen: dict[int, tuple[str, SubjectPolicy]] = {}
    for owner, op in operations.values():
        if op.policy is not None and isinstance(op.policy, SubjectPolicy):
            seen.setdefault(id(op.policy), (owner, op.policy))
    return list(seen.values())


def describe_subject(sub: str, views: list[tuple[str, SubjectPolicy]]) -> dict[str, Any]:
    """Merge the plugins' views of one trader: revoked, allowlist, quota (and whatever else they say)."""
    merged: dict[str, Any] = {"revoked": False, "allowlist": None, "quota": None, "other": {}}
    for owner, policy in views:
        try:
            view = dict(policy.describe_subject(sub))
        except Exception:
            log.exception("subject policy of plugin %r failed", owner)
            merged["other"][owner] = "policy view failed (see the log)"
            continue
        for key, value in view.items():
            if key == "revoked":
                merged["revoked"] = merged["revoked"] or bool(value)
            elif key in ("allowlist", "quota") and value is not None:
                merged[key] = value
            else:
                merged["other"][f"{owner}.{key}"] = value
    return merged


def quota_text(quota: Any) -> str:
    """``rate_limit.gcra: rate per_second=10 burst=5 (runtime)`` from the limiters' views, compactly."""
    if not isinstance(quota, Mapping):
        return "" if quota is None else str(quota)
    parts = []
    for layer, q in quota.items():
        if not isinstance(q, Mapping):
            parts.append(f"{layer}: {q}")
            continue
        windows = []
        for key in ("rate", "sustained"):
            w = q.get(key)
            if isinstance(w, Mapping):
                windows.append(f"{key} " + " ".join(f"{k}={v}" for k, v in w.items()))
        source = q.get("source")
        parts.append(f"{layer}: {', '.join(windows) or '-'}" + (f" ({source})" if source else ""))
    return "; ".join(parts)
