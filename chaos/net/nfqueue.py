"""The delay program: holds packets that iptables sends to NFQUEUE and releases them later.

    python3 nfqueue.py --queue 100:80:20 --queue 101:300:0

Each --queue NUM:DELAY_MS:JITTER_MS binds one netfilter queue; every packet it receives is
accepted DELAY_MS +- JITTER_MS (uniform, never below 0) after it arrived, so jitter reorders
packets. It runs in the network namespace whose packets it delays (the controller starts it
there with nsenter) and prints "ready" once every queue is bound.

Failing open, so that a delay never becomes a loss:
- the queues are bound with NFQA_CFG_F_FAIL_OPEN: when the kernel's queue is full, or our
  socket cannot take a packet, the kernel accepts it at once instead of dropping it;
- the iptables rules use --queue-bypass: with no program bound (this one died), packets pass;
- more than MAX_HELD packets held: further packets are accepted at once;
- SIGTERM and SIGINT accept everything held, then exit (a heal loses nothing). SIGKILL cannot
  be caught: the kernel then drops the packets held at that instant (a few, which TCP resends).

Standard library only, no import of the project: it is run by path, by any python3. It speaks
the nfnetlink_queue protocol directly (linux/netfilter/nfnetlink_queue.h).
"""

from __future__ import annotations

import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
NETLINK_NO_ENOBUFS = 5
SOL_NETLINK = 270
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
VERDICT_LEN = 32  # nlmsghdr 16 + nfgenmsg 4 + the verdict attribute 12

KERNEL_QUEUE_LEN = 8192
MAX_HELD = 20000
EXIT_BUSY = 3   # a queue number is bound by another program (the controller picks another)
EXIT_USAGE = 2


def _attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _message(msg_type: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def verdict(queue: int, packet_id: int, seq: int = 0) -> bytes:
    return _message(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)), seq)


