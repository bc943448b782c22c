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

Garbage also means frames that no correct member could send (issue 9, bug 8): any term or index
field at or above 2^63 (a term must stay incrementable: a node that adopted 2^64-1 could not
encode its next election and stopped), entries that are not consecutive from prev_log_index + 1
or whose terms decrease or exceed the message's term, entries in anything but AppendEntries,
chunk bytes in anything but InstallSnapshot, entry data that is not JSON. The encoder refuses the
same fields, so a node never sends what its peers would drop. (The transport also refuses terms
far ahead of the receiver's own: see transport.MAX_TERM_LEAD.)

Connection handshake: before any frame, the connecting node proves it holds the cluster's peer
secret and the listening node proves it too, so only members can speak:

    HELLO      client -> server  b"RNHS" version 1 nonce_c[32] u8 len + src, u8 len + dst,
                                 u8 len + incarnation, u8 len + advertised peer address
    CHALLENGE  server -> client  b"RNHS" version 2 nonce_s[32] mac_s[32]
    PROOF      client -> server  b"RNHS" version 3 mac_c[32]
    REFUSED    server -> client  b"RNHS" version 4 u16 len + reason (UTF-8), then the server closes

mac_x = HMAC-SHA256(secret, label || role || version || src || dst || nonce_c || nonce_s ||
incarnation || address), with role b"S" or b"C" (so neither side's MAC can be reflected as the
other's). Both nonces are fresh per connection, so a recorded handshake cannot be replayed. The
incarnation is the id the connecting node drew on its empty disk (raftnode.membership): after
the proof the server checks it, and the src, against its configuration and answers REFUSED
(with the reason) instead of taking frames when the configuration does not admit them. The
address is where the connecting node listens for its peers: a node that joins and has no
configuration yet answers the leader there. The connection then carries frames from the
authenticated src only. (Frames are not encrypted or individually authenticated: an
attacker who can rewrite TCP streams between members is outside this protection.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

from .jsonenc import compact_encoder
from .membership import config_entry_problem
from .types import (APPEND, APPEND_RESP, COMMAND, CONFIG, NOOP, PRE_VOTE, PRE_VOTE_RESP, REQUEST_VOTE,
                    REQUEST_VOTE_RESP, SNAPSHOT, SNAPSHOT_RESP, TIMEOUT_NOW, Entry, Message)

MAGIC = b"RN"
PROTOCOL_VERSION = 3  # 2: handshake with the cluster secret; bounded terms and indexes
                      # 3: membership (incarnations and addresses in the handshake, REFUSED,
                      #    configuration entries, TimeoutNow, the transfer flag)
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_ID_BYTES = 255
FIELD_LIMIT = 1 << 63  # every term, index, offset and context is below this

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
               APPEND_RESP: 6, SNAPSHOT: 7, SNAPSHOT_RESP: 8, TIMEOUT_NOW: 9}
_KIND_NAMES = {code: name for name, code in _KIND_CODES.items()}
_ENTRY_KIND_CODES = {NOOP: 1, COMMAND: 2, CONFIG: 3}
_ENTRY_KIND_NAMES = {code: name for name, code in _ENTRY_KIND_CODES.items()}

_GRANTED, _SUCCESS, _DONE, _TRANSFER = 1, 2, 4, 8

_json_encode = compact_encoder()
_json_decode = json.JSONDecoder().decode

HANDSHAKE_MAGIC = b"RNHS"
NONCE_BYTES = 32
MAC_BYTES = 32
_HS_HEAD = struct.Struct(">4sBB")  # magic, version, step
_HELLO, _CHALLENGE, _PROOF, _REFUSED = 1, 2, 3, 4
CHALLENGE_SIZE = _HS_HEAD.size + NONCE_BYTES + MAC_BYTES
PROOF_SIZE = _HS_HEAD.size + MAC_BYTES
MAX_HELLO_SIZE = _HS_HEAD.size + NONCE_BYTES + 4 * (1 + MAX_ID_BYTES)
_U16 = struct.Struct(">H")
MAX_REFUSAL_BYTES = 1024
_MAC_LABEL = b"raftnode peer handshake\x00"


class CodecError(ValueError):
    """A frame that is not a valid message of this protocol (garbage, truncated, too large)."""


def _id_bytes(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) > MAX_ID_BYTES:
        raise CodecError(f"node id {name[:40]!r} must be 1 to {MAX_ID_BYTES} bytes of UTF-8")
    return raw


def handshake_mac(secret: bytes, role: bytes, src: str, dst: str, nonce_c: bytes, nonce_s: bytes,
                  incarnation: str = "", address: str = "") -> bytes:
    """The MAC one side sends: role b"S" (listening side) or b"C" (connecting side)."""
    parts = [_MAC_LABEL, role, bytes([PROTOCOL_VERSION])]
    for name in (src, dst):
        raw = name.encode("utf-8")
        parts += [bytes([len(raw)]), raw]
    parts += [nonce_c, nonce_s]
    for text in (incarnation, address):
        raw = text.encode("utf-8")
        parts += [bytes([len(raw)]), raw]
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


def _short_field(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_ID_BYTES:
        raise CodecError(f"{what} {text[:40]!r}... is longer than {MAX_ID_BYTES} bytes")
    return bytes([len(raw)]) + raw


def encode_hello(src: str, dst: str, nonce_c: bytes, incarnation: str = "", address: str = "") -> bytes:
    """`incarnation`: the connecting node's disk id ("" for a tool without one); `address`: its
    advertised peer host:port ("" when it does not listen)."""
    src_raw, dst_raw = _id_bytes(src), _id_bytes(dst)
    return (_HS_HEAD.pack(HANDSHAKE_MAGIC, PROTOCOL_VERSION, _HELLO) + nonce_c
            + bytes([len(src_raw)]) + src_raw + bytes([len(dst_raw)]) + dst_raw
            + _short_field(incarnation, "incarnation") + _short_field(address, "address"))


def _check_handshake_head(buf, step: int) -> None:
    magic, version, got = _HS_HEAD.unpack_from(buf, 0)
    if magic != HANDSHAKE_MAGIC:
        raise CodecError(f"not a peer handshake (starts {bytes(buf[:8])!r}; expected {HANDSHAKE_MAGIC!r})")
    if version != PROTOCOL_VERSION:
        raise CodecError(f"unsupported protocol version {version} in the handshake "
                         f"(this node speaks {PROTOCOL_VERSION})")
    if got != step:
        raise CodecError(f"handshake step {got} where step {step} was expected")


def parse_hello(buf) -> tuple[str, str, bytes, str, str, int] | None:
    """(src, dst, nonce_c, incarnation, address, bytes used) of a complete HELLO at the start of
    buf; None while incomplete. Raises CodecError as soon as the bytes cannot be one."""
    if len(buf) < _HS_HEAD.size:
        if bytes(buf) != HANDSHAKE_MAGIC[:len(buf)]:
            raise CodecError(f"not a peer handshake (starts {bytes(buf[:8])!r}; expected {HANDSHAKE_MAGIC!r})")
        return None
    _check_handshake_head(buf, _HELLO)
    pos = _HS_HEAD.size + NONCE_BYTES
    names = []
    for field in ("node id", "node id", "incarnation", "address"):
        if len(buf) <= pos:
            return None
        n = buf[pos]
        if n == 0 and field == "node id":
            raise CodecError("empty node id in the handshake")
        if len(buf) < pos + 1 + n:
            return None
        try:
            names.append(bytes(buf[pos + 1:pos + 1 + n]).decode("utf-8"))
        except UnicodeDecodeError:
            raise CodecError(f"{field} in the handshake is not UTF-8") from None
        pos += 1 + n
    return names[0], names[1], bytes(buf[_HS_HEAD.size:_HS_HEAD.size + NONCE_BYTES]), names[2], names[3], pos


def encode_challenge(nonce_s: bytes, mac_s: bytes) -> bytes:
    return _HS_HEAD.pack(HANDSHAKE_MAGIC, PROTOCOL_VERSION, _CHALLENGE) + nonce_s + mac_s


def parse_challenge(buf) -> tuple[bytes, bytes]:
    """(nonce_s, mac_s) of the CHALLENGE_SIZE bytes in buf; raises CodecError."""
    _check_handshake_head(buf, _CHALLENGE)
    start = _HS_HEAD.size
    return bytes(buf[start:start + NONCE_BYTES]), bytes(buf[start + NONCE_BYTES:CHALLENGE_SIZE])


def encode_proof(mac_c: bytes) -> bytes:
    return _HS_HEAD.pack(HANDSHAKE_MAGIC, PROTOCOL_VERSION, _PROOF) + mac_c


def parse_proof(buf) -> bytes:
    """mac_c of the PROOF_SIZE bytes in buf; raises CodecError."""
    _check_handshake_head(buf, _PROOF)
    return bytes(buf[_HS_HEAD.size:PROOF_SIZE])


def encode_refused(reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")[:MAX_REFUSAL_BYTES]
    return _HS_HEAD.pack(HANDSHAKE_MAGIC, PROTOCOL_VERSION, _REFUSED) + _U16.pack(len(raw)) + raw


def parse_refused(buf) -> str | None:
    """The reason of a complete REFUSED at the start of buf; None while incomplete. Raises
    CodecError when the bytes cannot be one."""
    head = _HS_HEAD.size + _U16.size
    if len(buf) < _HS_HEAD.size:
        return None
    _check_handshake_head(buf, _REFUSED)
    if len(buf) < head:
        return None
    (n,) = _U16.unpack_from(buf, _HS_HEAD.size)
    if n > MAX_REFUSAL_BYTES:
        raise CodecError(f"a refusal of {n} bytes (at most {MAX_REFUSAL_BYTES})")
    if len(buf) < head + n:
        return None
    return bytes(buf[head:head + n]).decode("utf-8", "replace")


def encode_entry_data(data) -> bytes:
    """JSON bytes of an entry's data (b"" for None); cached on the entry by encode_message."""
    if data is None:
        return b""
    return _json_encode(data).encode("utf-8")


class PreEncoded(dict):
    """A command dict that carries its own JSON encoding (`wire`), built by the HTTP layer from
    the client's body so the leader does not encode every command a second time.

    Only server.parse_write_body builds them, and only from values that pass kv.value_problem's
    rules (finite numbers, nesting at most 100, JSON types): the leader's apply skips that check
    for them (it costs as much as encoding the value again), and the followers, which decode
    the same values from `wire`, reach the same verdict by running it."""

    __slots__ = ("wire",)
    wire: bytes


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
    flags = ((_GRANTED if msg.granted else 0) | (_SUCCESS if msg.success else 0) | (_DONE if msg.done else 0)
             | (_TRANSFER if msg.transfer else 0))
    try:
        fixed = _FIXED.pack(kind, flags, msg.term, msg.last_log_index, msg.last_log_term,
                            msg.prev_log_index, msg.prev_log_term, msg.leader_commit,
                            msg.match_index, msg.conflict_index, msg.conflict_term, msg.context,
                            msg.snapshot_index, msg.snapshot_term, msg.offset, 0)
    except struct.error as exc:
        raise CodecError(f"{msg.kind}: integer field out of range: {exc}") from None
    if max(msg.term, msg.last_log_index, msg.last_log_term, msg.prev_log_index, msg.prev_log_term,
           msg.leader_commit, msg.match_index, msg.conflict_index, msg.conflict_term, msg.context,
           msg.snapshot_index, msg.snapshot_term, msg.offset) >= FIELD_LIMIT:
        raise CodecError(f"{msg.kind}: {_field_problem(_FIXED.unpack(fixed))}")
    if msg.data and msg.kind != SNAPSHOT or msg.entries and msg.kind != APPEND:
        raise CodecError(f"{msg.kind}: {_content_problem(msg.kind, 0, 0, 0, msg.entries, msg.data)}")
    parts = [fixed]
    for name in (msg.src, msg.dst):
        raw = name.encode("utf-8")
        if len(raw) > MAX_ID_BYTES:
            raise CodecError(f"node id too long: {name[:40]!r}...")
        parts.append(_U8.pack(len(raw)))
        parts.append(raw)
    entries = msg.entries
    parts.append(_U32.pack(len(entries)))
    pack_head = _ENTRY_HEAD.pack
    try:
        for entry in entries:
            raw = _entry_data_bytes(entry)
            parts.append(pack_head(entry.index, entry.term, _ENTRY_KIND_CODES[entry.kind], len(raw)))
            parts.append(raw)
    except (struct.error, KeyError, ValueError, TypeError, RecursionError) as exc:
        # e.g. data that is not JSON (NaN, a set) in an entry built in-process: never sent
        raise CodecError(f"{msg.kind}: entry {getattr(entry, 'index', '?')} cannot be encoded: "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from None
    data = msg.data or b""
    parts.append(_U32.pack(len(data)))
    parts.append(bytes(data))
    payload = b"".join(parts)
    if len(payload) > MAX_FRAME_BYTES:
        raise CodecError(f"{msg.kind} frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload


def _field_problem(fields) -> str | None:
    """What is wrong with the unpacked fixed fields (kind and flags excluded), or None."""
    for pos, name in enumerate(_INT_FIELDS, 2):
        if fields[pos] >= FIELD_LIMIT:
            return f"field {name} = {fields[pos]} is not below 2^63"
    if fields[15] != 0:
        return "nonzero padding"
    return None


def _content_problem(kind: str, term: int, prev_index: int, prev_term: int, entries, data) -> str | None:
    """Entries and chunk bytes a correct member could send, or what is wrong with them."""
    if data and kind != SNAPSHOT:
        return f"{len(data)} bytes of snapshot data in a {kind}"
    if not entries:
        return None
    if kind != APPEND:
        return f"{len(entries)} entries in a {kind}"
    expected, last_term = prev_index + 1, prev_term
    for entry in entries:
        if entry.kind == CONFIG:
            problem = config_entry_problem(entry.data)
            if problem is not None:
                return f"entry {entry.index} is not a configuration: {problem}"
        if entry.index != expected:
            return f"entry index {entry.index} where {expected} was expected (entries follow prev_log_index)"
        if entry.term < last_term or entry.term > term:
            return (f"entry {entry.index} has term {entry.term}: terms never decrease along the log "
                    f"(previous {last_term}) nor exceed the message's term {term}")
        expected += 1
        last_term = entry.term
    if expected - 1 >= FIELD_LIMIT:
        return f"entry index {expected - 1} is not below 2^63"
    return None


def decode_message(payload: bytes | memoryview) -> Message:
    """Decode one frame payload (without the 7-byte header). Raises CodecError on any defect."""
    try:
        return _decode(payload)
    except CodecError:
        raise
    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise CodecError(f"malformed payload: {str(exc)[:200]}") from None
    except RecursionError:  # entry data nested deeper than any command can be
        raise CodecError("malformed payload: entry data nested too deeply") from None


def _decode(payload) -> Message:
    size = len(payload)
    if size < _FIXED.size:
        raise CodecError(f"payload of {size} bytes is shorter than the {_FIXED.size}-byte fixed part")
    fields = _FIXED.unpack_from(payload, 0)
    kind = _KIND_NAMES.get(fields[0])
    if kind is None:
        raise CodecError(f"unknown message kind code {fields[0]}")
    flags = fields[1]
    if flags & ~(_GRANTED | _SUCCESS | _DONE | _TRANSFER):
        raise CodecError(f"unknown flag bits {flags:#x}")
    problem = _field_problem(fields)
    if problem is not None:
        raise CodecError(f"{kind}: {problem}")
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
    if entries or data:
        problem = _content_problem(kind, fields[2], fields[5], fields[6], entries, data)
        if problem is not None:
            raise CodecError(f"{kind}: {problem}")
    return Message(kind=kind, src=names[0], dst=names[1], term=fields[2],
                   last_log_index=fields[3], last_log_term=fields[4], prev_log_index=fields[5],
                   prev_log_term=fields[6], entries=entries, leader_commit=fields[7],
                   granted=bool(flags & _GRANTED), success=bool(flags & _SUCCESS),
                   match_index=fields[8], conflict_index=fields[9], conflict_term=fields[10],
                   context=fields[11], snapshot_index=fields[12], snapshot_term=fields[13],
                   offset=fields[14], data=data, done=bool(flags & _DONE),
                   transfer=bool(flags & _TRANSFER))


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
