"""Whatever JSON a results file, config, status poll or node log holds, the report renders it or
names the problem (ReportError); it never crashes and never lets a value out unescaped."""

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from reports import ReportError, render_run
from tests.fixtures.run_factory import history, write_run

HOSTILE = "<script>alert(1)</script>"
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), st.just(HOSTILE))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
known_keys = st.sampled_from(["valid", "reason", "checkers", "linearizable", "keys", "set", "stats", "lost", "anomaly",
                              "visualization", "first_illegal_key", "r0", "by_f", "crashed", "ops", "ms", "unexpected"])
results_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(known_keys, inner, max_size=5)),
                            max_leaves=20)

OPS = history((0, "invoke", "write", "r0", 1, 0.0), (0, "ok", "write", "r0", 1, 0.01),
              (1, "invoke", "read", "r0", None, 0.02), (1, "ok", "read", "r0", 2, 0.03),
              ("nemesis", "invoke", "kill", None, {"target": "leader"}, 0.015),
              ("nemesis", "info", "kill", None, {"nodes": ["n1"]}, 0.016))
OPS.sort(key=lambda d: d["time"])
for i, d in enumerate(OPS):
    d["index"] = i


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(results=st.dictionaries(known_keys, results_like, max_size=5),
       config=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       status=json_values, log_fields=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_arbitrary_json_in_the_run_files_renders_or_is_named(tmp_path_factory, results, config, status, log_fields):
    run_dir = tmp_path_factory.mktemp("run")
    polls = [{"time": OPS[0]["time"], "node": "n1", "status": status if isinstance(status, dict) else None}]
    logs = {"n1": [{"ts": 1.0, "mono": 1.0, "node": "n1", "event": "role", **log_fields}]}
    write_run(run_dir, OPS, results=results, config=config, polls=polls, node_logs=logs)
    try:
        path = render_run(run_dir)
    except ReportError:
        return
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert HOSTILE not in page
    json.dumps(page)  # plain text
