"""A leader whose uncommitted log is full answers writes with 503 overloaded (nothing appended)."""

import asyncio
import dataclasses
import json
import secrets
import threading

import pytest

from raftnode.core import RaftCore
from raftnode.localcluster import free_ports
from raftnode.server import NodeOptions, RaftNode, parse_cluster


async def _put(port: int, key: str, value) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"value": value}).encode()
    writer.write(b"PUT /kv/%s HTTP/1.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (key.encode(), len(body), body))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


@pytest.mark.timeout(60)
def test_a_write_past_the_uncommitted_bound_is_answered_503_overloaded(tmp_path):
    peer_port, client_port = free_ports(2)
    opts = NodeOptions(node_id="n1", cluster=parse_cluster(f"n1=127.0.0.1:{peer_port}/127.0.0.1:{client_port}"),
                       client_listen=("127.0.0.1", client_port), peer_listen=("127.0.0.1", peer_port),
                       data_dir=str(tmp_path / "data"), log_file=str(tmp_path / "node.log"),
                       log_stderr=False, peer_secret=secrets.token_bytes(32))

    def small_backlog_core(config, state, rng):
        return RaftCore(dataclasses.replace(config, max_uncommitted_bytes=10), state, rng)

    async def scenario():
        node = RaftNode(opts, core_factory=small_backlog_core)
        await node.start()
        try:
            for _ in range(300):  # a single voter elects itself and commits its no-op
                if node.core.role == "leader" and node.core.commit_index >= 1:
                    break
                await asyncio.sleep(0.01)
            assert node.core.role == "leader"
            # Hold the disk: the next entry stays uncommitted (a single voter commits on fsync).
            disk_free = threading.Event()
            run_ops = node._run_storage_ops

            def slow_disk(ops):
                disk_free.wait(20)
                run_ops(ops)
            node._run_storage_ops = slow_disk
            first = asyncio.ensure_future(_put(client_port, "a", 1))
            for _ in range(300):
                if node.core.uncommitted_bytes:
                    break
                await asyncio.sleep(0.01)
            last = node.core.last_log_index
            second = await _put(client_port, "b", 2)
            assert node.core.last_log_index == last, "the refused write was not appended"
            disk_free.set()
            return second, await first
        finally:
            node.stop("test over")
            await asyncio.wait_for(node.serve_forever(), 10)

    (status, body), (first_status, _) = asyncio.run(scenario())
    assert status == 503 and body["error"] == "overloaded"
    assert first_status == 200, "the write already in the log completes"
