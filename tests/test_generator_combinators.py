"""Generator combinators mean what their one-line docstrings say, run in virtual time by
chaos.generator.simulate (no threads, 1 ms per op unless a test scripts otherwise)."""

import itertools

import pytest

from chaos.generator import (EMPTY, PENDING, Context, Generator, GeneratorError, any_of, before,
                             clients, cycle, delay, each_process, each_thread, filter_ops,
                             flip_flop, lift, limit, log_message, map_ops, mix, nemesis,
                             nemesis_and_clients, on_threads, once, phases, repeat, reserve,
                             rotating_keys, sequence, series, simulate, sleep, sleep_until, stagger,
                             synchronize, then, then_keys, time_limit, until_ok)

MS = 1_000_000


def invokes(history):
    return [op for op in history if op.type == "invoke"]


def fs(history):
    return [op.f for op in invokes(history)]


def sim(gen, concurrency=2, seed=1, **kw):
    return simulate(gen, concurrency=concurrency, seed=seed, **kw)


# -- plain values ---------------------------------------------------------------------------------

def test_a_dict_is_one_invocation_on_a_free_process_with_extra_fields_kept():
    [inv, done] = sim({"f": "read", "key": "r0", "final": True})
    assert (inv.type, inv.f, inv.key, inv.process, inv.time) == ("invoke", "read", "r0", 0, 0)
    assert inv.extra == {"final": True}
    assert (done.type, done.process, done.time) == ("ok", 0, MS)


def test_a_list_runs_its_generators_one_after_another_without_waiting():
    h = sim([{"f": "a"}, {"f": "b"}, {"f": "c"}], concurrency=3)
    assert fs(h) == ["a", "b", "c"]
    assert [op.time for op in invokes(h)] == [0, 0, 0]  # concurrent: no synchronization


def test_a_function_is_called_for_every_op_and_may_end_by_returning_none():
    h = sim(limit(3, lambda ctx: {"f": "write", "value": ctx.rng.randrange(10**9)}), concurrency=1)
    values = [op.value for op in invokes(h)]
    assert len(values) == 3 and len(set(values)) == 3
    assert fs(sim(clients(lambda ctx: {"f": "first"} if ctx.time == 0 else None), concurrency=1)) == ["first"]


def test_a_function_may_be_called_without_dispatching_so_it_must_keep_no_state():
    calls = []
    h = sim(clients(limit(1, lambda: calls.append(1) or {"f": "w", "time": 5 * MS})), concurrency=1)
    assert len(invokes(h)) == 1 and len(calls) == 2  # asked, held until 5 ms, asked again


def test_a_function_without_arguments_is_fine_and_may_return_a_generator():
    h = sim(limit(2, lambda: [{"f": "x"}, {"f": "y"}]), concurrency=1)
    assert fs(h) == ["x", "y"]


def test_bad_generators_are_refused_with_a_clear_error():
    with pytest.raises(GeneratorError, match="needs f"):
        lift({"key": "r0"})
    with pytest.raises(GeneratorError, match="cannot use int"):
        lift(5)
    with pytest.raises(GeneratorError, match="not Op objects"):
        from chaos.history import Op
        lift(Op(process=0, type="invoke", f="read"))


def test_a_dict_with_no_free_process_is_pending():
    ctx = Context(0, (0,), (), {0: 0}, 1)
    assert lift({"f": "read"}).op(ctx)[0] is PENDING
    assert EMPTY.op(ctx)[0] is None


# -- counting and time ------------------------------------------------------------------------------

def test_limit_and_once_bound_the_number_of_ops():
    assert len(invokes(sim(limit(7, repeat({"f": "r"}))))) == 7
    assert len(invokes(sim(once(repeat({"f": "r"}))))) == 1
    assert len(invokes(sim(limit(0, repeat({"f": "r"}))))) == 0


def test_repeat_asks_its_generator_afresh_each_time():
    h = sim(repeat(lambda ctx: {"f": "r", "value": ctx.rng.randrange(10**9)}, times=5))
    values = [op.value for op in invokes(h)]
    assert len(values) == 5 and len(set(values)) == 5


def test_cycle_restarts_a_finished_generator_from_its_beginning():
    assert fs(sim(cycle([{"f": "a"}, {"f": "b"}], times=3), concurrency=1)) == ["a", "b"] * 3
    assert fs(sim(limit(5, cycle([{"f": "a"}, {"f": "b"}])), concurrency=1)) == ["a", "b", "a", "b", "a"]
    assert fs(sim(cycle([]))) == []  # an empty generator cycled is empty, not a hang


