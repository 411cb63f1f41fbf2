"""``swqos manifest drill --threshold``: the kill-switch drill with a trust root, offline.

Same staging proxy as :mod:`~swqos_killswitch.drill` (the real ``https`` source and a real
ServiceState against a local HTTPS server), with 2 root keys (threshold 2) and 3 manifest keys
(halt 2, lift 3, a lift timelock). It checks that a halt signed by one key is refused, that a
2-of-3 halt takes effect within one poll and survives a restart, that a lift below the lift
threshold is refused, and that a 3-of-3 lift is held until its ``not_before`` and then lifts; it
prints the time to halt and the time to lift.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from swqos_core.state import EnclaveIdentity, ServiceState
from swqos_killswitch.bundle import dump_bundle
from swqos_killswitch.drill import SCOPE, Publisher, self_signed_certificate, wait_until
from swqos_killswitch.manifest import build_manifest
from swqos_killswitch.root import build_root, root_sha256
from swqos_killswitch.signing import generate_private_key, key_id, sign_blob
from swqos_killswitch.sources import HttpsSource, HttpsSourceSettings


def _bundle(data: bytes, signers: list[ec.EllipticCurvePrivateKey]) -> bytes:
    return dump_bundle(data, [(key_id(k.public_key()), sign_blob(k, data)) for k in signers])


async def run_threshold_drill(interval: float = 2.0, release: str = "0.0.0-drill", timelock: float = 2.0,
                              out: Callable[[str], None] = print) -> bool:
    """The drill with a trust root (2 root keys of 2; 3 manifest keys: halt 2, lift 3, timelock)."""
    ok = True
    timeout = min(5.0, max(2.0, interval))
    limit = interval + 2 * timeout
    lock = max(2, round(timelock))  # whole seconds (manifest times are); at least 2 so the hold is visible

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        ok = ok and cond
        out(f"   [{'PASS' if cond else 'FAIL'}] {what}")

    with tempfile.TemporaryDirectory(prefix="swqos-drill-") as tmp:
        d = Path(tmp)
        out("1. key ceremony: 2 root keys (threshold 2), 3 manifest keys (halt 2, lift 3, "
            f"lift timelock {lock} s)")
        root_keys = [generate_private_key() for _ in range(2)]
        signers = [generate_private_key() for _ in range(3)]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        root = build_root(version=1, scope=SCOPE, issued_at=now - dt.timedelta(minutes=1),
                          expires=now + dt.timedelta(days=1), root_keys=[k.public_key() for k in root_keys],
                          root_threshold=2, manifest_keys=[k.public_key() for k in signers], halt_threshold=2,
                          lift_threshold=3, lift_timelock_seconds=lock)
        (d / "root.json").write_bytes(root)
        (d / "root.json.sig").write_bytes(_bundle(root, root_keys))
        out(f"   root v1 pinned by sha256 {root_sha256(root)}")
        out("2. start a local HTTPS manifest server (self-signed certificate, pinned as the only CA)")
        cert, tls_key = self_signed_certificate(d)
        server = Publisher(cert, tls_key)

        def publish(version: int, revoked: list[str], by: list[int], not_before: float | None = None) -> None:
            # Rounded up to the next whole second (manifest times have no fraction), so the hold
            # lasts at least the timelock from the moment of publishing.
            issued = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
            nb = issued + dt.timedelta(seconds=not_before) if not_before is not None else None
            data = build_manifest(version=version, scope=SCOPE, issued_at=issued,
                                  expires=issued + dt.timedelta(hours=1), revoked_versions=revoked,
                                  reason="kill-switch drill" if revoked else None, not_before=nb)
            server.publish(data, _bundle(data, [signers[i] for i in by]))
            out(f"   published manifest v{version} revoking {revoked or 'nothing'}, signed by {len(by)} key(s)"
                + (f", lift not before +{not_before:g} s" if not_before is not None else ""))

        settings = HttpsSourceSettings(url=server.url, root=d / "root.json", root_sha256=root_sha256(root),
                                       scope=SCOPE, state_dir=d / "state", ca_bundle=cert, poll_interval=interval,
                                       connect_timeout=timeout, total_timeout=timeout)

        def staging_proxy() -> tuple[ServiceState, HttpsSource]:
            state = ServiceState(release_version=release)
            state.set_enclave(True, EnclaveIdentity(public_key=b"\0" * 32, measurement=None, signatures=0))
            return state, HttpsSource(settings, state, "drill")

        async def refused(src: HttpsSource, label: str) -> bool:
            before = src.engine.rejected_total[label]
            src.poll_now()
            deadline = time.monotonic() + limit
            while src.engine.rejected_total[label] == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return src.engine.rejected_total[label] > before

        sources: list[HttpsSource] = []
        try:
            out(f"3. start a staging proxy running release {release!r}, polling every {interval:g} s")
            publish(1, ["0.0.0-not-this-one"], [0, 1])
            state, src = staging_proxy()
            sources.append(src)
            await src.start()
            check(await wait_until(state, lambda: state.serving, limit) is not None, "serving on a 2-of-3 manifest")

            out("4. one stolen key tries to halt the fleet")
            publish(2, [release], [0])
            check(await refused(src, "below_threshold") and state.serving,
                  "halt with 1 signature refused (below_threshold), still serving")

            out(f"5. two key holders revoke release {release!r}")
            published = time.monotonic()
            publish(3, [release], [1, 2])
            took = await wait_until(state, lambda: not state.serving, limit)
            check(took is not None and took <= interval + timeout, "halted within one poll interval")
            halt_time = time.monotonic() - published
            out(f"   time to halt: {halt_time:.2f} s (poll interval {interval:g} s)")

            out("6. restart the staging proxy while halted, with the manifest server unreachable")
            await src.close()
            saved = dict(server.docs)
            server.docs.clear()
            state, src = staging_proxy()
            sources.append(src)
            await src.start()
            check(not state.serving and "kill_switch" in state.halt_reasons, "halted at start (persisted manifest)")
            server.docs.update(saved)

            out("7. two keys (a stolen halt threshold) try to lift the halt")
            publish(4, ["0.0.0-not-this-one"], [0, 1], not_before=lock)
            check(await refused(src, "below_lift_threshold") and not state.serving,
                  "lift with 2 signatures refused (below_lift_threshold), still halted")

            out("8. all three key holders lift the halt, with the timelock")
            published = time.monotonic()
            publish(5, ["0.0.0-not-this-one"], [0, 1, 2], not_before=lock)
            held = await refused(src, "lift_timelocked")
            pending = src.engine.snapshot()["pending_lift"]
            check(held and not state.serving and pending is not None,
                  "lift held by its timelock, still halted" + (f" ({pending['seconds_left']:.1f} s left)"
                                                              if pending else ""))
            took = await wait_until(state, lambda: state.serving, limit + lock)
            check(took is not None, "halt lifted once not_before passed, serving again")
            lift_time = time.monotonic() - published
            out(f"   time to lift: {lift_time:.2f} s (timelock {lock} s, poll interval {interval:g} s)")
        finally:
            for s in sources:
                await s.close()
            server.close()
    out("threshold drill " + ("PASSED" if ok else "FAILED"))
    return ok
