"""The node's HTTP API under fuzzing (issue 9): schemathesis cases from docs/openapi.yaml in
positive and negative mode, then raw requests no schema can express (non-finite numbers, deep
nesting, lying Content-Length, invalid UTF-8, garbage). No answer is an undocumented 5xx, every
schemathesis case is answered as documented, and after each batch every node is alive and the
cluster serves a write and a linearizable read. (bench/fuzz_node.py runs the same for longer.)"""

import random

import pytest

import node_fuzz
from raftnode.localcluster import LocalCluster



@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, extra_args=("--request-timeout", "5000")) as c:
        c.wait_for_leader()
        yield c


@pytest.fixture(scope="module")
def schema():
    return node_fuzz.load_schema()


def assert_clean(stats: node_fuzz.FuzzStats) -> None:
    assert not stats.server_errors, "undocumented 5xx answers:\n" + "\n".join(map(str, stats.server_errors[:20]))
    assert not stats.conformance, "answers that contradict docs/openapi.yaml:\n" + "\n".join(
        map(str, stats.conformance[:20]))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_cases_are_answered_as_documented_and_never_with_a_server_error(cluster, schema, mode):
    stats = node_fuzz.FuzzStats()
    node_fuzz.api_batch(cluster, schema, mode, examples=300, stats=stats, seed=20240 + len(mode))
    print(mode, stats.summary())
    assert stats.requests >= 300
    assert_clean(stats)
    node_fuzz.check_cluster_serves(cluster, f"schemathesis {mode}")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_raw_hostile_requests_never_get_a_server_error_and_the_cluster_keeps_serving(cluster, seed):
    stats = node_fuzz.FuzzStats()
    node_fuzz.raw_batch(cluster, random.Random(seed), count=400, stats=stats)
    print(seed, stats.summary())
    assert stats.statuses[400] > 0 and stats.statuses[200] + stats.statuses[307] > 0  # it reached the node
    assert_clean(stats)
    node_fuzz.check_cluster_serves(cluster, f"raw batch {seed}")
