"""Every signed document (manifest, root, bundle) goes through one strict JSON reader."""

import pytest

from swqos_killswitch import strict_json
from swqos_killswitch.root import RootError, parse_root


@pytest.mark.parametrize("raw, why", [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b'{"a": Infinity}', "Infinity is not valid JSON"),
    (b"\xff{}", "not UTF-8"),
    (b"{", "not JSON"),
])
def test_ambiguous_or_broken_json_is_refused(raw, why):
    with pytest.raises(strict_json.StrictJsonError, match=why):
        strict_json.loads(raw)


def test_a_root_with_a_duplicate_key_is_refused_with_its_label():
    with pytest.raises(RootError) as info:
        parse_root(b'{"_type": "x", "_type": "y"}')
    assert info.value.label == "malformed_root" and "duplicate key" in str(info.value)
