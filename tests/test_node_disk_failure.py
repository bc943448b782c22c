"""A disk that refuses a write stops the node (exit code 3) instead of acknowledging the write."""

import asyncio
import json
import secrets

from raftnode.localcluster import free_ports
from raftnode.server import NodeOptions, RaftNode, parse_cluster


def test_a_failing_log_write_stops_the_node_and_the_write_is_not_acknowledged(tmp_path):
    peer_port, client_port = free_ports(2)
    opts = NodeOptions(node_id="n1", cluster=parse_cluster(f"n1=127.0.0.1:{peer_port}/127.0.0.1:{client_port}"),
                       client_listen=("127.0.0.1", client_port), peer_listen=("127.0.0.1", peer_port),
                       data_dir=str(tmp_path / "data"), log_file=str(tmp_path / "node.log"), log_stderr=False,
                       peer_secret=secrets.token_bytes(32))

    async def scenario():
        node = RaftNode(opts)
        await node.start()
        for _ in range(300):  # a single voter elects itself
            if node.core.role == "leader" and node.core.commit_index >= 1:
                break
            await asyncio.sleep(0.01)
        assert node.core.role == "leader"

        def broken_disk(*args):
            raise OSError(28, "No space left on device")
        node.storage.persist_batch = broken_disk
        reader, writer = await asyncio.open_connection("127.0.0.1", client_port)
        body = b'{"value": 1}'
        writer.write(b"PUT /kv/a HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the node closes the connection
        writer.close()
        await asyncio.wait_for(node.serve_forever(), 10)
        return node.exit_code, answer

    code, answer = asyncio.run(scenario())
    assert code == 3
    assert b" 200 " not in answer
    events = [json.loads(line) for line in open(tmp_path / "node.log")]
    assert any(e["event"] == "fatal" and "No space left" in e["error"] for e in events)
    assert events[-1]["event"] == "stop"