def test_time_limit_counts_from_the_first_op():
    gen = clients([sleep(0.5), time_limit(0.1, repeat({"f": "r"}))])
    times = [op.time for op in invokes(sim(gen, concurrency=1))]
    assert times[0] == 500 * MS and max(times) < 600 * MS
    assert len(times) == 100  # 1 ms each, back to back


def test_before_cuts_at_an_absolute_time():
    times = [op.time for op in invokes(sim(clients([sleep(0.2), before(0.25, repeat({"f": "r"}))]), concurrency=1))]
    assert min(times) == 200 * MS and max(times) < 250 * MS


def test_delay_spaces_ops_evenly_over_all_threads():
    times = [op.time for op in invokes(sim(limit(5, delay(0.1, repeat({"f": "r"}))), concurrency=4))]
    assert times == [0, 100 * MS, 200 * MS, 300 * MS, 400 * MS]


def test_stagger_spaces_ops_by_random_gaps_averaging_dt():
    times = [op.time for op in invokes(sim(time_limit(10, stagger(0.01, repeat({"f": "r"}))), concurrency=8))]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 800 < len(times) < 1200  # about one per 10 ms for 10 s
    assert all(0 <= g < 20 * MS + MS for g in gaps)


def test_sleep_holds_one_thread_and_is_not_recorded():
    h = sim(clients([sleep(0.3), {"f": "after"}]), concurrency=1)
    assert fs(h) == ["after"] and invokes(h)[0].time == 300 * MS
    h = sim(clients([sleep(0.3), {"f": "other thread"}]), concurrency=2)
    assert invokes(h)[0].time == 0  # a plain sequence does not wait: another thread is free
    h = sim(phases(clients(sleep(0.3)), {"f": "after the phase"}), concurrency=2)
    assert invokes(h)[0].time == 300 * MS


def test_sleep_until_waits_for_an_absolute_time_or_not_at_all():
    h = sim(clients([sleep_until(0.2), {"f": "a"}, sleep_until(0.1), {"f": "b"}]), concurrency=1)
    assert [(op.f, op.time) for op in invokes(h)] == [("a", 200 * MS), ("b", 201 * MS)]


def test_log_takes_no_thread_and_is_not_recorded(caplog):
    with caplog.at_level("INFO", logger="chaos.generator"):
        h = sim([log_message("healing now"), {"f": "heal"}], concurrency=1)
    assert fs(h) == ["heal"]


# -- structure --------------------------------------------------------------------------------------

def test_phases_start_only_when_the_previous_phase_has_completed():
    def slow(op):
        return ("ok", None, 50 * MS if op.f == "slow" else MS)

    h = sim(phases([{"f": "slow"}, {"f": "fast"}], {"f": "next"}), concurrency=3, respond=slow)
    slow_done = next(op.time for op in h if op.type == "ok" and op.f == "slow")
    assert invokes(h)[-1].f == "next" and invokes(h)[-1].time == slow_done


def test_then_and_synchronize_wait_but_sequence_does_not():
    respond = lambda op: ("ok", None, 10 * MS)  # noqa: E731
    assert invokes(sim(then({"f": "a"}, {"f": "b"}), respond=respond))[1].time == 10 * MS
    assert invokes(sim(sequence({"f": "a"}, {"f": "b"}), respond=respond))[1].time == 0
    assert invokes(sim([{"f": "a"}, synchronize({"f": "b"})], respond=respond))[1].time == 10 * MS


def test_clients_and_nemesis_keep_to_their_threads():
    h = sim(nemesis_and_clients(repeat({"f": "kill"}, times=3), repeat({"f": "read"}, times=10)), concurrency=3)
    assert {op.process for op in invokes(h) if op.f == "kill"} == {"nemesis"}
    assert {op.process for op in invokes(h) if op.f == "read"} <= {0, 1, 2}
    assert len([op for op in invokes(h) if op.f == "read"]) == 10
    assert fs(sim(nemesis({"f": "x"}))) == ["x"] and invokes(sim(clients({"f": "x"})))[0].process == 0


def test_on_threads_restricts_to_the_chosen_threads():
    h = sim(on_threads(lambda t: t in (1, 3), repeat({"f": "r"}, times=20)), concurrency=4)
    assert {op.process for op in invokes(h)} == {1, 3}


def test_any_of_takes_the_soonest_op_of_any_generator():
    h = sim(any_of({"f": "late", "time": 500 * MS}, {"f": "early", "time": 100 * MS}), concurrency=2)
    assert [(op.f, op.time) for op in invokes(h)] == [("early", 100 * MS), ("late", 500 * MS)]


def test_each_thread_gives_every_thread_its_own_copy():
    h = sim(clients(each_thread([{"f": "a"}, {"f": "b"}])), concurrency=3)
    for process in range(3):
        assert [op.f for op in invokes(h) if op.process == process] == ["a", "b"]


