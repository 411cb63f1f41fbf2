"""`swqos cdn refresh cloudflare`: validate, write atomically, keep the last good list."""

import datetime as dt
import ipaddress
import json
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_cdn import RangeError, Snapshot, load_snapshot, run_cdn_command
from swqos_cdn_cloudflare.ranges import PROVIDER, parse_api, shipped
from swqos_testing.conformance import RangeDocumentServer

V4 = ["173.245.48.0/20", "103.21.244.0/22", "104.16.0.0/13"]
V6 = ["2400:cb00::/32", "2606:4700::/32"]


def api(v4=V4, v6=V6, etag="abc123", success=True):
    return json.dumps({"result": {"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": etag},
                       "success": success, "errors": [], "messages": []}).encode()


def refresh(capsys, url, out, *extra):
    rc = run_cdn_command(["refresh", "cloudflare", "--url", url, "--out", str(out), *extra], [PROVIDER])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_shipped_snapshot_matches_the_recorded_list():
    snap = shipped()
    assert snap.etag == "38f79d050aa027e3be3865e495dcc9bc"
    assert len(snap.ipv4) == 15 and len(snap.ipv6) == 7
    assert ipaddress.ip_address("172.64.1.1") in snap.ranges
    assert ipaddress.ip_address("172.16.1.1") not in snap.ranges  # 172.64/13 is public, not RFC 1918


def test_refresh_writes_a_valid_snapshot(tmp_path, capsys):
    out = tmp_path / "state" / "cloudflare.json"
    with RangeDocumentServer() as srv:
        srv.body = api()
        rc, stdout, _ = refresh(capsys, srv.url, out)
    assert rc == 0 and "updated" in stdout
    snap = load_snapshot(out)
    assert (snap.provider, snap.etag, set(snap.ipv4), set(snap.ipv6)) == ("cloudflare", "abc123", set(V4), set(V6))
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in out.parent.iterdir() if p.name != out.name], "temporary file left behind"


def test_same_etag_is_unchanged(tmp_path, capsys):
    out = tmp_path / "cloudflare.json"
    with RangeDocumentServer() as srv:
        srv.body = api()
        assert refresh(capsys, srv.url, out)[0] == 0
        before = out.read_bytes()
        rc, stdout, _ = refresh(capsys, srv.url, out)
    assert rc == 0 and "unchanged" in stdout and out.read_bytes() == before


BAD = {
    "success false": (api(success=False), 200),
    "HTML": (b"<html><body>Cloudflare is down</body></html>", 200),
    "empty lists": (api(v4=[], v6=[]), 200),
    "IPv6 shrunk to nothing": (api(v6=[]), 200),
    "0.0.0.0/0": (api(v4=[*V4, "0.0.0.0/0"]), 200),
    "::/0": (api(v6=["::/0"]), 200),
    "over-broad /6": (api(v4=["4.0.0.0/6"]), 200),
    "invalid CIDR": (api(v4=["173.245.48.0/33"]), 200),
    "host bits set": (api(v4=["173.245.48.1/20"]), 200),
    "private range": (api(v4=["10.0.0.0/8"]), 200),
    "IPv6 in the IPv4 list": (api(v4=["2400:cb00::/32"]), 200),
    "not strings": (api(v4=[1234]), 200),
    "no result": (b'{"success": true}', 200),
    "HTTP 500": (api(), 500),
    "empty body": (b"", 200),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_refresh_keeps_the_previous_file(tmp_path, capsys, case):
    out = tmp_path / "cloudflare.json"
    with RangeDocumentServer() as srv:
        srv.body = api()
        assert refresh(capsys, srv.url, out)[0] == 0
        good = out.read_bytes()
        srv.body, srv.status = BAD[case]
        rc, _stdout, stderr = refresh(capsys, srv.url, out)
    assert rc == 1, case
    assert "REFUSED" in stderr and "previous list stays" in stderr
    assert out.read_bytes() == good


def test_network_error_is_refused(tmp_path, capsys):
    with RangeDocumentServer() as srv:
        url = srv.url
    out = tmp_path / "cloudflare.json"
    rc, _, stderr = refresh(capsys, url, out)
    assert rc == 1 and "REFUSED" in stderr and not out.exists()


def test_plain_http_to_a_remote_host_is_refused(tmp_path, capsys):
    rc, _, stderr = refresh(capsys, "http://api.cloudflare.com/client/v4/ips", tmp_path / "x.json")
    assert rc == 1 and "plain-HTTP" in stderr


def test_unknown_provider(tmp_path, capsys):
    rc = run_cdn_command(["refresh", "akamai", "--out", str(tmp_path / "x")], [PROVIDER])
    assert rc == 2 and "cloudflare" in capsys.readouterr().err


def test_parse_api_rejects_non_envelope():
    for body in (b"[]", b"null", b'{"success": "true", "result": {}}', b'{"success": true, "result": []}'):
        with pytest.raises(RangeError):
            parse_api(body)


# --- HTTPS with a private CA (what --ca-file is for) ---------------------------------------

def _tls_pair(tmp_path):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swqos test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "srv.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / "ca.pem", tmp_path / "srv.pem"


def test_https_refresh_with_ca_file(tmp_path, capsys):
    ca, srv_pem = _tls_pair(tmp_path)
    srv = RangeDocumentServer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(srv_pem)
    srv.httpd.socket = ctx.wrap_socket(srv.httpd.socket, server_side=True)
    url = srv.url.replace("http://", "https://")
    srv.body = api(etag="tls")
    with srv:
        # without the CA the server is not trusted: refused
        rc, _, stderr = refresh(capsys, url, tmp_path / "a.json")
        assert rc == 1 and "REFUSED" in stderr and not (tmp_path / "a.json").exists()
        rc, _, _ = refresh(capsys, url, tmp_path / "a.json", "--ca-file", str(ca))
    assert rc == 0 and load_snapshot(tmp_path / "a.json").etag == "tls"


def test_snapshot_round_trip():
    snap = shipped()
    assert Snapshot.from_json(snap.to_json(), where="t") == snap

