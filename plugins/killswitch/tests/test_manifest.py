"""The manifest parser refuses everything that is not exactly a v1 manifest."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from swqos_killswitch.manifest import MANIFEST_TYPE, ManifestError, build_manifest, parse_manifest, version_below

T0 = dt.datetime(2026, 4, 21, 12, 0, tzinfo=dt.UTC)


def doc(**over) -> dict:
    d = {
        "_type": MANIFEST_TYPE,
        "version": 3,
        "scope": "prod",
        "issued_at": "2026-04-21T12:00:00Z",
        "expires": "2026-04-21T18:00:00Z",
        "action": "halt",
        "revoked_versions": ["1.3.1"],
        "revoked_measurements": ["AB" * 48],
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


def raw(d) -> bytes:
    return json.dumps(d).encode()


def test_valid_manifest_fields():
    m = parse_manifest(raw(doc(min_version="1.2.0", revoked_at="2026-04-21T11:59:00Z", reason="CVE-1")))
    assert m.version == 3 and m.scope == "prod"
    assert m.issued_at == T0 and m.expires == T0 + dt.timedelta(hours=6)
    assert m.revoked_versions == ("1.3.1",)
    assert m.revoked_measurements == ("ab" * 48,)  # normalised to lower case
    assert m.min_version == "1.2.0" and m.reason == "CVE-1"


def test_seed_minimal_manifest_is_not_enough():
    # The seed's three-field example lacks type, version, expiry and scope: TUF's defences need them.
    with pytest.raises(ManifestError) as exc:
        parse_manifest(raw({"revoked_eif_versions": ["1.3.1"], "action": "halt", "revoked_at": "2026-04-21T12:00:00Z"}))
    assert exc.value.label == "wrong_type"


@pytest.mark.parametrize(
    ("over", "label"),
    [
        ({"_type": "swqos/release-manifest/v1"}, "wrong_type"),
        ({"_type": ...}, "wrong_type"),
        ({"version": ...}, "invalid_field"),
        ({"version": 0}, "invalid_field"),
        ({"version": True}, "invalid_field"),
        ({"version": 1.5}, "invalid_field"),
        ({"version": "4"}, "invalid_field"),
        ({"version": 2**60}, "invalid_field"),
        ({"scope": ""}, "invalid_field"),
        ({"expires": "2026-04-21T12:00:00Z"}, "invalid_field"),
        ({"expires": "2026-04-21 18:00:00"}, "invalid_field"),
        ({"expires": "2026-04-21T18:00:00+00:00"}, "invalid_field"),
        ({"issued_at": "2026-02-30T00:00:00Z"}, "invalid_field"),
        ({"action": "drain"}, "invalid_field"),
        ({"revoked_versions": "1.3.1"}, "invalid_field"),
        ({"revoked_versions": [1]}, "invalid_field"),
        ({"revoked_measurements": ["abc"]}, "invalid_field"),
        ({"revoked_measurements": ["zz" * 48]}, "invalid_field"),
        ({"min_version": "latest"}, "invalid_field"),
        ({"key_id": "ABC"}, "invalid_field"),
        ({"revoked_pcr8": []}, "invalid_field"),  # unknown keys: maybe a revocation we would ignore
    ],
)
def test_refusals(over, label):
    with pytest.raises(ManifestError) as exc:
        parse_manifest(raw(doc(**over)))
    assert exc.value.label == label


@pytest.mark.parametrize(
    "data",
    [
        b"<html><body>503 Service Unavailable</body></html>",
        b"",
        b"[]",
        b"\xff\xfe",
        raw(doc()).replace(b'"version": 3', b'"version": 3, "version": 9'),
        raw(doc()).replace(b'"version": 3', b'"version": NaN'),
        raw(doc())[:-5],
    ],
)
def test_malformed(data):
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data)
    assert exc.value.label in {"malformed", "wrong_type"}


def test_halt_reasons():
    m = parse_manifest(raw(doc(min_version="1.3.0")))
    assert "1.3.1 is revoked" in m.halt_reason("1.3.1", None)
    assert "measurement" in m.halt_reason("1.4.0", "AB" * 48)
    assert "below the minimum" in m.halt_reason("1.2.9", "cd" * 48)
    assert "below the minimum" in m.halt_reason("1.3.0rc1", None)
    assert "cannot be compared" in m.halt_reason("weird-build", None)
    assert m.halt_reason("1.3.0", "cd" * 48) is None
    assert m.halt_reason("1.4.0", None) is None


def test_version_ordering():
    assert version_below("1.2.9", "1.3.0") is True
    assert version_below("1.3", "1.3.0") is False
    assert version_below("1.10.0", "1.9.0") is False
    assert version_below("2.0.0rc1", "2.0.0") is True
    assert version_below("2.0.0.dev1", "2.0.0a1") is True
    assert version_below("x", "1.0") is None


def test_builder_output_parses_and_is_stable():
    data = build_manifest(version=5, scope="prod", issued_at=T0, expires=T0 + dt.timedelta(hours=1),
                          revoked_versions=["1.0.0"], reason="test")
    assert parse_manifest(data).version == 5
    with pytest.raises(ManifestError):
        build_manifest(version=0, scope="prod", issued_at=T0, expires=T0 + dt.timedelta(hours=1))
