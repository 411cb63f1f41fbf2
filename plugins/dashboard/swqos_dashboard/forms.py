"""From a posted form to an admin operation's parameters.

Fields are ``p.<param>`` (a string), ``p.<param>.<key>`` (collected into an object, numbers parsed:
the quota forms' ``count``, ``period``, ``burst``), and the ``force`` checkbox. Only parameters
the operation declares are passed on; the admin listener checks them again, as for any API call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from swqos_core.extensions import AdminOperation
from swqos_dashboard.web import BadRequest

LIST_PARAMS = frozenset({"cidrs"})
_SPLIT = re.compile(r"[\s,]+")


def _number(value: str, where: str) -> float | int:
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(400, f"{where} must be a number") from None
    if not math.isfinite(number):
        raise BadRequest(400, f"{where} must be a finite number")
    return int(number) if number.is_integer() else number


def operation_params(op: AdminOperation, form: Mapping[str, str]) -> dict[str, Any]:
    """The operation's parameters from the form fields; a field the operation lacks is a 400."""
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not key.startswith("p."):
            continue
        name, _, sub = key[2:].partition(".")
        if name not in op.params:
            raise BadRequest(400, f"{op.name} takes no parameter {name[:40]!r}")
        if name == "force":
            params["force"] = value == "on"
        elif sub:
            if value.strip() == "":
                continue
            obj = params.setdefault(name, {})
            if not isinstance(obj, dict):
                raise BadRequest(400, f"{name} given both as a value and as fields")
            obj[sub] = _number(value.strip(), f"{name}.{sub}")
        elif name in LIST_PARAMS:
            items = [v for v in _SPLIT.split(value.strip()) if v]
            params[name] = items or None  # an empty allowlist field drops the admin override
        else:
            if name in params:
                raise BadRequest(400, f"{name} given both as a value and as fields")
            params[name] = value.strip()
    return params