def test_each_process_starts_a_fresh_copy_for_a_retired_process():
    h = sim(clients(each_process(limit(2, repeat({"f": "r"})))), concurrency=1,
            respond=lambda op: ("info" if op.process == 0 else "ok", None, MS))
    assert [op.process for op in invokes(h)] == [0, 1, 1]  # 0 retired after its info


def test_reserve_gives_each_generator_its_own_thread_range():
    h = sim(clients(reserve(2, repeat({"f": "w"}), 1, repeat({"f": "c"}), repeat({"f": "r"}))),
            concurrency=6, until_ns=100 * MS)
    threads = {f: {op.process % 6 for op in invokes(h) if op.f == f} for f in "wcr"}
    assert threads == {"w": {0, 1}, "c": {2}, "r": {3, 4, 5}}


def test_reserve_asking_for_more_threads_than_there_are_is_an_error():
    with pytest.raises(GeneratorError, match="reserve wants 5 threads"):
        sim(clients(reserve(5, {"f": "w"}, {"f": "r"})), concurrency=3)
    with pytest.raises(GeneratorError, match="pairs"):
        reserve(2, {"f": "w"})


def test_until_ok_stops_at_the_first_ok():
    answers = iter(["fail", "info", "fail", "ok", "ok"])
    h = sim(until_ok(repeat({"f": "read"})), concurrency=1, respond=lambda op: (next(answers), None, MS))
    assert [op.type for op in h if op.type != "invoke"] == ["fail", "info", "fail", "ok"]


def test_flip_flop_alternates_and_stops_when_a_side_runs_out():
    assert fs(sim(flip_flop(repeat({"f": "a"}), [{"f": "b"}, {"f": "b"}]), concurrency=1)) == ["a", "b", "a", "b", "a"]


def test_mix_follows_its_weights_and_drops_exhausted_branches():
    h = sim(limit(4000, mix([repeat({"f": "r"}), repeat({"f": "w"})], weights=[3, 1])), concurrency=4)
    share = fs(h).count("r") / 4000
    assert 0.72 < share < 0.78
    assert sorted(fs(sim(mix([{"f": "a"}, {"f": "b"}, {"f": "c"}])))) == ["a", "b", "c"]
    with pytest.raises(GeneratorError, match="weights"):
        mix([{"f": "a"}], weights=[1, 2])


def test_filter_and_map_see_only_invocations():
    gen = map_ops(lambda op: (setattr(op, "value", op.value * 10), op)[1],
                  filter_ops(lambda op: op.value % 2 == 0, series(lambda i: {"f": "w", "value": i})))
    assert [op.value for op in invokes(sim(limit(3, gen)))] == [0, 20, 40]


def test_series_hands_out_consecutive_values():
    assert [op.value for op in invokes(sim(limit(4, series(lambda i: {"f": "add", "value": i}, start=7))))] \
        == [7, 8, 9, 10]


def test_rotating_keys_bounds_ops_per_key_and_moves_to_fresh_keys():
    h = sim(limit(600, rotating_keys(lambda key: repeat({"f": "r", "key": key}), keys=3, ops_per_key=50,
                                     prefix="k")), concurrency=4)
    counts = {}
    for op in invokes(h):
        counts[op.key] = counts.get(op.key, 0) + 1
    assert max(counts.values()) <= 50
    assert set(counts) == {f"k{i}" for i in range(len(counts))} and len(counts) >= 12


def test_then_keys_reads_every_key_the_load_touched_after_the_load_completed():
    load = limit(30, series(lambda i: {"f": "add", "key": f"s{i // 10}", "value": i}))
    h = sim(then_keys(clients(load), lambda keys: [{"f": "read", "key": k} for k in keys]), concurrency=3)
    reads = [op for op in invokes(h) if op.f == "read"]
    assert [op.key for op in reads] == ["s0", "s1", "s2"]
    last_add_done = max(op.time for op in h if op.f == "add" and op.type == "ok")
    assert min(op.time for op in reads) >= last_add_done


class Stuck(Generator):
    """Always waiting for an event that will never come."""

    def op(self, ctx):
        return PENDING, self


def test_a_generator_that_can_never_go_on_is_reported_not_waited_on_forever():
    with pytest.raises(GeneratorError, match="pending but no operation is in flight"):
        sim(clients([{"f": "r"}, Stuck()]))


def test_a_generator_no_thread_may_run_is_empty():
    assert sim(clients(on_threads(lambda t: False, repeat({"f": "r"})))) == []
    assert fs(sim(any_of(clients(nemesis({"f": "never"})), {"f": "x"}))) == ["x"]
