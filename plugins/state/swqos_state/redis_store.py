"""The ``redis`` store: state shared by a fleet of host-proxies (works with Valkey too).

Every decision that must be atomic across replicas is a Lua script run on the server, with the
server's clock (``TIME``), so replicas with skewed clocks still agree:

- ``take``: several GCRA cells, all or nothing (one ``EVALSHA``);
- ``record_failures``: one script per key, pipelined (one round trip), returning the ban state;
  a ban is appended to a stream every replica polls, and to a sorted set read at start;
- ``put_policy``: the version counter, the record and the change stream in one script.

Replicas poll both streams every ``sync_interval`` (one ``XREAD``); a gap in the versions (the
stream was trimmed past a slow replica) triggers a full reload of the policy hash.

Connections: ``redis://`` or ``rediss://`` (TLS, verified against ``ca_file``, optionally with a
client certificate), an ACL ``username`` and a password from ``password_file`` (or the URL).
An unauthenticated Redis is refused unless ``allow_unauthenticated = true``. Every command has a
timeout and the pool a size; the URL is only ever logged without its password.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as rexc

from swqos_core.errors import ConfigError
from swqos_core.store import (
    Cell,
    FailureRule,
    FailureState,
    PolicyRecord,
    StoreUnavailable,
    Taken,
    check_policy_item,
    export_document,
)
from swqos_state.lane import LaneError, LaneTarget, RedisLane
from swqos_state.sync import StoreSync, SyncSettings

#: Stream lengths kept (approximate trimming); a replica further behind reloads the policy hash.
STREAM_MAXLEN = 10_000
#: Keys per take / failures per pipeline at most (a stage has at most eight cells).
MAX_CELLS = 32
#: Cells whose take arguments are kept ready; cleared when full.
MAX_REMEMBERED_CELLS = 16_384

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local news = {}
local worst, wi = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tol = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local allow_at = tat - tol
  if now < allow_at then
    if allow_at - now > worst then worst = allow_at - now; wi = i end
  else
    news[i] = tat + interval
  end
end
if wi > 0 then return {wi, string.format('%.0f', worst)} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', math.floor((news[i] - now) / 1000) + 1)
end
return {0, '0'}
"""

# KEYS: failures list, ban flag, strikes, ban stream, ban zset, ban counter
# ARGV: ban_after, window_ms, ban_ms, ban_max_ms, forget_ms, logical key, stream maxlen
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local strikes = tonumber(redis.call('GET', KEYS[3]) or '0')
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {0, left, strikes} end
local ban_after = tonumber(ARGV[1])
redis.call('LPUSH', KEYS[1], string.format('%d', now))
redis.call('LTRIM', KEYS[1], 0, ban_after - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local n = redis.call('LLEN', KEYS[1])
local oldest = tonumber(redis.call('LINDEX', KEYS[1], -1))
if n >= ban_after and now - oldest <= tonumber(ARGV[2]) then
  local ban = math.floor(math.min(tonumber(ARGV[3]) * 2 ^ math.min(strikes, 20), tonumber(ARGV[4])))
  strikes = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], 86400000)
  redis.call('SET', KEYS[2], '1', 'PX', ban)
  redis.call('DEL', KEYS[1])
  local seq = redis.call('INCR', KEYS[6])
  local untl = string.format('%d', now + ban)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'k', ARGV[6], 'until', untl, 'seq', seq)
  redis.call('ZADD', KEYS[5], untl, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', string.format('%d', now))
  return {n, ban, strikes}
end
return {n, 0, strikes}
"""

# KEYS: policy hash, version counter, policy stream; ARGV: field, record body (JSON without "{"), maxlen, max records
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return redis.error_reply('swqos: policy record limit reached')
end
local v = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local rec = '{"version":' .. v .. ',"at":' .. t[1] .. '.' .. string.format('%06d', tonumber(t[2])) .. ',' .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], rec)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'r', rec)
return rec
"""


@dataclass
class RedisSettings(SyncSettings):
    """``[layers.store.redis]``"""

    #: ``redis://host:6379/0`` or ``rediss://host:6380/0`` (TLS). A password in the URL works but
    #: ``password_file`` keeps it out of the config.
    url: str = ""
    #: ACL user (``AUTH username password``); or in the URL.
    username: str | None = None
    #: File holding the password (one line, mode 0600 or stricter).
    password_file: Path | None = None
    #: PEM CA bundle that signed the server's certificate (``rediss://``); the system store if unset.
    ca_file: Path | None = None
    #: Optional client certificate and key for mutual TLS.
    client_cert: Path | None = None
    client_key: Path | None = None
    #: Prefix of every key, so one Redis can hold several fleets (or other data, with an ACL
    #: that limits the user to ``~<prefix>*``).
    prefix: str = "swqos:"
    #: Per-command timeout (ms), also the wait for a pooled connection. A request-path call that
    #: times out is a store failure; keep it well under ``[proxy] deadline_ms``.
    timeout_ms: int = 50
    connect_timeout_ms: int = 500
    #: Connections in the pool for everything off the request path (polls, policy writes,
    #: failures, export); a caller waits at most ``timeout_ms`` for one.
    max_connections: int = 32
    #: Rate-limit commands the request path may have waiting on its one pipelined connection;
    #: beyond it a take fails at once and the limiter falls back to per-replica limits (counted).
    max_in_flight: int = 4096
    #: Start even when Redis is unreachable (logged); with ``on_failure = "refuse"`` the proxy then
    #: stays NOT_SERVING until Redis answers. Without it an unreachable Redis stops startup.
    start_without_store: bool = False
    #: Allow a Redis without a password (never in production; a loopback test server).
    allow_unauthenticated: bool = False
    #: Policy records (admin changes, tombstones included) kept at most.
    max_policy_records: int = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url:
            raise ValueError("url is required (redis://host:port/db or rediss://...)")
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"url must start with redis:// or rediss://, got {redact(self.url)!r}")
        if (self.ca_file or self.client_cert or self.client_key) and parsed.scheme != "rediss":
            raise ValueError("ca_file and client certificates need a rediss:// url")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together")
        if not (0 < len(self.prefix) <= 64 and all(c.isalnum() or c in ":_-{}." for c in self.prefix)):
            raise ValueError("prefix: 1 to 64 characters of letters, digits and :_-{}.")
        if not 10 <= self.timeout_ms <= 10_000 or not 10 <= self.connect_timeout_ms <= 30_000:
            raise ValueError("timeout_ms must be 10..10000 and connect_timeout_ms 10..30000")
        if not 1 <= self.max_connections <= 1024:
            raise ValueError("max_connections must be between 1 and 1024")
        if not 1 <= self.max_in_flight <= 100_000:
            raise ValueError("max_in_flight must be between 1 and 100000")
        if not 16 <= self.max_policy_records <= 10_000_000:
            raise ValueError("max_policy_records must be between 16 and 10000000")


