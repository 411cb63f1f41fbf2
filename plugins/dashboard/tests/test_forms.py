"""Form fields to operation parameters: only what the operation declares, typed as it expects."""

from __future__ import annotations

import pytest

from swqos_core.extensions import AdminOperation
from swqos_dashboard.forms import operation_params
from swqos_dashboard.web import BadRequest


async def _noop(params, actor):
    return {}


QUOTA = AdminOperation("set-quota", _noop, "q", params={"sub": "", "rate": "", "sustained": "", "force": ""})
ALLOW = AdminOperation("set-allowlist", _noop, "a", params={"sub": "", "cidrs": "", "force": ""})


def test_nested_fields_become_numbers_and_blank_ones_are_left_out():
    form = {"op": "set-quota", "csrf": "x", "p.sub": " trader-1 ", "p.rate.count": "10", "p.rate.period": "1.5",
            "p.rate.burst": "", "p.sustained.count": "", "p.force": "on"}
    assert operation_params(QUOTA, form) == {"sub": "trader-1", "rate": {"count": 10, "period": 1.5}, "force": True}


def test_cidrs_are_a_list_and_an_empty_field_drops_the_override():
    assert operation_params(ALLOW, {"p.sub": "t", "p.cidrs": "192.0.2.0/24, 2001:db8::/32\n198.51.100.7"}) == {
        "sub": "t", "cidrs": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]}
    assert operation_params(ALLOW, {"p.sub": "t", "p.cidrs": "  "}) == {"sub": "t", "cidrs": None}


@pytest.mark.parametrize("form,message", [
    ({"p.admin": "1"}, "takes no parameter 'admin'"),
    ({"p.rate.count": "ten"}, "rate.count must be a number"),
    ({"p.rate.count": "nan"}, "finite"),
    ({"p.rate.count": "inf"}, "finite"),
    ({"p.sub.x": "1", "p.sub": "t"}, "given both"),
])
def test_bad_fields_are_400(form, message):
    with pytest.raises(BadRequest, match=message) as exc:
        operation_params(QUOTA, form)
    assert exc.value.status == 400
