"""The peer wire protocol: versioned, length-prefixed binary frames that can never execute code.

Frame layout (big-endian):

    magic   2 bytes  b"RN"
    version 1 byte   PROTOCOL_VERSION
    length  4 bytes  payload length, at most MAX_FRAME_BYTES
    payload          one encoded Message (below)

Payload: a fixed struct of the message's scalar fields, then src and dst (length-prefixed UTF-8),
then the entries (index, term, kind, length-prefixed JSON data), then the snapshot chunk bytes.
Entry data is JSON (the KV command dicts are JSON by contract); everything else is fixed-width
integers, so decoding is a handful of struct.unpack_from calls. Nothing here uses pickle or eval:
a malicious or corrupt frame can at worst raise CodecError.

Why not JSON for the whole message: AppendEntries with hundreds of entries is the hot path on
both leader and followers, and a fixed struct halves the encode/decode cost per entry.
"""

from __future__ import annotations

import json
import struct

from .types import (APPEND, APPEND_RESP, COMMAND, NOOP, PRE_VOTE, PRE_VOTE_RESP, REQUEST_VOTE,
                    REQUEST_VOTE_RESP, SNAPSHOT, SNAPSHOT_RESP, Entry, Message)

MAGIC = b"RN"
PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_ID_BYTES = 255

FRAME_HEADER = struct.Struct(">2sBI")
HEADER_SIZE = FRAME_HEADER.size

# kind, flags (granted/success/done bits), then the integer fields in a fixed order.
_FIXED = struct.Struct(">BB14Q")
_INT_FIELDS = ("term", "last_log_index", "last_log_term", "prev_log_index", "prev_log_term",
               "leader_commit", "match_index", "conflict_index", "conflict_term", "context",
               "snapshot_index", "snapshot_term", "offset")
_ENTRY_HEAD = struct.Struct(">QQBI")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64_MAX = (1 << 64) - 1

_KIND_CODES = {REQUEST_VOTE: 1, REQUEST_VOTE_RESP: 2, PRE_VOTE: 3, PRE_VOTE_RESP: 4, APPEND: 5,
               APPEND_RESP: 6, SNAPSHOT: 7, SNAPSHOT_RESP: 8}
_KIND_NAMES = {code: name for name, code in _KIND_CODES.items()}
_ENTRY_KIND_CODES = {NOOP: 1, COMMAND: 2}
_ENTRY_KIND_NAMES = {code: name for name, code in _ENTRY_KIND_CODES.items()}

_GRANTED, _SUCCESS, _DONE = 1, 2, 4

_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_json_decode = json.JSONDecoder().decode


class CodecError(ValueError):
    """A frame that is not a valid message of this protocol (garbage, truncated, too large)."""


def encode_entry_data(data) -> bytes:
    """JSON bytes of an entry's data (b"" for None); cached on the entry by encode_message."""
    if data is None:
        return b""
    return _json_encode(data).encode("utf-8")


class PreEncoded(dict):
    """A command dict that carries its own JSON encoding (`wire`), built by the HTTP layer from
    the client's body so the leader does not encode every command a second time."""

    __slots__ = ("wire",)


def _entry_data_bytes(entry: Entry) -> bytes:
    # The leader encodes each entry for every follower and for its own log: cache the bytes on
    # the entry object (entries are immutable once appended).
    try:
        return entry.__dict__["_wire"]
    except KeyError:
        data = entry.data
        raw = data.wire if type(data) is PreEncoded else encode_entry_data(data)
        entry.__dict__["_wire"] = raw
        return raw


