"""Reading an image archive: the tar stream inside the gzip, its members' names, and every PNG's CRCs.

An archive counts as read only after all of it was: its gzip CRC-32 and length
(:class:`~cral_lib.fetch.stream.Gunzip`), every tar header checksum, every PNG's chunk CRCs
(:func:`check_png`), and its image names: exactly those of the release CSV that fall in the
archive's range.
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from typing import Any

from . import stream
from .nih import Archive
from .stream import Corrupt, Gunzip

#: The most bytes one image of an archive may declare, checked before it is read. NIH's PNGs are
#: 1024 x 1024, 8-bit grey (a few RGBA): at most about 4 MiB even stored without compression.
#: 80 MiB leaves room for the largest image `cral synth` writes (4096 x 4096) stored as RGBA
#: without compression (64 MiB and its chunk headers), and refuses the crafted member of a
#: decompression bomb before a byte of it is held in memory.
MAX_MEMBER_BYTES = 80 * 2**20
#: Members are read in pieces of this many bytes.
READ_CHUNK = 1 << 20

MEMBER_RE = re.compile(r"^(?:\./)?images/(\d{8}_\d{3}\.png)$")
ZIP_MEMBER_RE = re.compile(r"^(?:images_\d{3}/)?images/(\d{8}_\d{3}\.png)$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(data: bytes, label: str) -> None:
    """Raise :class:`Corrupt` unless ``data`` is a whole PNG whose every chunk CRC is right."""
    if not data.startswith(_PNG_MAGIC):
        raise Corrupt(f"{label} is not a PNG")
    pos, end = len(_PNG_MAGIC), len(data)
    first = True
    while pos + 12 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            break
        if first and kind != b"IHDR":
            raise Corrupt(f"{label} is a damaged PNG (no IHDR chunk first)")
        first = False
        crc = int.from_bytes(data[stop : stop + 4], "big")
        if zlib.crc32(data[pos + 4 : stop]) != crc:
            raise Corrupt(f"{label} is a damaged PNG (CRC error in a {kind.decode('latin-1')} chunk)")
        pos = stop + 4
        if kind == b"IEND":
            return
    raise Corrupt(f"{label} is a truncated PNG (no IEND chunk)")


def member_kind(member: tarfile.TarInfo) -> str:
    """What a tar member is, in words (for messages): a file, a folder, a symbolic link, a FIFO, ..."""
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    for test, words in ((member.isfile, "a file"), (member.isdir, "a folder"), (member.ischr, "a character device"),
                        (member.isblk, "a block device"), (member.isfifo, "a FIFO (named pipe)")):
        if test():
            return words
    return f"an entry of tar type {member.type!r}"


def _refuse(name: str, kind: str) -> Corrupt:
    where = " (a path outside the archive's folder)" if name.startswith("/") or ".." in name.split("/") else ""
    return Corrupt(f"it holds {name!r}, {kind}{where}, not an image images/NNNNNNNN_NNN.png")


def check_member_size(size: int, label: str) -> None:
    """Raise :class:`Corrupt` when a member declares more bytes than any ChestX-ray14 PNG can have."""
    if size > MAX_MEMBER_BYTES:
        raise Corrupt(
            f"{label} declares {size:,} bytes, more than any ChestX-ray14 PNG can be (at most {MAX_MEMBER_BYTES:,}): "
            "a crafted or damaged archive; it was not read"
        )


def read_member(fileobj: Any, size: int, label: str) -> bytes:
    """Read one member of ``size`` declared bytes in bounded pieces, never more than the cap."""
    check_member_size(size, label)
    parts, got = [], 0
    while got < size:
        piece = fileobj.read(min(READ_CHUNK, size - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    if fileobj.read(1):
        raise Corrupt(f"{label} holds more bytes than the {size:,} its header declares")
    return b"".join(parts)


def read_tar(raw: Any, archive: Archive, expected: set[str], sink: Any, bar: Any, label: str) -> int:
    """Read a gzip tar stream into ``sink``; check names, count, gzip CRC. Returns images read."""
    seen: set[str] = set()
    gz = io.BufferedReader(Gunzip(raw, label), buffer_size=stream.CHUNK)
    try:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                m = MEMBER_RE.match(member.name)
                if not member.isfile() or m is None:
                    raise _refuse(member.name, member_kind(member))
                name = m.group(1)
                if name not in expected:
                    raise Corrupt(
                        f"it holds {name}, which is not one of the {len(expected)} images of {archive.name} "
                        "listed in the release CSV (another archive served under this name?)"
                    )
                if name in seen:
                    raise Corrupt(f"it holds {name} twice")
                seen.add(name)
                check_member_size(member.size, f"{label}:{member.name}")
                if sink.wants(archive, name, member.size):
                    data = read_member(tar.extractfile(member), member.size, f"{label}:{member.name}")
                    sink.put(archive, name, data, f"{label}:{member.name}")
                    bar.update(1)
        while gz.read(stream.CHUNK):
            pass  # to the end of the gzip stream: checks its CRC-32 and length
    except tarfile.TarError as exc:
        raise Corrupt(f"its tar data is damaged ({exc})") from None
    except EOFError as exc:  # pragma: no cover - tarfile raises it for some truncations
        raise Corrupt(f"it ends early ({exc})") from None
    sink.finish()
    if len(seen) != len(expected):
        missing = sorted(expected - seen)
        raise Corrupt(f"it holds {len(seen)} of the {len(expected)} expected images (e.g. {missing[0]} is missing)")
    return len(seen)




__all__ = ["MAX_MEMBER_BYTES", "MEMBER_RE", "ZIP_MEMBER_RE", "check_member_size", "check_png", "member_kind",
           "read_member", "read_tar"]
