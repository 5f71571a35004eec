"""Length-prefixed frames over a pipe, for treesynth's helper process (core/neardup_process.py):
a kind byte, a little-endian uint64 payload length, the payload."""

from __future__ import annotations

import struct
from typing import BinaryIO

FRAME = struct.Struct("<cQ")  # kind, payload length


def read_exact(f: BinaryIO, n: int) -> bytes:
    """``n`` bytes from ``f``; EOFError when it ends first."""
    parts: list[bytes] = []
    while n:
        b = f.read(n)
        if not b:
            raise EOFError
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def send_frame(f: BinaryIO, kind: bytes, *payload: bytes | memoryview) -> None:
    """One frame of ``kind`` whose payload is the parts of ``payload`` in order; flushed."""
    f.write(FRAME.pack(kind, sum(len(p) for p in payload)))
    for p in payload:
        f.write(p)
    f.flush()


def recv_frame(f: BinaryIO) -> tuple[bytes, bytes]:
    """(kind, payload) of the next frame; EOFError at the end of ``f``."""
    kind, n = FRAME.unpack(read_exact(f, FRAME.size))
    return kind, read_exact(f, n)
