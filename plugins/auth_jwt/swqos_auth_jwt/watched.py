"""A JSON file that is re-read when it changes, checked at most once per interval.

Used for the revocation list and the IP allowlist: an operator (or the marketplace sync job)
rewrites the file, and the next request after the interval sees the new content, no restart.
The check is one ``stat`` call, so it can run on the request path; a file that becomes unreadable
or invalid keeps the last good content (dropping a revocation list because of a half-written
file would re-admit revoked traders).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from swqos_auth_jwt.strict import StrictDecodeError, json_object
from swqos_core.errors import ConfigError

T = TypeVar("T")


class WatchedJson(Generic[T]):
    def __init__(
        self,
        path: Path,
        parse: Callable[[dict[str, Any]], T],
        *,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        on_change: Callable[[T], None] | None = None,
    ) -> None:
        self.path = path
        self._parse = parse
        self._interval = interval
        self._monotonic = monotonic
        self._log = logger or logging.getLogger("swqos.auth.jwt")
        self._on_change = on_change
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        try:
            self.value: T = self._load()
        except (OSError, StrictDecodeError, ValueError) as exc:
            # at startup a missing or broken file is fatal: the operator believes it is in force
            raise ConfigError(f"{path}: {exc}") from exc

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> T:
        stamp = self._stat()
        with open(self.path, "rb") as fh:
            raw = fh.read(4 * 1024 * 1024 + 1)
        if len(raw) > 4 * 1024 * 1024:
            raise ValueError("file larger than 4 MiB")
        value = self._parse(json_object(raw))
        self._stamp = stamp
        return value

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed. Returns True when new content was loaded."""
        now = self._monotonic()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self._interval
        try:
            if not force and self._stat() == self._stamp:
                return False
            value = self._load()
        except (OSError, StrictDecodeError, ValueError) as exc:
            self._log.error("cannot reload %s, keeping the previous content: %s", self.path, exc)
            return False
        self.value = value
        self._log.info("reloaded %s", self.path)
        if self._on_change is not None:
            self._on_change(value)
        return True
