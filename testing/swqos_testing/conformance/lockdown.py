"""Checks for rendered lockdown rules (``swqos cdn render``), for any CDN plugin's tests.

- :func:`check_aws_sg`: the JSON against :data:`AWS_SG_INGRESS_SCHEMA` (written from the EC2
  ``AuthorizeSecurityGroupIngress`` request shape), and against botocore's own model of that
  operation, which is what ``aws ec2 ... --cli-input-json`` validates with;
- :func:`aws_cli_accepts`: the real ``aws`` CLI, pointed at a loopback endpoint that records the
  request (skipped by callers when ``aws`` is not installed);
- :func:`nft_check`: ``nft -c -f`` (the real nftables parser, no changes applied);
- :func:`check_terraform`: structure, and ``terraform fmt -check`` when terraform is installed.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

_DESC = {"type": "string", "maxLength": 255, "pattern": r"^[A-Za-z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$"}
#: JSON Schema (draft 2020-12 subset) of ``authorize-security-group-ingress --cli-input-json``
#: as we render it: one TCP permission with CIDRs or prefix lists, nothing else.
AWS_SG_INGRESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["IpPermissions"],
    "properties": {
        "GroupId": {"type": "string", "pattern": r"^sg-[0-9a-f]{8,17}$"},
        "GroupName": {"type": "string"},
        "DryRun": {"type": "boolean"},
        "IpPermissions": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["IpProtocol", "FromPort", "ToPort"],
                "properties": {
                    "IpProtocol": {"enum": ["tcp"]},
                    "FromPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "ToPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "IpRanges": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["CidrIp"],
                        "properties": {"CidrIp": {"type": "string", "format": "ipv4-cidr"}, "Description": _DESC}}},
                    "Ipv6Ranges": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["CidrIpv6"],
                        "properties": {"CidrIpv6": {"type": "string", "format": "ipv6-cidr"}, "Description": _DESC}}},
                    "PrefixListIds": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["PrefixListId"],
                        "properties": {"PrefixListId": {"type": "string", "pattern": r"^pl-[0-9a-f]{8,17}$"},
                                       "Description": _DESC}}},
                },
            },
        },
    },
}


def _formats(fmt: str, value: str) -> bool:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return net.version == (4 if fmt == "ipv4-cidr" else 6)


def validate_schema(doc: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Validate ``doc`` against the JSON-Schema subset used above; return every problem."""
    errs: list[str] = []
    if "enum" in schema and doc not in schema["enum"]:
        errs.append(f"{where}: {doc!r} not in {schema['enum']}")
    tp = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    if tp == "integer":
        if isinstance(doc, bool) or not isinstance(doc, int):
            return [*errs, f"{where}: expected integer"]
        if doc < schema.get("minimum", doc) or doc > schema.get("maximum", doc):
            errs.append(f"{where}: {doc} out of range")
    elif tp in checks and not isinstance(doc, checks[tp]):
        return [*errs, f"{where}: expected {tp}"]
    if isinstance(doc, dict):
        props = schema.get("properties", {})
        errs += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in doc]
        if schema.get("additionalProperties") is False:
            errs += [f"{where}: unexpected {k}" for k in doc if k not in props]
        for k, v in doc.items():
            if k in props:
                errs += validate_schema(v, props[k], f"{where}.{k}")
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0):
            errs.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(doc):
            errs += validate_schema(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(doc, str):
        if "pattern" in schema and not re.search(schema["pattern"], doc):
            errs.append(f"{where}: {doc!r} does not match {schema['pattern']}")
        if len(doc) > schema.get("maxLength", len(doc)):
            errs.append(f"{where}: longer than {schema['maxLength']}")
        if "format" in schema and not _formats(schema["format"], doc):
            errs.append(f"{where}: {doc!r} is not an {schema['format']}")
    return errs


def check_aws_sg(text: str) -> dict[str, Any]:
    """Parse and validate rendered aws-sg JSON (our schema and botocore's model); return it."""
    doc = json.loads(text)
    problems = validate_schema(doc, AWS_SG_INGRESS_SCHEMA)
    assert not problems, problems
    for perm in doc["IpPermissions"]:
        assert perm["FromPort"] == perm["ToPort"]
        assert {"IpRanges", "Ipv6Ranges", "PrefixListIds"} & perm.keys(), "a rule must name its sources"
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("AuthorizeSecurityGroupIngress").input_shape
    report = ParamValidator().validate(doc, shape)
    assert not report.has_errors(), report.generate_report()
    return doc


class _Ec2Stub(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, list[str]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.server.requests.append(urllib.parse.parse_qs(body))  # type: ignore[attr-defined]
        out = (b'<?xml version="1.0" encoding="UTF-8"?><AuthorizeSecurityGroupIngressResponse '
               b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>swqos-test</requestId>'
               b"<return>true</return></AuthorizeSecurityGroupIngressResponse>")
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def aws_cli_accepts(json_file: Path, *, group_id: str = "sg-0123456789abcdef0") -> dict[str, list[str]]:
    """Run the real ``aws ec2 authorize-security-group-ingress --cli-input-json`` against a
    loopback stub; return the form fields the CLI sent. Raises AssertionError on refusal."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ec2Stub)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "test-only",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": ""}
    try:
        proc = subprocess.run(
            ["aws", "ec2", "authorize-security-group-ingress", "--cli-input-json", f"file://{json_file}",
             "--group-id", group_id, "--endpoint-url", f"http://127.0.0.1:{server.server_address[1]}"],
            capture_output=True, text=True, env=env, timeout=120, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, f"aws refused the JSON:\n{proc.stderr}"
    assert len(server.requests) == 1  # type: ignore[attr-defined]
    return server.requests[0]  # type: ignore[attr-defined]


def nft_check(ruleset: str, tmp_path: Path) -> None:
    """``nft -c -f``: parse and check the ruleset with the real nftables, changing nothing."""
    f = tmp_path / "rules.nft"
    f.write_text(ruleset)
    proc = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"nft -c refused the ruleset:\n{proc.stderr}"


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def check_terraform(text: str, tmp_path: Path | None = None) -> None:
    """Balanced blocks outside strings, only the block kinds we render, every CIDR valid; and
    ``terraform fmt -check`` (a full HCL parse) when terraform is on PATH."""
    depth, in_str = 0, False
    for ch in re.sub(r"(?m)^\s*#.*$", "", text):
        if ch == '"':
            in_str = not in_str
        elif not in_str and ch in "{[":
            depth += 1
        elif not in_str and ch in "}]":
            depth -= 1
            assert depth >= 0, "unbalanced braces"
    assert depth == 0 and not in_str, "unbalanced braces or quotes"
    for m in re.finditer(r'(?m)^(\w+)(?: "([^"]+)")*', text):
        assert m.group(1) in {"variable", "locals", "data", "resource"}, f"unexpected block {m.group(1)}"
    for cidr in re.findall(r'"([0-9a-fA-F:.]+/\d+)"', text):
        ipaddress.ip_network(cidr, strict=True)
    if tmp_path is not None and have("terraform"):
        f = tmp_path / "lockdown.tf"
        f.write_text(text)
        proc = subprocess.run(["terraform", "fmt", "-check", "-diff", str(f)], capture_output=True, text=True,
                              timeout=120, check=False, env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull})
        assert proc.returncode == 0, f"terraform fmt refused or would reformat:\n{proc.stdout}{proc.stderr}"
