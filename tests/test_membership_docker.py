"""The bundled node's Membership capability on Docker (issue 12): a node provisioned mid-run is a
container of the run on its network, joins as a learner, is promoted, is partitioned like the
others (its own chain and rules), and the retired one is stopped; teardown leaves nothing."""

import os
import time

import pytest

from chaos.provision.base import LABEL_RUN, docker_client
from systems.raftnode.db import RaftnodeDocker


@pytest.mark.timeout(150)
def test_a_node_added_to_a_docker_cluster_joins_is_partitioned_and_the_retired_one_stops(node_image):
    run_id = f"t-membership-{os.getpid()}"
    db = RaftnodeDocker(run_id, 3, subnet="10.77.223.0/24", image=node_image)
    try:
        nodes = db.setup(3)
        node = db.provision_node()
        assert (node.id, node.address) == ("n4", "10.77.223.14") and node.meta["joined"]
        assert db.add_learner(node)["outcome"] == "ok"
        deadline = time.monotonic() + 30
        while (result := db.promote("n4"))["outcome"] != "ok" and result.get("retry") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert result["outcome"] == "ok", result
        conf = db.configuration()
        assert conf["voters"] == ["n1", "n2", "n3", "n4"] and conf["learners"] == []

        # the new node is in the network layer: a grudge against it is rendered in its namespace
        db.net().drop({"n4": {"n1"}, "n1": {"n4"}})
        rules = "\n".join(db.net().rules(node))
        assert nodes[0].address in rules
        db.net().drop({})

        victim = next(n for n in nodes if n.id != conf["leader"])
        assert db.remove(victim.id)["outcome"] == "ok"
        db.retire_node(victim)
        assert victim.id not in db.net().by_id and victim not in db.nodes
        assert db.docker.containers.get(victim.meta["container"]).status == "exited"
        assert db.configuration()["voters"] == sorted({"n1", "n2", "n3", "n4"} - {victim.id})
        logs = db.collect_logs(victim, os.path.join(os.environ.get("TMPDIR", "/tmp"), run_id, victim.id))
        assert any(path.endswith("node.log") for path in logs)  # a stopped container still gives its logs
    finally:
        db.teardown()
    left = docker_client().containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    assert left == []
