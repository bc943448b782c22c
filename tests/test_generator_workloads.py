"""The register and set workloads expressed as generators: the register mix (40/30/30) over
rotating keys with unique values per key, the set's unique adds over rotating keys, the rate as
a stagger, and the final reads of every key used -- all deterministic for a seed."""

from types import SimpleNamespace

from chaos.generator import clients, limit, simulate, then_keys, time_limit
from workloads.register import register_final_generator, register_generator
from workloads.set import set_final_generator, set_generator

MS = 1_000_000


def config(**kw):
    base = dict(keys=5, ops_per_key=200, elements_per_key=100, rate=None, final_read_timeout=30)
    return SimpleNamespace(**{**base, **kw})


def invokes(gen, concurrency=4, seed=1, **kw):
    return [op for op in simulate(gen, concurrency=concurrency, seed=seed, **kw) if op.type == "invoke"]


def test_register_ops_mix_reads_writes_and_cas_40_30_30():
    ops = invokes(limit(6000, register_generator(config(keys=3, ops_per_key=10**6))))
    share = {f: sum(op.f == f for op in ops) / len(ops) for f in ("read", "write", "cas")}
    assert abs(share["read"] - 0.4) < 0.03
    assert abs(share["write"] - 0.3) < 0.03 and abs(share["cas"] - 0.3) < 0.03


def test_register_values_are_unique_per_key_and_a_cas_expects_an_earlier_one():
    per_key = {}
    for op in invokes(limit(3000, register_generator(config(keys=3, ops_per_key=1000)))):
        if op.f == "write":
            per_key.setdefault(op.key, []).append(op.value)
        elif op.f == "cas":
            expected, new = op.value
            assert 1 <= expected < new and new - expected <= 4
            per_key.setdefault(op.key, []).append(new)
    for values in per_key.values():
        assert values == list(range(1, len(values) + 1))


def test_a_fresh_register_key_is_written_before_any_cas():
    first = {}
    for op in invokes(limit(2000, register_generator(config(keys=2, ops_per_key=50)))):
        if op.f != "read":
            first.setdefault(op.key, op)
    assert all(op.f == "write" and op.value == 1 for op in first.values())


def test_register_keys_get_a_bounded_number_of_ops_then_rotate():
    counts = {}
    for op in invokes(limit(5000, register_generator(config(keys=5, ops_per_key=200)))):
        counts[op.key] = counts.get(op.key, 0) + 1
    assert max(counts.values()) <= 200 and len(counts) >= 25
    assert set(counts) == {f"r{i}" for i in range(len(counts))}
    assert sum(1 for c in counts.values() if c < 200) <= 5  # only the keys still in use


def test_register_ops_are_seeded():
    gen = lambda: limit(500, register_generator(config()))  # noqa: E731
    ops = lambda seed: [(o.process, o.f, o.key, o.value) for o in invokes(gen(), seed=seed)]  # noqa: E731
    assert ops(3) == ops(3) and ops(3) != ops(4)


def test_set_adds_unique_elements_and_changes_key_every_elements_per_key():
    ops = invokes(limit(250, set_generator(config())))
    assert all(op.f == "add" for op in ops)
    assert [op.value for op in ops] == list(range(250))
    assert [op.key for op in ops] == ["s0"] * 100 + ["s1"] * 100 + ["s2"] * 50


def test_a_rate_paces_the_workload_over_all_threads():
    ops = invokes(time_limit(5, register_generator(config(rate=100))), concurrency=10)
    assert 400 < len(ops) < 600  # about 100 ops/s for 5 s, whatever the concurrency
    ops = invokes(time_limit(5, set_generator(config(rate=20))), concurrency=10)
    assert 70 < len(ops) < 130


def test_the_final_reads_read_every_key_the_load_used_until_ok_on_one_thread():
    answers = iter(["fail", "fail"])

    def respond(op):
        if op.extra.get("final"):
            return next(answers, "ok"), [], MS
        return "ok", op.value, MS

    cfg = config(elements_per_key=10)
    gen = then_keys(limit(35, set_generator(cfg)), lambda keys: set_final_generator(keys, cfg))
    history = simulate(gen, concurrency=4, seed=1, respond=respond)
    finals = [op for op in history if op.type == "invoke" and op.extra.get("final")]
    assert [op.key for op in finals] == ["s0", "s0", "s0", "s1", "s2", "s3"]  # retried until ok
    assert len({op.process for op in finals}) == 1


def test_the_final_reads_give_up_after_their_timeout():
    cfg = config(final_read_timeout=0.5)
    history = simulate(register_final_generator(["r0", "r1"], cfg), concurrency=2, seed=1,
                       respond=lambda op: ("fail", None, 10 * MS))
    reads = [op for op in history if op.type == "invoke"]
    assert {op.key for op in reads} == {"r0"} and 45 <= len(reads) <= 51
    assert max(op.time for op in reads) < 500 * MS


def test_the_workloads_run_on_client_threads_only():
    ops = invokes(limit(50, register_generator(config())), concurrency=3)
    assert {op.process for op in ops} <= {0, 1, 2}
    ops = invokes(clients(limit(50, set_generator(config()))), concurrency=3)
    assert "nemesis" not in {op.process for op in ops}
