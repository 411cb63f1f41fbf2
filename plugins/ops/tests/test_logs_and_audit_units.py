"""Structured logs, the shared request id, the audit writer and label bounding."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swqos_core import logs
from swqos_core.extensions import Decision
from swqos_ops.audit import AuditLog, decision_line, decision_record
from swqos_ops.metrics import OTHER, BoundedLabels
from swqos_ops.testing import audit_lines, ops_config
from swqos_testing.stack import running_stack


def _record(msg: str, **extra) -> logging.LogRecord:
    logger = logging.getLogger("swqos.test")
    return logger.makeRecord("swqos.test", logging.WARNING, __file__, 1, msg, (), None, extra=extra)


def test_json_formatter_fields_and_request_id():
    fmt = logs.JsonFormatter(process="proxy")
    out = json.loads(fmt.format(_record("hello world", request_id="00aa11bb22cc33dd",
                                        fields={"stage": "auth", "msg": "not overridable"})))
    assert out["msg"] == "hello world" and out["level"] == "warning" and out["logger"] == "swqos.test"
    assert out["request_id"] == "00aa11bb22cc33dd" and out["stage"] == "auth" and out["process"] == "proxy"
    assert out["time"].endswith("Z")
    token = logs.request_id.set("ffeeddccbbaa9988")
    try:
        assert json.loads(fmt.format(_record("x")))["request_id"] == "ffeeddccbbaa9988"
        assert logs.TextFormatter().format(_record("x")).endswith("[req ffeeddccbbaa9988]")
    finally:
        logs.request_id.reset(token)
    assert "request_id" not in json.loads(fmt.format(_record("x")))


def test_setup_chooses_format_and_refuses_unknown(monkeypatch):
    monkeypatch.setenv(logs.ENV_VAR, "json")
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        assert logs.setup(None, stream=stream) == "json"
        logging.getLogger("swqos.test").info("structured")
        assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "structured"
        assert logs.setup("text", stream=stream) == "text"
        assert os.environ[logs.ENV_VAR] == "text"  # inherited by the enclave child
        assert sum(1 for h in root.handlers if getattr(h, "_swqos", False)) == 1
    finally:
        for h in [h for h in root.handlers if getattr(h, "_swqos", False)]:
            root.removeHandler(h)
        root.setLevel(level)
    with pytest.raises(ValueError):
        logs.resolve_format("xml")


async def test_proxy_and_enclave_log_the_same_request_id(tmp_path, admin_store, monkeypatch):
    store, _ = admin_store
    monkeypatch.setenv(logs.ENV_VAR, "json")  # the enclave child inherits it
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        r = await stack.sign(b"not a CertificateVerify")
        assert r.code == grpc.StatusCode.INVALID_ARGUMENT
        (line,) = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x.get("stage") == "enclave")
        rid = line["request_id"]
        enclave_log = stack.dev_dir / "enclave.log"
        for _ in range(200):
            entries = [json.loads(x) for x in enclave_log.read_text().splitlines() if x.startswith("{")]
            refused = [e for e in entries if e.get("request_id") == rid]
            if refused:
                break
            await asyncio.sleep(0.02)
        assert refused and refused[0]["logger"] == "swqos.enclave" and "refused payload" in refused[0]["msg"]


def test_bounded_labels():
    bound = BoundedLabels(cap=2)
    assert bound("d", "step5_signature") == "step5_signature"
    assert bound("d", "request is 2000 bytes, the limit is 1024") == OTHER
    assert bound("d", "Mixed-Case") == OTHER
    assert bound("d", None) == OTHER
    assert bound("d", "second") == "second"
    assert bound("d", "third") == OTHER  # the cap holds whatever plugins send
    assert bound("d", "step5_signature") == "step5_signature"
    assert bound("other-dimension", "third") == "third"


def test_audit_writer_appends_and_follows_rotation(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    audit = AuditLog(path)
    audit.start()
    try:
        audit.admin(operation="drain", outcome="ok", actor="token:x", client="127.0.0.1", request_id="1" * 16)
        rotated = tmp_path / "logs" / "audit.jsonl.1"
        for _ in range(200):
            if path.exists() and path.read_text():
                break
            time.sleep(0.01)
        path.rename(rotated)  # WatchedFileHandler notices the move at the next write
        audit.admin(operation="undrain", outcome="ok", actor="token:x", client="127.0.0.1", request_id="2" * 16)
    finally:
        audit.close()
    assert json.loads(rotated.read_text())["operation"] == "drain"
    assert json.loads(path.read_text())["operation"] == "undrain"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audit.lines_written == 2 and audit.dropped == 0


def test_audit_queue_full_drops_and_counts(tmp_path):
    audit = AuditLog(tmp_path / "a.jsonl", max_queue=1)  # never started: nothing drains the queue
    for i in range(3):
        audit.admin(operation="drain", outcome="ok", actor=None, client=None, request_id=str(i))
    assert audit.dropped == 2


_texts = st.none() | st.text(max_size=40)


@given(request_id=st.text(max_size=20), rpc=st.sampled_from(["SignCertificateVerify", "GetIdentity", "x\"\\\n\u2028"]),
       outcome=st.text(max_size=20), stage=_texts, label=_texts, reason=_texts, subject=_texts, client=_texts,
       payload=st.binary(max_size=200), latency=st.floats(min_value=0, max_value=1e6, allow_nan=False),
       when=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_a_decision_line_is_exactly_the_json_of_its_record(request_id, rpc, outcome, stage, label, reason, subject,
                                                          client, payload, latency, when):
    """The writer thread spells decision lines out directly; they must be the record's JSON, byte for byte."""
    d = Decision(rpc=rpc, request_id=request_id, outcome=outcome, stage=stage, label=label, reason=reason,
                 subject=subject, client=client, payload_len=len(payload), latency=latency, payload=payload)
    expected = json.dumps(decision_record(d, when), ensure_ascii=False, separators=(",", ":"))
    assert decision_line(d, when) == expected
    assert json.loads(decision_line(d, when)) == decision_record(d, when)
