"""The bytes of one archive as a stream: the file on disk first, then the network; and gunzip.

:class:`ArchiveSource` reads what an earlier run kept on disk and then what :class:`~cral_lib.fetch.http_range.Fetcher`
streams (writing it to the file before it is decoded), so that an interrupted run resumes;
:class:`Gunzip` decompresses it, checking every gzip member's CRC-32 and length. Every layer,
the HTTP reads and the tar reader included, reads :data:`CHUNK` bytes at a time.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

#: Bytes per read, in every layer (the tests make it tiny, to put every boundary inside gzip,
#: tar and PNG data).
CHUNK = 1 << 18


class Corrupt(Exception):
    """The archive's bytes are not a valid archive of the expected images."""


class ArchiveSource(io.RawIOBase):
    """The bytes of one archive: the file on disk first, then the network (appended to the file).

    With ``fetcher=None`` the file is read as it is (a complete archive).
    """

    def __init__(self, path: Path, fetcher: Any, on_network: Callable[[int], None]) -> None:
        super().__init__()
        self._file = open(path, "r+b" if path.exists() else "w+b")
        self._pos = 0
        self._local = True
        self._fetcher = fetcher
        self._network: Iterator[bytes] | None = None
        self._on_network = on_network

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        if self._local:
            self._file.seek(self._pos)
            data = self._file.read(size)
            if data:
                self._pos += len(data)
                return data
            self._local = False
        if self._fetcher is None:
            return b""
        if self._network is None:
            self._file.seek(0, os.SEEK_END)
            self._network = self._fetcher.stream(self._pos)
        chunk = next(self._network, b"")
        if chunk:
            self._file.write(chunk)  # on disk before it is decoded
            self._pos += len(chunk)
            self._on_network(len(chunk))
        return chunk

    @property
    def position(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._network is not None:
            self._network.close()
            self._network = None
        if not self._file.closed:
            self._file.flush()
            self._file.close()
        super().close()


class Gunzip(io.RawIOBase):
    """Decompresses a gzip stream, checking each member's CRC-32 and length (tarfile's own
    ``r|gz`` does not check the CRC when reading). Output is produced in bounded steps."""

    def __init__(self, raw: Any, label: str) -> None:
        super().__init__()
        self._raw = raw
        self._label = label
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._buf = bytearray()
        self._input = b""  # compressed bytes read but not yet decompressed
        self._start = True
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._buf and not self._done:
            self._fill()
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        del self._buf[:n]
        return n

    def _more(self) -> bytes:
        data = self._raw.read(CHUNK)
        if data and self._start:
            self._start = False
            if not data.startswith(b"\x1f\x8b"):
                what = "a web page" if data.lstrip()[:1] == b"<" else "not gzip data"
                raise Corrupt(f"it is {what}, not a gzip-compressed tar (it starts with {data[:16]!r})")
        return data

    def _fill(self) -> None:
        data, self._input = self._input, b""
        if not data:
            data = self._more()
            if not data:
                if self._d.eof:
                    self._done = True
                    return
                raise Corrupt("it is empty" if self._start else "it ends early (the gzip stream is truncated)")
        if self._d.eof:  # after a complete member: another member, zero padding, or garbage
            while len(data) < 2 and (more := self._more()):
                data += more
            if data.startswith(b"\x1f\x8b"):
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            elif not data.strip(b"\0"):
                return  # zero padding after the last member
            else:
                raise Corrupt("it has trailing bytes after the gzip stream")
        try:
            self._buf += self._d.decompress(data, 4 * CHUNK)
        except zlib.error as exc:
            raise Corrupt(f"its gzip data is damaged ({exc})") from None
        self._input = self._d.unused_data if self._d.eof else self._d.unconsumed_tail




__all__ = ["ArchiveSource", "CHUNK", "Corrupt", "Gunzip"]
