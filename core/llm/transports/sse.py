"""Server-sent events, as a streamed chat completion arrives: bytes in, each event's data out.

The subset of the format that OpenAI-compatible servers (OpenAI, vLLM, llama.cpp's and llama-cpp-python's
servers, Ollama) write: ``data:`` lines (several lines of one event joined with newlines), events ended
by a blank line, lines ended by LF, CRLF or CR, comments (``: ping``) and other fields (``event:``,
``id:``, ``retry:``) ignored. Pure: no I/O, so the http transport feeds it whatever its socket reads,
split anywhere (a chunk may end inside a line or hold many events).
"""

from __future__ import annotations

DONE = b"[DONE]"  # OpenAI's last event: the stream ends here


class SSEReader:
    """Splits a byte stream into events' data fields (see the module docstring)."""

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event ``chunk`` completes, in order (comments and data-less events give none)."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # a CR may be the first half of a CRLF: wait for the next byte
                self._buf = buf
                return []
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()  # the unfinished last line (b"" when the chunk ended a line)
        out: list[bytes] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[bytes]:
        """At the end of the stream: the data of an event the server did not end with a blank line."""
        out: list[bytes] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r"), out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if not line:
            if self._data:
                out.append(b"\n".join(self._data))
                self._data = []
            return
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # a comment (":"), another field or a stray line: nothing to keep
