"""HTTP with Range resume: one URL streamed from a byte offset, retried with back-off.

A cut connection is retried with an HTTP ``Range`` request from the byte reached; a server that
ignores ``Range`` answers with the whole file, whose first bytes are then read and discarded,
so that the partial file stays valid. A web page instead of the archive (Box shows one when it
limits downloads) counts as a failed attempt.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from .._io import human
from .._version import __version__
from . import stream
from .nih import BASE_URL_ENV, NIH_PAGE

_MAX_WAIT = 60.0  # seconds between retries at the most


class RemoteChanged(Exception):
    """The server's file is not the one the partial download came from."""


class NetworkFailure(Exception):
    """Retries are exhausted (or the server refuses for good); the message says what to do."""


class Retryable(Exception):
    """A failure worth another attempt (a cut connection, a server error, a web page)."""


def parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


class Fetcher:
    """Streams one URL from a byte offset; retries with back-off; resumes with Range."""

    def __init__(
        self,
        url: str,
        label: str,
        part: Path,
        *,
        total: int | None,
        retries: int,
        retry_wait: float,
        timeout: float,
        on_total: Callable[[int], None],
        log: Callable[[str], None],
    ) -> None:
        self.url = url
        self.label = label
        self.part = part
        self.total = total
        self.retries = retries
        self.retry_wait = retry_wait
        self.timeout = timeout
        self.on_total = on_total
        self.log = log
        self.range_ignored = False

    def _headers(self, offset: int) -> dict[str, str]:
        headers = {"User-Agent": f"cral_lib/{__version__} (cral download)", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return headers

    def _open(self, offset: int):
        """Return ``(response, skip)``, or ``(None, 0)`` when the file is complete at ``offset``."""
        request = urllib.request.Request(self.url, headers=self._headers(offset))
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as exc:
            code = exc.code
            content_range = exc.headers.get("Content-Range") if exc.headers else None
            exc.close()
            if code == 416:
                _, total = parse_content_range(content_range)
                if total is not None and total == offset:
                    self._set_total(total)
                    return None, 0
                raise RemoteChanged(f"the server has {total} bytes, the partial download {offset}")
            if code in (408, 425, 429) or code >= 500:
                raise Retryable(f"HTTP {code} {exc.reason}") from None
            raise NetworkFailure(
                f"{self.url} answered HTTP {code} ({exc.reason}) for {self.label}: the link may have moved. "
                f"Check the NIH page {NIH_PAGE}, point --base-url (or {BASE_URL_ENV}) at a mirror, or use "
                "--source kaggle"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Retryable(f"{type(exc).__name__}: {reason}") from None
        status = getattr(response, "status", 200)
        ctype = (response.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html"):
            response.close()
            raise Retryable(
                "the server sent a web page, not the archive (Box shows one when it limits downloads or a "
                "link has moved)"
            )
        skip = 0
        if status == 206:
            start, total = parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                response.close()
                raise Retryable(f"the server sent bytes from {start}, {offset} were asked for")
        elif status == 200:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if offset:
                skip = offset  # the server ignored Range: read the first bytes again and drop them
                if not self.range_ignored:
                    self.log(f"{self.label}: the server ignores Range requests; re-reading the first "
                             f"{human(offset)} and discarding them")
                self.range_ignored = True
        else:
            response.close()
            raise Retryable(f"unexpected HTTP status {status}")
        if total is not None:
            if self.total is not None and total != self.total:
                response.close()
                raise RemoteChanged(f"the file on the server has {total} bytes, it had {self.total}")
            self._set_total(total)
        return response, skip

    def _set_total(self, total: int) -> None:
        if self.total != total:
            self.total = total
            self.on_total(total)

    def _wait(self, failures: int, offset: int, reason: str) -> None:
        if failures > self.retries:
            kept = (
                f"the {human(offset)} received are kept in {self.part}: run the same command again to resume "
                "from there" if offset else "run the same command again later"
            )
            raise NetworkFailure(
                f"downloading {self.label} from {self.url} failed: {failures} attempt(s) in a row ({reason}); "
                f"{kept} (--retries and --retry-wait give more patience)"
            )
        delay = min(_MAX_WAIT, self.retry_wait * 2 ** (failures - 1))
        self.log(f"{self.label}: {reason}; retry {failures} of {self.retries} in {delay:.1f} s")
        time.sleep(delay)

    def stream(self, offset: int) -> Iterator[bytes]:
        """Yield the bytes of the file from ``offset`` to its end, across retries."""
        failures = 0
        while True:
            if self.total is not None and offset >= self.total:
                if offset > self.total:
                    raise RemoteChanged(f"the partial download has {offset} bytes, the file {self.total}")
                return
            try:
                response, skip = self._open(offset)
            except Retryable as exc:
                failures += 1
                self._wait(failures, offset, str(exc))
                continue
            if response is None:
                return
            got = 0
            reason = None
            try:
                with response:
                    while skip:
                        dropped = response.read(min(skip, stream.CHUNK))
                        if not dropped:
                            break
                        skip -= len(dropped)
                    if skip:
                        reason = "the connection closed before the point of resumption"
                    else:
                        while True:
                            chunk = response.read(stream.CHUNK)
                            if not chunk:
                                break
                            offset += len(chunk)
                            got += len(chunk)
                            yield chunk
            except (OSError, http.client.HTTPException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                if self.total is None:
                    self._set_total(offset)  # no length given: the end of the body is the end
                    return
                if offset == self.total:
                    return
                reason = f"the connection closed after {human(offset)} of {human(self.total)}"
            if got:
                failures = 0  # progress was made: a fresh series of retries
            failures += 1
            self._wait(failures, offset, reason)




__all__ = ["Fetcher", "NetworkFailure", "RemoteChanged", "Retryable", "parse_content_range"]
