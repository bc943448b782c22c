"""A damaged record in the middle of the log is a fatal start-up error naming the file and offset:
the node refuses to start rather than silently dropping acknowledged entries."""

import glob
import os
import struct
import subprocess

from raftnode.localcluster import LocalCluster
from raftnode.storage import SEGMENT_MAGIC


def record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], len(SEGMENT_MAGIC)
    while pos + 8 <= len(data):
        offsets.append(pos)
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 8 + length
    return offsets


def test_a_flipped_byte_in_a_middle_record_stops_the_node_with_file_and_offset():
    with LocalCluster(3) as cluster:
        for i in range(10):
            cluster.write(f"/kv/k{i}", {"value": i})
        leader = cluster.wait_for_leader()
        victim = next(n for n in cluster.ids if n != leader)
        cluster.wait_until(lambda: cluster.status(victim)["last_applied"] >= 11, what="replication")
        cluster.kill(victim)
        segment = sorted(glob.glob(os.path.join(cluster.data_dir(victim), "log-*.seg")))[-1]
        data = bytearray(open(segment, "rb").read())
        offsets = record_offsets(bytes(data))
        assert len(offsets) >= 3
        bad = offsets[len(offsets) // 2]
        data[bad + 10] ^= 0x20
        open(segment, "wb").write(bytes(data))
        proc = cluster.start(victim)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError("the node started on a corrupt log") from None
        assert code == 2
        stderr = open(cluster.stderr_path(victim)).read()
        assert segment in stderr and f"offset {bad}" in stderr
        assert open(segment, "rb").read() == bytes(data), "the log must be left untouched for inspection"
        # the rest of the cluster is unaffected
        assert cluster.write("/kv/after", {"value": 1})[0] == 200
