"""CSRF tokens: bound to session and operator, short-lived, single-use, constant-time checked."""

from __future__ import annotations

import pytest

from swqos_dashboard.csrf import CsrfGuard, CsrfRefused, new_session

from .dashboard_helpers import Clock


def _guard(clock: Clock, used_max: int = 100) -> CsrfGuard:
    return CsrfGuard(max_age=900, used_max=used_max, clock=clock)


def test_a_token_is_accepted_once_for_its_session_and_operator():
    clock = Clock()
    guard = _guard(clock)
    session = new_session()
    token = guard.issue(session, "certificate:op")
    guard.check(session, token, "certificate:op")
    with pytest.raises(CsrfRefused, match="already used"):
        guard.check(session, token, "certificate:op")
    assert guard.refused == 1


@pytest.mark.parametrize("case", ["missing", "other-session", "other-operator", "forged", "malformed",
                                  "no-session", "future"])
def test_bad_tokens_are_refused(case):
    clock = Clock()
    guard = _guard(clock)
    session = new_session()
    token = guard.issue(session, "op")
    issued, nonce, mac = token.split(".")
    session_used, token_used, operator = session, token, "op"
    if case == "missing":
        token_used = ""
    elif case == "other-session":
        session_used = new_session()
    elif case == "other-operator":
        operator = "someone-else"
    elif case == "forged":
        token_used = f"{issued}.{nonce}.{'0' * len(mac)}"
    elif case == "malformed":
        token_used = "not-a-token"
    elif case == "no-session":
        session_used = None
    elif case == "future":
        token_used = f"{int(issued) + 3600}.{nonce}.{mac}"  # re-dated: the MAC no longer matches
    with pytest.raises(CsrfRefused) as exc:
        guard.check(session_used, token_used, operator)
    assert exc.value.status == 403
    guard.check(session, token, "op")  # the genuine token was not used up by the failures


def test_an_old_token_is_refused():
    clock = Clock()
    guard = _guard(clock)
    session = new_session()
    token = guard.issue(session)
    clock.now += 901
    with pytest.raises(CsrfRefused, match="expired"):
        guard.check(session, token)


def test_used_tokens_are_forgotten_only_once_expired_and_a_full_table_refuses():
    clock = Clock()
    guard = _guard(clock, used_max=100)
    session = new_session()
    for _ in range(100):
        guard.check(session, guard.issue(session))
    with pytest.raises(CsrfRefused) as exc:
        guard.check(session, guard.issue(session))
    assert exc.value.status == 503 and guard.table_full == 1
    clock.now += 901  # every used token has expired: the table empties, forms work again
    guard.check(session, guard.issue(session))
    assert len(guard._used) == 1


def test_out_of_order_posts_keep_expiry_ordered():
    clock = Clock()
    guard = _guard(clock)
    session = new_session()
    early = guard.issue(session)
    clock.now += 100
    late = guard.issue(session)
    guard.check(session, late)
    guard.check(session, early)
    clock.now += 850  # early expired (950 s), late not (850 s)
    guard._expire(clock.now)
    assert len(guard._used) == 1
    with pytest.raises(CsrfRefused, match="already used"):
        guard.check(session, late)
