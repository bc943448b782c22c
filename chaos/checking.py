"""What a run is checked with besides the workload's checkers: findings about the nodes
(checkers.node_health) and the node-log checkers its DB provides. Shared by the runner and by
`splitbrain check RUN_DIR`, which rebuilds the run's DB from config.json (no resources are
created: a DB's constructor only validates) to ask it for its patterns and checkers."""

from __future__ import annotations

import json
import os

from chaos.history import Op
from chaos.interfaces import DB, LogFiles


def node_checks(run_dir: str, ops: list[Op], db: DB | None) -> list[dict]:
    from checkers.node_health import check_down_nodes, check_log_patterns

    health = check_down_nodes(ops)
    checks: list[dict | None] = [health]
    if isinstance(db, LogFiles):
        damaged = [d["node"] for d in health["expected_down"]]
        checks.append(check_log_patterns(run_dir, db.fatal_log_patterns, skip_nodes=damaged))
        for checker in db.node_log_checkers():
            try:
                checks.append(checker(run_dir))
            except Exception as e:  # noqa: BLE001 - a broken checker is unknown, never a pass
                checks.append({"name": getattr(checker, "__name__", "node-log checker"), "valid": "unknown",
                               "reason": f"{type(e).__name__}: {e}"})
    elif db is None and os.path.isdir(os.path.join(run_dir, "nodes")):
        # Not a verdict: the history's checkers stand; the reader is told what was not looked at.
        checks.append({"name": "node-logs", "valid": True, "skipped": True,
                       "reason": "the run's DB could not be rebuilt here, so its node logs were not checked"})
    return [c for c in checks if c is not None]


def db_of_run(run_dir: str) -> DB | None:
    """The DB a stored run used, rebuilt from its config.json; None when that cannot be done."""
    from chaos.config import RunConfig

    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            doc = json.load(f)
        fields = {k: v for k, v in doc.items() if k in RunConfig.__dataclass_fields__ or k in
                  ("election_timeout", "heartbeat_ms", "pre_vote", "check_quorum")}
        fields["schedule"] = None
        if isinstance(fields.get("nodes"), list):  # synthetic and older runs name the nodes
            fields["nodes"] = len(fields["nodes"])
        config = RunConfig.from_dict(fields)
        from chaos.provision import make_db
        return make_db(config, "recheck")
    except Exception:  # noqa: BLE001 - a foreign or old run: checked without its DB
        return None
