"""A follower that caught up through InstallSnapshot restarts from its files (issue 9, bug 1).

The exact report: three nodes with --snapshot-every 50; a follower is killed, 300 keys are
written, it starts again and receives a snapshot beyond its old, shorter log; 10 more keys; it
is killed and started once more. It used to exit with "corrupt log ... entry index 274 where 22
was expected", for good.
"""

import pytest

from raftnode.localcluster import LocalCluster


def _applied(cluster, node):
    status = cluster.status(node)
    return status["last_applied"] if status else -1


@pytest.mark.timeout(120)
def test_a_follower_restarts_after_catching_up_by_install_snapshot():
    with LocalCluster(3, extra_args=("--snapshot-every", "50")) as cluster:
        leader = cluster.wait_for_leader()
        follower = next(n for n in cluster.ids if n != leader)
        cluster.write("/kv/before", {"value": 0})
        cluster.wait_until(lambda: _applied(cluster, follower) >= 2, what="the follower applying the first write")
        cluster.kill(follower)
        for i in range(300):
            cluster.write(f"/kv/k{i}", {"value": i})
        assert cluster.status(leader)["snapshot_index"] > _applied(cluster, follower)

        cluster.start(follower)
        target = cluster.status(leader)["commit_index"]
        cluster.wait_until(lambda: _applied(cluster, follower) >= target, timeout=30,
                           what="the restarted follower catching up")
        assert any(e["event"] == "snapshot_installed" for e in cluster.log_events(follower)), \
            "the follower must have caught up through InstallSnapshot"
        for i in range(300, 310):
            cluster.write(f"/kv/k{i}", {"value": i})
        target = cluster.status(cluster.wait_for_leader())["commit_index"]
        cluster.wait_until(lambda: _applied(cluster, follower) >= target, what="the follower applying 10 more")

        cluster.kill(follower)
        proc = cluster.start(follower)
        cluster.wait_until(lambda: cluster.status(follower) is not None or proc.poll() is not None,
                           timeout=20, what="the follower answering or exiting")
        stderr = open(cluster.stderr_path(follower)).read()
        assert proc.poll() is None, f"the follower could not restart (exit {proc.returncode}): {stderr[-2000:]}"
        cluster.wait_until(lambda: _applied(cluster, follower) >= target, timeout=30,
                           what="the follower catching up after its second restart")

        # It holds every key: alone with one other node it serves them as (or via) the leader.
        cluster.kill(leader)
        new_leader = cluster.wait_for_leader(among=[n for n in cluster.ids if n != leader])
        for i in (0, 150, 299, 305, 309):
            assert cluster.request(new_leader, "GET", f"/kv/k{i}")[:2] == (200, {"value": i})
