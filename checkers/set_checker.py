"""The set checker: after adds of unique elements, does the final read hold exactly what it should?

Per key, against the final read (an ok read marked `"final": true`, else the key's last ok read):
- lost: acknowledged adds (ok) missing from the final read — the serious one;
- unexpected: elements in the final read that nobody tried to add, or whose add certainly failed;
- duplicated: elements present more than once in the final read;
- recovered: indeterminate adds (info, or never completed) that did make it — not an error.
A key without a successful final read makes the verdict unknown (we cannot tell what was lost).
"""

from __future__ import annotations

import json
from typing import Any

from chaos.history import FAIL, INFO, OK, Op, pair_ops


def _k(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return json.dumps(x, sort_keys=True)


def check_set(ops: list[Op], add_f: tuple[str, ...] = ("add", "append"), read_f: str = "read") -> dict:
    adds: dict[Any, dict[Any, str]] = {}
    final: dict[Any, tuple[int, Any, int]] = {}  # key -> (marked final, value read, its index)
    for pair in pair_ops([op for op in ops if not op.is_nemesis]):
        inv, comp = pair.invoke, pair.complete
        key = _k(inv.key)
        if inv.f in add_f:
            adds.setdefault(key, {})[_k(inv.value)] = pair.type
        elif inv.f == read_f and pair.type == OK:
            assert comp is not None  # an ok pair has its completion
            is_final = bool(comp.extra.get("final") or inv.extra.get("final"))
            prev = final.get(key)
            # A marked final read beats an unmarked one; among equals the latest wins.
            if prev is None or is_final >= prev[0]:
                final[key] = (int(is_final), comp.value, comp.index)
    lost, unexpected, duplicated, recovered, missing_final = [], [], [], [], []
    per_key: dict[str, dict] = {}
    for key in sorted(set(adds) | set(final), key=str):
        attempts = adds.get(key, {})
        if key not in final:
            missing_final.append(key)
            continue
        value = final[key][1]
        seen = value if isinstance(value, list) else ([] if value is None else None)
        if seen is None:
            unexpected.append({"key": key, "element": value, "why": "final read is not a list"})
            continue
        counts: dict[Any, int] = {}
        for el in seen:
            counts[_k(el)] = counts.get(_k(el), 0) + 1
        k_lost = sorted((e for e, t in attempts.items() if t == OK and e not in counts), key=str)
        k_unexpected = sorted((e for e in counts if e not in attempts or attempts[e] == FAIL), key=str)
        k_dup = sorted((e for e, c in counts.items() if c > 1), key=str)
        k_rec = sorted((e for e, t in attempts.items() if t == INFO and e in counts), key=str)
        lost += [{"key": key, "element": e} for e in k_lost]
        unexpected += [{"key": key, "element": e, "why": "never added" if e not in attempts else "add failed"}
                       for e in k_unexpected]
        duplicated += [{"key": key, "element": e, "count": counts[e]} for e in k_dup]
        recovered += [{"key": key, "element": e} for e in k_rec]
        per_key[str(key)] = {"attempts": len(attempts), "ok": sum(t == OK for t in attempts.values()),
                             "final_size": len(seen), "lost": len(k_lost), "recovered": len(k_rec)}
    if lost or unexpected or duplicated:
        valid: Any = False
    elif missing_final:
        valid = "unknown"
    else:
        valid = True
    result = {"valid": valid, "lost": lost, "duplicated": duplicated, "unexpected": unexpected,
              "recovered": recovered, "keys": per_key}
    if missing_final:
        result["keys_without_final_read"] = [str(k) for k in missing_final]
    return result