def redact(url: str) -> str:
    """The URL without its password, for every message and log line."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if p.password is None:
        return url
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{p.username}:***@{host}" if p.username else f":***@{host}"
    if p.port:
        netloc += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


class RedisStateStore(StoreSync):
    """A :class:`~swqos_core.store.StateStore` in Redis, shared by every replica."""

    name = "redis"
    shared = True

    def __init__(self, settings: RedisSettings, *, password: str | None, tls: dict[str, Any] | None,
                 ssl_context: ssl.SSLContext | None = None, state: Any = None,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(settings, state=state, logger=logger or logging.getLogger("swqos.store.redis"))
        self.s = settings
        self.where = redact(settings.url)
        p = settings.prefix
        self.k_policy, self.k_version, self.k_pstream = p + "policy", p + "policy:version", p + "policy:changes"
        self.k_bstream, self.k_bset, self.k_bseq = p + "bans:changes", p + "bans:live", p + "bans:seq"
        kwargs: dict[str, Any] = {
            "socket_timeout": settings.timeout_ms / 1000,
            "socket_connect_timeout": settings.connect_timeout_ms / 1000,
            "max_connections": settings.max_connections,
            "timeout": settings.timeout_ms / 1000,
            "decode_responses": True,
            "health_check_interval": 0,
        }
        if settings.username is not None:
            kwargs["username"] = settings.username
        if password is not None:
            kwargs["password"] = password
        if tls is not None:
            kwargs.update(tls)
        self._pool = aioredis.BlockingConnectionPool.from_url(settings.url, **kwargs)
        self.r = aioredis.Redis(connection_pool=self._pool)
        # The request path's takes go over the lane (swqos_state.lane), not through redis-py.
        self._lane = RedisLane(LaneTarget.from_url(settings.url, username=settings.username, password=password,
                                                   ssl_context=ssl_context, where=self.where),
                               timeout=settings.timeout_ms / 1000, connect_timeout=settings.connect_timeout_ms / 1000,
                               max_pending=settings.max_in_flight)
        # SHA-1 because EVALSHA names a script by it, not for security.
        self._take_sha = hashlib.sha1(_TAKE.encode(), usedforsecurity=False).hexdigest()
        #: Cell -> (its Redis key, interval µs, tolerance µs): the limiter hands the same Cell objects
        #: back for a repeat caller, so a take's arguments are looked up, not rebuilt (bounded).
        self._cell_args: dict[Cell, tuple[str, int, int]] = {}
        self._fail_script = self.r.register_script(_FAIL)
        self._put_script = self.r.register_script(_PUT)
        self._ban_id = "0-0"
        self._policy_id = "0-0"
        self._version = 0
        self._ban_seq = 0

    def busy_refusals(self) -> int:
        return self._lane.busy_refusals

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.r.ping()
            await self._load()
        except rexc.AuthenticationError:
            await self._close_pool()
            raise ConfigError(f"[layers.store.redis] {self.where}: authentication failed (wrong password or "
                              "ACL user); refusing to start") from None
        except rexc.ResponseError as exc:
            await self._close_pool()
            text = str(exc)
            if "NOPERM" in text or "NOAUTH" in text or "WRONGPASS" in text:
                raise ConfigError(f"[layers.store.redis] {self.where}: the server refused us ({text.split(' ')[0]}): "
                                  "check the ACL user's password, keys (~<prefix>*) and commands (plugins/state/"
                                  "README.md)") from None
            raise ConfigError(f"[layers.store.redis] {self.where}: {text}") from None
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            if isinstance(exc, rexc.ConnectionError) and "SSL" in str(exc):
                await self._close_pool()
                raise ConfigError(f"[layers.store.redis] {self.where}: TLS handshake failed ({exc}); "
                                  "check ca_file and the server certificate") from None
            if not self.s.start_without_store:
                await self._close_pool()
                raise ConfigError(f"[layers.store.redis] {self.where} is unreachable ({exc}); refusing to start "
                                  "(set start_without_store = true to start anyway)") from None
            self.log.error("redis %s unreachable at start (%s): starting without it (start_without_store); %s",
                           self.where, exc, "NOT_SERVING until it answers" if self.sync.on_failure == "refuse"
                           else "degraded: no policy records loaded, per-replica limits")
            self._failing_since = self.monotonic() - self.sync.grace_seconds
            self._failed(StoreUnavailable(str(exc)))
        else:
            self._ok()
        self.start_sync()

    async def _load(self) -> None:
        """Everything at start (and after a gap): stream positions first, so nothing is missed."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xrevrange(self.k_pstream, count=1)
        pipe.xrevrange(self.k_bstream, count=1)
        pipe.get(self.k_bseq)
        pipe.time()
        last_p, last_b, seq, (secs, micros) = await pipe.execute()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        records: list[PolicyRecord] = []
        async for _, raw in self.r.hscan_iter(self.k_policy, count=1000):
            records.append(_parse_record(raw))
        records.sort(key=lambda r: r.version)
        bans = await self.r.zrangebyscore(self.k_bset, now_ms, "+inf", withscores=True, start=0,
                                          num=self.sync.max_mirrored_bans)
        if last_p:
            self._policy_id = last_p[0][0]
        if last_b:
            self._ban_id = last_b[0][0]
        self._ban_seq = int(seq or 0)
        self._version = max([self._version, *(r.version for r in records)])
        for key, until in bans:
            self._mirror_ban(key, (until - now_ms) / 1000)
        self._deliver(records)

    async def close(self) -> None:
        await self.stop_sync()
        await self._lane.close()
        await self._close_pool()

    async def _close_pool(self) -> None:
        try:
            await self.r.aclose()
            await self._pool.disconnect()
        except Exception:  # closing: the connections are gone either way
            self.log.debug("closing the redis pool failed", exc_info=True)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"redis {self.where}: {type(exc).__name__}: {exc}")

    # --- GCRA ----------------------------------------------------------------------------
    async def take(self, cells: Sequence[Cell]) -> Taken:
        if not 0 < len(cells) <= MAX_CELLS:
            raise ValueError(f"take needs 1 to {MAX_CELLS} cells")
        if self._failing_since is not None:
            # Known down: fail at once (the caller falls back) rather than wait out a connect
            # timeout per request; the sync loop keeps probing and clears this when Redis answers.
            raise StoreUnavailable(f"redis {self.where}: unreachable since {self.last_error or 'start'}")
        known = self._cell_args
        args = []
        for c in cells:
            found = known.get(c)
            if found is None:
                if len(known) >= MAX_REMEMBERED_CELLS:
                    known.clear()
                found = known[c] = (self.s.prefix + "c:" + c.key, max(1, c.interval_ns // 1000), c.tolerance_ns // 1000)
            args.append(found)
        command: list[str | int] = ["EVALSHA", self._take_sha, len(cells)]
        command += [key for key, _, _ in args]
        for _, interval, tolerance in args:
            command += (interval, tolerance)
        try:
            reply = await self._lane.call(*command)
            if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
                # The server lost its script cache (a restart): EVAL sends the body and caches it.
                command[:2] = ["EVAL", _TAKE]
                reply = await self._lane.call(*command)
        except LaneError as exc:
            raise StoreUnavailable(f"redis {self.where}: {exc}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise StoreUnavailable(f"redis {self.where}: {reply}")
        try:
            index, wait = int(reply[0]), int(reply[1])
        except (TypeError, ValueError, IndexError):
            raise StoreUnavailable(f"redis {self.where}: the take script answered {str(reply)[:80]}") from None
        if not 0 <= index <= len(cells):
            raise StoreUnavailable(f"redis {self.where}: the take script named cell {index} of {len(cells)}")
        if index == 0:
            return Taken(True)
        return Taken(False, cells[index - 1].label, max(1, int(wait)) * 1000)

    # --- failures ------------------------------------------------------------------------
    async def record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        p = self.s.prefix
        pipe = self.r.pipeline(transaction=False)
        for key, rule in items:
            await self._fail_script(
                keys=[p + "f:" + key, p + "b:" + key, p + "s:" + key, self.k_bstream, self.k_bset, self.k_bseq],
                args=[rule.ban_after, int(rule.window_seconds * 1000), int(rule.ban_seconds * 1000),
                      int(rule.ban_max_seconds * 1000), int(rule.forget_after_seconds * 1000), key, STREAM_MAXLEN],
                client=pipe)
        try:
            results = await pipe.execute()
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        return [FailureState(int(n), int(ms) / 1000, int(strikes)) for n, ms, strikes in results]

    # --- policy --------------------------------------------------------------------------
    async def put_policy(self, namespace: str, key: str, value: Any, actor: str) -> PolicyRecord:
        check_policy_item(namespace, key, value)
        body = json.dumps({"namespace": namespace, "key": key, "value": value, "actor": actor})[1:]
        try:
            raw = await self._put_script(keys=[self.k_policy, self.k_version, self.k_pstream],
                                         args=[_field(namespace, key), body, STREAM_MAXLEN,
                                               self.s.max_policy_records])
        except rexc.ResponseError as exc:
            if "policy record limit" in str(exc):
                raise ValueError("the state store holds max_policy_records records, its limit") from None
            raise self._unavailable(exc) from None
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        rec = _parse_record(raw)
        self._deliver([rec])
        return rec

    async def policy_records(self, namespace: str | None = None) -> list[PolicyRecord]:
        try:
            out = [_parse_record(raw) async for _, raw in self.r.hscan_iter(self.k_policy, count=1000)]
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        return sorted((r for r in out if r.value is not None and (namespace is None or r.namespace == namespace)),
                      key=lambda r: r.version)

    # --- the poll ------------------------------------------------------------------------
    async def _poll(self) -> tuple[list[PolicyRecord], list[tuple[str, float]]]:
        try:
            pipe = self.r.pipeline(transaction=False)
            pipe.time()
            pipe.xread({self.k_bstream: self._ban_id, self.k_pstream: self._policy_id}, count=1000)
            (secs, micros), streams = await pipe.execute()
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        now_ms = int(secs) * 1000 + int(micros) // 1000
        records: list[PolicyRecord] = []
        bans: list[tuple[str, float]] = []
        gap = False
        for stream, entries in streams or ():
            if not entries:
                continue
            if stream == self.k_bstream:
                self._ban_id = entries[-1][0]
                for _, fields in entries:
                    seq = int(fields.get("seq", 0))
                    gap = gap or (self._ban_seq and seq > self._ban_seq + 1)
                    self._ban_seq = max(self._ban_seq, seq)
                    bans.append((fields["k"], (int(fields["until"]) - now_ms) / 1000))
            else:
                self._policy_id = entries[-1][0]
                for _, fields in entries:
                    rec = _parse_record(fields["r"])
                    gap = gap or rec.version > self._version + 1
                    self._version = max(self._version, rec.version)
                    records.append(rec)
        if gap:  # the stream was trimmed past us: reload everything (idempotent by version)
            self.log.warning("redis %s: change stream gap; reloading policy and bans", self.where)
            try:
                await self._load()
            except (rexc.RedisError, OSError) as exc:
                raise self._unavailable(exc) from None
        return records, bans

    # --- export / import -----------------------------------------------------------------
    async def export_state(self) -> dict[str, Any]:
        try:
            secs, micros = await self.r.time()
            now_ms = int(secs) * 1000 + int(micros) // 1000
            live = await self.r.zrangebyscore(self.k_bset, now_ms, "+inf", withscores=True)
            strikes = [await self.r.get(self.s.prefix + "s:" + k) for k, _ in live]
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        bans = [(k, (until - now_ms) / 1000, int(s or 1)) for (k, until), s in zip(live, strikes, strict=True)]
        return export_document(self.name, await self.policy_records(), bans)

    async def import_state(self, policy: Sequence[Mapping[str, Any]], bans: Sequence[Mapping[str, Any]],
                           actor: str) -> int:
        for rec in policy:
            await self.put_policy(rec["namespace"], rec["key"], rec["value"], rec.get("actor") or actor)
        p = self.s.prefix
        try:
            secs, micros = await self.r.time()
            now_ms = int(secs) * 1000 + int(micros) // 1000
            for ban in bans:
                key, ms = ban["key"], max(1, int(float(ban["remaining_seconds"]) * 1000))
                pipe = self.r.pipeline(transaction=True)
                pipe.set(p + "b:" + key, "1", px=ms)
                pipe.set(p + "s:" + key, int(ban.get("strikes", 1)), px=86_400_000)
                pipe.zadd(self.k_bset, {key: now_ms + ms})
                pipe.incr(self.k_bseq)
                await pipe.execute()
                seq = await self.r.get(self.k_bseq)
                await self.r.xadd(self.k_bstream, {"k": key, "until": now_ms + ms, "seq": seq},
                                  maxlen=STREAM_MAXLEN, approximate=True)
                self._mirror_ban(key, ms / 1000)
        except (rexc.RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        return len(policy) + len(bans)


def _field(namespace: str, key: str) -> str:
    return f"{namespace}\x1f{key}"


def _parse_record(raw: str) -> PolicyRecord:
    d = json.loads(raw)
    return PolicyRecord(d["namespace"], d["key"], d["value"], d["actor"], float(d["at"]), int(d["version"]))


def _read_password(path: Path) -> str:
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"[layers.store.redis] password_file {path}: {exc}") from None
    if st.st_mode & 0o077:
        raise ConfigError(f"[layers.store.redis] password_file {path} is readable by others "
                          f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
    if not text or "\n" in text:
        raise ConfigError(f"[layers.store.redis] password_file {path} must hold one non-empty line")
    return text


def _tls_options(settings: RedisSettings, ctx: Any) -> tuple[dict[str, Any], ssl.SSLContext] | None:
    """The same TLS policy twice, for redis-py (its keyword arguments) and for the request path's
    lane (an SSLContext): the server certificate verified against ``ca_file`` or the system store,
    its host name checked, TLS 1.2 at least, an optional client certificate."""
    if not settings.url.startswith("rediss://"):
        return None
    files: dict[str, str] = {}
    for name in ("ca_file", "client_cert", "client_key"):
        value = getattr(settings, name)
        if value is not None:
            path = ctx.path(value)
            if not path.is_file():
                raise ConfigError(f"[layers.store.redis] {name} {path}: not a readable file")
            files[name] = str(path)
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                               "ssl_min_version": ssl.TLSVersion.TLSv1_2}
    options.update({key: files[name] for name, key in (("ca_file", "ssl_ca_certs"), ("client_cert", "ssl_certfile"),
                                                        ("client_key", "ssl_keyfile")) if name in files})
    try:
        context = ssl.create_default_context(cafile=files.get("ca_file"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if "client_cert" in files:
            context.load_cert_chain(files["client_cert"], files["client_key"])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[layers.store.redis] ca_file or client certificate: {exc}") from None
    return options, context


def build(settings: RedisSettings, ctx: Any) -> RedisStateStore:
    """The registered factory: credentials and TLS material are read now; the connection is made
    in ``start`` (first of every layer), which refuses to start on a bad password or no server."""
    password = _read_password(ctx.path(settings.password_file)) if settings.password_file else None
    parsed = urllib.parse.urlsplit(settings.url)
    if password is None and parsed.password is None and not settings.allow_unauthenticated:
        raise ConfigError(f"[layers.store.redis] {redact(settings.url)}: no password (password_file or the URL); "
                          "never run the fleet's state on an unauthenticated Redis (allow_unauthenticated = true "
                          "only for a loopback test server)")
    tls = _tls_options(settings, ctx)
    return RedisStateStore(settings, password=password, tls=tls[0] if tls else None,
                           ssl_context=tls[1] if tls else None, state=ctx.state, logger=ctx.logger)
