"""Our checkers agree with porcupine on generated histories, valid and broken.

Valid histories come from a real sequential register whose operations overlap in time around the
moment they take effect, with crashes (info) and failures; invalid ones get an injected stale read
(certainly illegal when values are unique) or a lost write (usually illegal).
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import porcupine
from checkers.generate import inject_lost_write, inject_stale_read, register_history
from checkers.prepare import partition
from checkers.search import check_key
from checkers.unique import check_unique


@pytest.fixture(scope="module")
def helper(porcupine_helper):
    return porcupine_helper


def verdicts(ops):
    """Per key: (our search, our unique-values method or None, porcupine)."""
    keys, _ = partition(ops, "register")
    [answers] = porcupine.check_batch([("h", keys, {})], model="register", all_keys=True, timeout_s=60)
    out = {}
    for kh in keys:
        u = check_unique(kh)
        out[kh.key] = (check_key(kh)["valid"], None if u is None else u["valid"],
                       {"ok": True, "illegal": False}.get(answers[kh.key]["result"], "unknown"))
    return out


def assert_agree(per_key):
    for key, (search, unique, porc) in per_key.items():
        assert search in (True, False), f"key {key}: our search did not decide"
        if porc == "unknown":
            continue  # porcupine ran out of its budget: nothing to compare with (we decided)
        assert search == porc, f"key {key}: our search says {search}, porcupine {porc}"
        if unique is not None:
            assert unique == porc, f"key {key}: unique-values method says {unique}, porcupine {porc}"


histories = st.tuples(st.integers(0, 2**32 - 1), st.integers(2, 60), st.integers(1, 6), st.integers(1, 3),
                      st.sampled_from([0.0, 0.1, 0.3]), st.booleans())


def make(params):
    seed, n, procs, keys, p_info, unique = params
    return register_history(seed, n_ops=n, processes=procs, keys=keys, p_info=p_info,
                            unique_values=unique, value_domain=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_generated_valid_histories_are_linearizable_for_every_checker(helper, params):
    per_key = verdicts(make(params))
    assert_agree(per_key)
    assert all(v == (True, v[1], True) for v in per_key.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_injected_stale_read_is_found_by_every_checker(helper, params):
    broken = inject_stale_read(make(params), random.Random(params[0]))
    if broken is None:
        return
    per_key = verdicts(broken)
    assert_agree(per_key)
    if params[5]:  # unique values: the injected read is certainly illegal
        assert any(v[2] is False for v in per_key.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_injected_lost_write_gets_the_same_verdict_from_every_checker(helper, params):
    broken = inject_lost_write(make(params), random.Random(params[0]))
    if broken is not None:
        assert_agree(verdicts(broken))


def test_unique_values_method_agrees_with_search_without_go():
    for seed in range(150):
        rng = random.Random(seed)
        ops = register_history(seed, n_ops=rng.randint(2, 40), processes=rng.randint(1, 5), p_info=0.2)
        for h in filter(None, [ops, inject_stale_read(ops, rng), inject_lost_write(ops, rng)]):
            keys, _ = partition(h, "register")
            for kh in keys:
                u = check_unique(kh)
                assert u is not None
                assert u["valid"] == check_key(kh)["valid"], f"seed {seed}"


kv_histories = st.tuples(st.integers(0, 2**32 - 1), st.integers(2, 60), st.integers(1, 6), st.integers(1, 2),
                         st.sampled_from([0.0, 0.1, 0.3]), st.sampled_from([0.0, 0.2]), st.sampled_from([0.0, 0.3]))


def kv_verdicts(ops):
    from checkers.search import check_key as search
    keys, notes = partition(ops, "kv")
    assert notes["append_mode"] == "concat"
    [answers] = porcupine.check_batch([("h", keys, {})], model="kv", append_mode="concat", init="",
                                      all_keys=True, timeout_s=20)
    out = {}
    for kh in keys:
        u = check_unique(kh, "concat")
        out[kh.key] = (search(kh, "concat")["valid"], None if u is None else u["valid"],
                       {"ok": True, "illegal": False}.get(answers[kh.key]["result"], "unknown"))
    return out


def corrupt_a_get(ops, rng):
    gets = [op for op in ops if op.type == "ok" and op.f == "get" and op.value]
    if not gets:
        return None
    victim = rng.choice(gets)
    pieces = victim.value.split("y")[:-1]
    if len(pieces) < 2:
        victim.value = ""
    else:
        i = rng.randrange(len(pieces) - 1)
        pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
        victim.value = "".join(p + "y" for p in pieces)
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kv_histories)
def test_kv_concat_histories_get_the_same_verdict_from_every_checker(helper, params):
    from checkers.generate import kv_history
    seed, n, procs, keys, p_put, p_info, p_reuse = params
    ops = kv_history(seed, n_ops=n, processes=procs, keys=keys, p_put=p_put, p_info=p_info, p_reuse=p_reuse)
    per_key = kv_verdicts(ops)
    assert_agree(per_key)
    assert all(v[0] is True for v in per_key.values())
    broken = corrupt_a_get(ops, random.Random(seed))
    if broken is not None:
        assert_agree(kv_verdicts(broken))