def encode_message(msg: Message) -> bytes:
    """The complete frame (header + payload) for one message."""
    kind = _KIND_CODES.get(msg.kind)
    if kind is None:
        raise CodecError(f"unknown message kind {msg.kind!r}")
    flags = (_GRANTED if msg.granted else 0) | (_SUCCESS if msg.success else 0) | (_DONE if msg.done else 0)
    try:
        parts = [_FIXED.pack(kind, flags, msg.term, msg.last_log_index, msg.last_log_term,
                             msg.prev_log_index, msg.prev_log_term, msg.leader_commit,
                             msg.match_index, msg.conflict_index, msg.conflict_term, msg.context,
                             msg.snapshot_index, msg.snapshot_term, msg.offset, 0)]
    except struct.error as exc:
        raise CodecError(f"{msg.kind}: integer field out of range: {exc}") from None
    for name in (msg.src, msg.dst):
        raw = name.encode("utf-8")
        if len(raw) > MAX_ID_BYTES:
            raise CodecError(f"node id too long: {name[:40]!r}...")
        parts.append(_U8.pack(len(raw)))
        parts.append(raw)
    entries = msg.entries
    parts.append(_U32.pack(len(entries)))
    pack_head = _ENTRY_HEAD.pack
    for entry in entries:
        raw = _entry_data_bytes(entry)
        parts.append(pack_head(entry.index, entry.term, _ENTRY_KIND_CODES[entry.kind], len(raw)))
        parts.append(raw)
    data = msg.data or b""
    parts.append(_U32.pack(len(data)))
    parts.append(bytes(data))
    payload = b"".join(parts)
    if len(payload) > MAX_FRAME_BYTES:
        raise CodecError(f"{msg.kind} frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload


def decode_message(payload: bytes | memoryview) -> Message:
    """Decode one frame payload (without the 7-byte header). Raises CodecError on any defect."""
    try:
        return _decode(payload)
    except CodecError:
        raise
    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise CodecError(f"malformed payload: {exc}") from None


def _decode(payload) -> Message:
    size = len(payload)
    if size < _FIXED.size:
        raise CodecError(f"payload of {size} bytes is shorter than the {_FIXED.size}-byte fixed part")
    fields = _FIXED.unpack_from(payload, 0)
    kind = _KIND_NAMES.get(fields[0])
    if kind is None:
        raise CodecError(f"unknown message kind code {fields[0]}")
    flags = fields[1]
    if flags & ~(_GRANTED | _SUCCESS | _DONE):
        raise CodecError(f"unknown flag bits {flags:#x}")
    pos = _FIXED.size
    names = []
    for _ in range(2):
        (n,) = _U8.unpack_from(payload, pos)
        pos += 1
        if pos + n > size:
            raise CodecError("truncated node id")
        names.append(bytes(payload[pos:pos + n]).decode("utf-8"))
        pos += n
    (count,) = _U32.unpack_from(payload, pos)
    pos += 4
    # Each entry needs at least its 21-byte head: reject absurd counts before allocating.
    if count * _ENTRY_HEAD.size > size - pos:
        raise CodecError(f"entry count {count} does not fit in the payload")
    entries = []
    unpack_head = _ENTRY_HEAD.unpack_from
    for _ in range(count):
        index, term, ekind, n = unpack_head(payload, pos)
        pos += _ENTRY_HEAD.size
        if pos + n > size:
            raise CodecError(f"truncated entry data at index {index}")
        ename = _ENTRY_KIND_NAMES.get(ekind)
        if ename is None:
            raise CodecError(f"unknown entry kind code {ekind} at index {index}")
        if n:
            raw = bytes(payload[pos:pos + n])
            data = _json_decode(raw.decode("utf-8"))
        else:
            raw = b""
            data = None
        pos += n
        entry = Entry(index, term, ename, data)
        entry.__dict__["_wire"] = raw
        entries.append(entry)
    (n,) = _U32.unpack_from(payload, pos)
    pos += 4
    if pos + n != size:
        raise CodecError(f"payload length mismatch: {size - pos} bytes left for a {n}-byte chunk")
    data = bytes(payload[pos:pos + n])
    return Message(kind=kind, src=names[0], dst=names[1], term=fields[2],
                   last_log_index=fields[3], last_log_term=fields[4], prev_log_index=fields[5],
                   prev_log_term=fields[6], entries=entries, leader_commit=fields[7],
                   granted=bool(flags & _GRANTED), success=bool(flags & _SUCCESS),
                   match_index=fields[8], conflict_index=fields[9], conflict_term=fields[10],
                   context=fields[11], snapshot_index=fields[12], snapshot_term=fields[13],
                   offset=fields[14], data=data, done=bool(flags & _DONE))


class FrameDecoder:
    """Incremental decoder for a byte stream: feed() bytes, get back the complete messages.

    Raises CodecError for a bad magic, an unknown version, an oversized length or a payload that
    does not decode; the caller drops the connection (the stream cannot be resynchronised).
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES):
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            magic, version, length = FRAME_HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                raise CodecError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})")
            if version != PROTOCOL_VERSION:
                raise CodecError(f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")
            if length > self.max_frame:
                raise CodecError(f"frame of {length} bytes exceeds the {self.max_frame}-byte limit")
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            with memoryview(buf) as view:
                out.append(decode_message(view[start:start + length]))
            pos = start + length
        if pos:
            del buf[:pos]
        return out

    def check_eof(self) -> None:
        """Call at end of stream: leftover bytes mean the peer sent a truncated frame."""
        if self._buf:
            raise CodecError(f"connection closed inside a frame ({len(self._buf)} bytes pending)")
