"""Election safety from the node logs: at most one leader per term, at most one vote per voter per term.

The client history cannot show these: a second leader that never acknowledged a write, or a voter
that forgot its vote across a restart (the `forget-vote` seeded bug), leave every client operation
linearizable. Each node logs its votes, role changes and election results (docs/contracts.md §2),
so a run's node logs can.

Only facts a node states about itself are used, never its clock: a granted `vote` event, a `role`
event saying it became candidate (a candidate votes for itself in its new term) or leader, and an
`election_won` event. Lines that are not JSON (a log torn by SIGKILL) are counted and skipped.
"""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict
from typing import Any


def check_node_logs(run_dir: str) -> dict | None:
    """The election-safety result for a run's nodes/<id>/node.log files, or None when there are none.

    A node-log checker of the raftnode DB (systems.raftnode.db): it runs only on runs of our
    node, whose log format it knows; another system's logs are never read as if they were ours."""
    paths = sorted(glob.glob(os.path.join(run_dir, "nodes", "*", "node.log")))
    if not paths:
        return None
    leaders: dict[int, set[str]] = defaultdict(set)
    votes: dict[tuple[str, int], set[str]] = defaultdict(set)
    unreadable = 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                # Most lines are commits; only these events matter, so skip the parse of the rest.
                if '"vote"' not in line and '"role"' not in line and '"election_won"' not in line:
                    continue
                try:
                    ev = json.loads(line)
                    node, term, kind = ev["node"], int(ev["term"]), ev["event"]
                except (ValueError, KeyError, TypeError):
                    unreadable += 1
                    continue
                if kind == "vote" and ev.get("granted"):
                    votes[(node, term)].add(str(ev.get("candidate")))
                elif kind == "role" and ev.get("role") == "candidate":
                    votes[(node, term)].add(node)
                elif kind == "election_won" or (kind == "role" and ev.get("role") == "leader"):
                    leaders[term].add(node)
    two_leaders: list[dict[str, Any]] = [{"term": term, "leaders": sorted(nodes)}
                                         for term, nodes in sorted(leaders.items()) if len(nodes) > 1]
    double_votes: list[dict[str, Any]] = [{"voter": voter, "term": term, "candidates": sorted(candidates)}
                                          for (voter, term), candidates in sorted(votes.items())
                                          if len(candidates) > 1]
    result = {"valid": not two_leaders and not double_votes, "terms_with_two_leaders": two_leaders,
              "double_votes": double_votes, "terms_with_a_leader": len(leaders),
              "elections_won": sum(len(nodes) for nodes in leaders.values()),
              "node_logs": len(paths), "unreadable_lines": unreadable}
    result["name"] = "election-safety"
    if two_leaders:
        t = two_leaders[0]
        result["reason"] = f"two leaders in term {t['term']}: {' and '.join(t['leaders'])}"
    elif double_votes:
        d = double_votes[0]
        result["reason"] = (f"{d['voter']} voted for {' and '.join(d['candidates'])} in term {d['term']} "
                            "(one vote per term)")
    return result
