"""The node log is one JSON object per line with ts, mono, node and event: start, role, term,
vote, election_won, commit and stop, as docs/contracts.md §2 specifies."""

import json
import signal

from raftnode.localcluster import LocalCluster


def test_elections_votes_commits_and_stop_are_logged_as_json_lines():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        for i in range(5):
            cluster.write(f"/kv/k{i}", {"value": i})
        cluster.wait_until(lambda: any(e["event"] == "commit" and e["index"] >= 6 for e in cluster.log_events(leader)),
                           what="a commit line")
        for node in cluster.ids:
            assert cluster.kill(node, signal.SIGTERM) == 0
        everything = []
        for node in cluster.ids:
            with open(cluster.log_path(node)) as f:
                lines = [json.loads(line) for line in f]
            assert all({"ts", "mono", "node", "event"} <= set(e) for e in lines)
            assert all(e["node"] == node for e in lines)
            kinds = [e["event"] for e in lines]
            assert kinds[0] == "start" and kinds[-1] == "stop"
            everything += lines
        mine = [e for e in everything if e["node"] == leader]
        won = [e for e in mine if e["event"] == "election_won"]
        assert won and won[-1]["term"] >= 1 and leader in won[-1]["votes"]
        assert any(e["event"] == "role" and e["role"] == "leader" and e["leader"] == leader for e in mine)
        assert any(e["event"] == "term" and e["term"] >= 1 for e in mine)
        votes = [e for e in everything if e["event"] == "vote"]
        assert any(v["candidate"] == leader and v["granted"] for v in votes)
        commits = [e for e in mine if e["event"] == "commit"]
        assert commits and commits[-1]["index"] >= 6 and commits[-1]["term"] >= 1
        assert [c["index"] for c in commits] == sorted(c["index"] for c in commits)


def test_commit_lines_are_coalesced_under_load():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        for i in range(200):
            cluster.request(leader, "PUT", f"/kv/k{i}", {"value": i})
        commits = [e for e in cluster.log_events(leader) if e["event"] == "commit"]
        assert len(commits) < 50, "one line per commit would make the log grow with the load"
