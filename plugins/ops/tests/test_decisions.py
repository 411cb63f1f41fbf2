"""Every decision type: its gRPC status, its audit line and its metric, through the real stack."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat

import grpc

from swqos_ops.testing import admin, audit_lines, metrics_text, ops_config, sample
from swqos_proto import signer_pb2
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

SIGN = "SignCertificateVerify"


def _cfg(tmp_path, store):
    return ops_config(
        tmp_path, store, plugins=["auth_jwt"], test_plugins=True, layers={},
        pipeline={"client_ip": ["fake_cdn", "peer"], "auth": ["fake_probe", "jwt"], "rate_limit": ["fake_limit"],
                  "validate": ["limits"]})


async def test_each_refusal_stage_has_its_status_audit_line_and_metric(tmp_path, admin_store, ops_fakes):
    store, _token = admin_store
    async with running_stack(tmp_path, proxy=_cfg(tmp_path, store), extra_plugins=[ops_fakes]) as stack:
        stack.proxy.pipeline.stage_timing_every = 1  # every call's stages timed (the default samples 1 in 16)
        cdn = stack.proxy.app.one("client_ip")
        limiter = stack.proxy.app.one("rate_limit")
        big = signer_pb2.SignCertificateVerifyRequest(payload=b"x" * 2000).SerializeToString()

        async def drained():
            stack.state.set_draining(True)
            try:
                return await stack.sign(valid_cv())
            finally:
                stack.state.set_draining(False)

        async def halted():
            stack.state.halt("kill_switch", "release 0.1.0 revoked")
            try:
                return await stack.sign(valid_cv())
            finally:
                stack.state.lift("kill_switch")

        async def flagged(obj, attr):
            setattr(obj, attr, True)
            try:
                return await stack.sign(valid_cv())
            finally:
                setattr(obj, attr, False)

        cases = [
            # (stage, label, status, how)
            ("decode", "too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: stack.sign(raw=big)),
            ("decode", "malformed", grpc.StatusCode.INVALID_ARGUMENT, lambda: stack.sign(raw=b"\xff\xff\xff")),
            ("admission", "draining", grpc.StatusCode.UNAVAILABLE, drained),
            ("admission", "halted", grpc.StatusCode.UNAVAILABLE, halted),
            ("client_ip", "not_edge", grpc.StatusCode.PERMISSION_DENIED, lambda: flagged(cdn, "refuse")),
            ("address_limit", "fake_address", grpc.StatusCode.RESOURCE_EXHAUSTED,
             lambda: flagged(limiter, "refuse_address")),
            ("auth", "no_credential", grpc.StatusCode.UNAUTHENTICATED, lambda: stack.sign(valid_cv(), token=None)),
            ("authorize", "role", grpc.StatusCode.PERMISSION_DENIED,
             lambda: stack.sign(valid_cv(), token=None, metadata=[("x-fake-probe", "1")])),
            ("subject_limit", "fake_trader", grpc.StatusCode.RESOURCE_EXHAUSTED,
             lambda: flagged(limiter, "refuse_principal")),
            ("validate", "payload_missing", grpc.StatusCode.INVALID_ARGUMENT, lambda: stack.sign(b"")),
            ("enclave", "payload_refused", grpc.StatusCode.INVALID_ARGUMENT,
             lambda: stack.sign(b"a vote, or a transaction: anything but a CertificateVerify")),
        ]
        for stage, label, code, how in cases:
            r = await how()
            assert r.code == code, (stage, label, r)
        assert await stack.signatures_made() == 0

        ok_payload = valid_cv()
        assert (await stack.sign(ok_payload)).code == grpc.StatusCode.OK
        assert (await stack.identity(b"nonce")).code == grpc.StatusCode.OK

        text = await metrics_text(stack)
        for stage, label, code, _ in cases:
            assert sample(text, "swqos_refusals_total", rpc=SIGN, stage=stage, label=label) == 1, (stage, label)
        assert sample(text, "swqos_requests_total", rpc=SIGN, outcome="OK") == 1
        assert sample(text, "swqos_requests_total", rpc="GetIdentity", outcome="OK") == 1
        assert sample(text, "swqos_requests_total", rpc=SIGN, outcome="RESOURCE_EXHAUSTED") == 3
        assert sample(text, "swqos_signatures_returned_total") == 1
        assert sample(text, "swqos_request_duration_seconds_count", rpc=SIGN, result="refused") == len(cases)
        # Stage timings cover the stages that completed: the refused enclave call has none.
        # The signed call and the one the enclave refused both spent time in the enclave stage.
        enclave_refusals = sum(1 for case in cases if case[0] == "enclave")
        assert sample(text, "swqos_stage_duration_seconds_count", stage="enclave") == 1 + enclave_refusals

        lines = await audit_lines(tmp_path / "audit.jsonl", len(cases) + 2, lambda x: x["type"] == "decision")
        assert len(lines) == len(cases) + 2
        for line, (stage, label, code, _) in zip(lines, cases, strict=False):
            assert (line["stage"], line["label"], line["outcome"]) == (stage, label, code.name)
            assert line["rpc"] == SIGN and len(line["request_id"]) == 16 and line["latency_ms"] >= 0
        by_stage = {line["stage"]: line for line in lines}
        assert by_stage["auth"]["sub"] is None and by_stage["auth"]["client"] == "127.0.0.1"
        assert by_stage["authorize"]["sub"] == "probe-1"
        assert by_stage["subject_limit"]["sub"] == "trader-1"
        assert by_stage["validate"]["payload_len"] == 0 and by_stage["validate"]["payload_sha256"] is None
        signed, identity = lines[-2], lines[-1]
        assert signed["outcome"] == "OK" and signed["stage"] is None and signed["sub"] == "trader-1"
        assert signed["payload_len"] == len(ok_payload)
        assert signed["payload_sha256"] == hashlib.sha256(ok_payload).hexdigest()
        assert identity["rpc"] == "GetIdentity" and identity["outcome"] == "OK"


async def test_audit_file_is_private_and_holds_no_credentials(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        jwt = stack.token("ivy")
        assert (await stack.sign(valid_cv(), token=jwt)).code == grpc.StatusCode.OK
        status, _ = await admin(stack, token, "revoke-trader", {"sub": "ivy"})
        assert status == 200
        assert (await stack.sign(valid_cv(), token=jwt)).code == grpc.StatusCode.PERMISSION_DENIED
        path = tmp_path / "audit.jsonl"
        lines = await audit_lines(path, 3)
        assert [x["type"] for x in lines] == ["decision", "admin", "decision"]
        assert lines[1]["operation"] == "revoke-trader" and lines[1]["params"] == {"sub": "ivy"}
        assert lines[1]["outcome"] == "ok" and lines[1]["actor"].startswith("token:ops-admin")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        for secret in (jwt, jwt.split(".")[2], token, (stack.dev_dir / "issuer.key").read_text().splitlines()[1]):
            assert secret not in text
        assert all(json.loads(line) for line in text.splitlines())


async def test_metrics_never_label_trader_strings_and_track_the_enclave_counter(tmp_path, admin_store):
    store, _token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        weird = "trader-with-a-unique-name-4f1c"
        assert (await stack.sign(valid_cv(), token=stack.token(weird))).code == grpc.StatusCode.OK
        assert (await stack.sign(valid_cv(), token=stack.token(weird, ttl=5000))).code == grpc.StatusCode.UNAUTHENTICATED
        await stack.wait_serving()
        made = await stack.signatures_made()
        # The enclave's own counter reaches the host with its next health ping.
        client = stack.proxy.enclave
        for _ in range(200):
            if client.enclave_signatures == made:
                break
            await asyncio.sleep(0.02)
        text = await metrics_text(stack)
        assert weird not in text
        assert sample(text, "swqos_enclave_signatures") == made == 1
        assert sample(text, "swqos_signatures_returned_total") == 1
        assert sample(text, "swqos_enclave_up") == 1
        assert sample(text, "swqos_serving") == 1
        assert sample(text, "swqos_refusals_total", rpc=SIGN, stage="auth", label="step8_time") == 1
        assert sample(text, "swqos_ratelimit_tracked_keys", layer="gcra", table="trader_rate") == 1
        assert sample(text, "swqos_auth_cache_entries", layer="jwt") == 1
        assert sample(text, "swqos_audit_lines_total") is not None