def parse_messages(data: bytes):
    """(type, queue, packet id or None, error code or None) for each netlink message."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        end = offset + length
        if msg_type == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            yield "error", seq, None, -code
        elif msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            queue = socket.ntohs(struct.unpack_from("=H", data, offset + 18)[0])
            pos = offset + 20
            packet_id = None
            while pos + 4 <= end:
                attr_len, attr_type = struct.unpack_from("=HH", data, pos)
                if attr_len < 4:
                    break
                if attr_type & 0x3FFF == NFQA_PACKET_HDR:
                    (packet_id,) = struct.unpack_from("!I", data, pos + 4)
                pos += (attr_len + 3) & ~3
            if packet_id is not None:
                yield "packet", queue, packet_id, None
        offset += (length + 3) & ~3


class Delayer:
    def __init__(self, queues: dict[int, tuple[float, float]], rng: random.Random | None = None):
        self.queues = queues
        self.rng = rng or random.Random()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:  # as root, beyond rmem_max: a burst must not overflow the socket
                self.sock.setsockopt(socket.SOL_SOCKET, forced, 8 << 20)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, plain, 8 << 20)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        except OSError:
            pass
        self.held: list[tuple[float, int, int, int]] = []  # (release at, order, queue, packet id)
        self.order = 0
        self.stopping = False
        self.passed_at_once = 0

    def _config(self, queue: int, attrs: bytes, seq: int) -> int:
        """Send one config message and wait for its ack; return the error code (0 = done)."""
        self.sock.send(_message(NFQNL_MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.5)
            if not ready:
                continue
            for kind, ack_seq, _, code in parse_messages(self.sock.recv(1 << 16)):
                if kind == "error" and ack_seq == seq:
                    return code
        return 110  # ETIMEDOUT

    def bind(self) -> None:
        seq = 1
        for queue in sorted(self.queues):
            cmd = _attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, socket.htons(socket.AF_INET)))
            code = self._config(queue, cmd, seq)
            if code:
                raise OSError(code, f"binding queue {queue}: {os.strerror(code)}")
            params = (_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                      + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", KERNEL_QUEUE_LEN))
                      + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
                      + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)))
            code = self._config(queue, params, seq + 1)
            if code:
                raise OSError(code, f"configuring queue {queue}: {os.strerror(code)}")
            seq += 2

    def _hold(self, queue: int, packet_id: int, now: float) -> bytes | None:
        if queue not in self.queues or len(self.held) >= MAX_HELD:
            self.passed_at_once += 1
            return verdict(queue, packet_id)
        delay, jitter = self.queues[queue]
        wait = delay + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        self.order += 1
        heapq.heappush(self.held, (now + max(0.0, wait) / 1000.0, self.order, queue, packet_id))
        return None

    def _release(self, now: float | None) -> None:
        """Accept every held packet due by `now` (all of them when now is None)."""
        out = []
        while self.held and (now is None or self.held[0][0] <= now):
            _, _, queue, packet_id = heapq.heappop(self.held)
            out.append(verdict(queue, packet_id))
            if len(out) >= 64:
                self._send(b"".join(out))
                out = []
        if out:
            self._send(b"".join(out))

    def _send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            # the kernel could not take the batch: one verdict at a time
            for offset in range(0, len(data), VERDICT_LEN):
                try:
                    self.sock.send(data[offset:offset + VERDICT_LEN])
                except OSError:
                    pass  # a verdict for a packet the kernel no longer holds

    def run(self) -> None:
        buffer = bytearray(1 << 18)
        while not self.stopping:
            now = time.monotonic()
            self._release(now)
            timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else 0.5
            try:
                ready, _, _ = select.select([self.sock], [], [], timeout)
            except InterruptedError:
                continue
            if not ready:
                continue
            now = time.monotonic()
            immediate = []
            # drain what is there without blocking: one datagram may carry several packets
            while True:
                try:
                    n = self.sock.recv_into(buffer, len(buffer), socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # ENOBUFS: the kernel accepted what it could not queue (fail-open)
                    continue
                for kind, queue, packet_id, _ in parse_messages(bytes(buffer[:n])):
                    if kind == "packet":
                        out = self._hold(queue, packet_id, now)
                        if out is not None:
                            immediate.append(out)
            if immediate:
                self._send(b"".join(immediate))
        self._release(None)


def parse_queue(text: str) -> tuple[int, float, float]:
    try:
        num, delay, jitter = text.split(":")
        queue, delay_ms, jitter_ms = int(num), float(delay), float(jitter)
    except ValueError:
        raise ValueError(f"--queue wants NUM:DELAY_MS:JITTER_MS, got {text!r}") from None
    if not 0 <= queue <= 65535 or delay_ms < 0 or jitter_ms < 0:
        raise ValueError(f"--queue {text!r}: queue 0..65535, delay and jitter >= 0")
    return queue, delay_ms, jitter_ms


def main(argv: list[str]) -> int:
    queues: dict[int, tuple[float, float]] = {}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag != "--queue" or not args:
            print(f"usage: nfqueue.py --queue NUM:DELAY_MS:JITTER_MS [...] (got {flag!r})", file=sys.stderr)
            return EXIT_USAGE
        try:
            queue, delay, jitter = parse_queue(args.pop(0))
        except ValueError as e:
            print(f"nfqueue: {e}", file=sys.stderr)
            return EXIT_USAGE
        queues[queue] = (delay, jitter)
    if not queues:
        print("usage: nfqueue.py --queue NUM:DELAY_MS:JITTER_MS [...]", file=sys.stderr)
        return EXIT_USAGE
    delayer = Delayer(queues)

    def stop(signum, frame):
        delayer.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        delayer.bind()
    except OSError as e:
        print(f"nfqueue: {e.strerror}", file=sys.stderr, flush=True)
        return EXIT_BUSY if e.errno in (16, 1) else 1  # EBUSY, EPERM: the queue is someone else's
    print("ready", flush=True)
    delayer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
