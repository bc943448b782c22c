"""Generators as values, in the spirit of Jepsen's jepsen.generator.

A generator is an immutable value with two methods:

    gen.op(ctx)            -> (op, gen')       an operation it wants to run next, and its state
                                               once that operation is dispatched
                           -> (PENDING, gen')  nothing until some event happens (a completion)
                           -> (None, _)        exhausted, for good
    gen.update(ctx, event) -> gen'             every dispatched invocation and every completion

`op` is pure: asked twice with the same context it gives the same answer, and asking changes
nothing (the interpreter only keeps gen' when it dispatches the op). That is what makes a run
reproducible: for a seed, the same events in the same order give the same operations.

Plain values are generators (`lift`):

    {"f": "read", "key": "r0"}   one operation (other keys land in Op.extra; "time" is ns
                                 since the run started, and holds the op until then)
    fn(ctx) or fn()              called whenever an op is wanted; its result (a dict, a
                                 generator, or None for "exhausted") is run to exhaustion,
                                 then fn is called again. It is also called when its op will
                                 not be dispatched yet, so it must keep no state: randomness
                                 comes from ctx.rng, state lives in a Generator value
    [g1, g2, ...] / (g1, ...)    g1 until exhausted, then g2, ... (no synchronization)
    None                         exhausted

Time is in nanoseconds since the run started (`ctx.time`); durations given to combinators are
seconds. An emitted op whose time lies in the future is held by the interpreter until then
(unless an event comes first, in which case the generator is asked again). PENDING means only
an event can change the answer: to wait for a time, emit an op with that time.
"""

from __future__ import annotations

import bisect
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from chaos.history import INVOKE, NEMESIS, OK, Op

log = logging.getLogger("chaos.generator")

SLEEP, LOG = "sleep", "log"
# Op fields a dict template may set; any other key goes into Op.extra (e.g. "final").
OP_FIELDS = ("process", "type", "f", "key", "value", "time", "node")
NS = 1_000_000_000


class GeneratorError(ValueError):
    """A generator is malformed or cannot go on; the message says which and why."""


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()


def seconds_to_ns(seconds: float, what: str = "duration") -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise GeneratorError(f"{what} must be a non-negative number of seconds, got {seconds!r}")
    return int(round(seconds * NS))


def is_client_thread(thread: Any) -> bool:
    # the exact-type test first: asked several times per op, and threads are plain ints
    return type(thread) is int or (isinstance(thread, int) and not isinstance(thread, bool))


# -- context ------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


class StepRandom(random.Random):
    """random.Random's methods over splitmix64: a fresh stream costs well under a microsecond
    (seeding a Mersenne Twister costs several), and the interpreter makes one per event."""

    def __init__(self, seed: int):
        # Random.__init__ would seed the Mersenne Twister state we never use.
        self._state = seed & _MASK64
        self.gauss_next = None

    def seed(self, a=None, version=2) -> None:
        self._state = (a if isinstance(a, int) else hash(a)) & _MASK64
        self.gauss_next = None

    def getstate(self):
        return self._state, self.gauss_next

    def setstate(self, state) -> None:
        self._state, self.gauss_next = state

    def _next64(self) -> int:
        s = self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        # _next64 inlined: this is the draw generators make on every op
        s = self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next64() >> (64 - k)
        bits = 0
        for _ in range(0, k, 64):
            bits = (bits << 64) | self._next64()
        return bits >> (-k % 64)


def step_seed(seed: int, step: int) -> int:
    """The stream of event `step` of a run seeded `seed` (distinct for distinct pairs)."""
    return ((seed & _MASK64) * 0x9E3779B97F4A7C15 + step * 0xD1B54A32D192ED03 + (seed >> 64)) & _MASK64


_RESTRICTED: dict = {}  # (keep, id(threads)) -> (threads, kept, excluded): scopes are fixed

class Context:
    """What a generator may know when asked: the time, the threads in its scope (client threads
    0..C-1, then "nemesis"), which of them are free (longest-free first), the process each thread
    runs, and a seeded random stream.

    `rng` is derived from (seed, number of events so far) and shared by every sub-context of one
    question, so that asking again gives the same numbers and one question never repeats them.
    It is valid for that question only: a Scheduler reseeds one stream object for each question
    (a fresh one per question cost an allocation of the Mersenne Twister state we never use).

    rng_box: [the question's stream or None until drawn from, a stream object to reseed or None]
    """

    __slots__ = ("time", "threads", "free", "workers", "concurrency", "_seed", "_step", "_rng")

    def __init__(self, time: int, threads: tuple, free: tuple, workers: dict, concurrency: int,
                 seed: int = 0, step: int = 0, rng_box: list | None = None):
        self.time = time
        self.threads = threads
        self.free = free
        self.workers = workers
        self.concurrency = concurrency
        self._seed = seed
        self._step = step
        self._rng = rng_box if rng_box is not None else [None, None]

    @property
    def rng(self) -> random.Random:
        box = self._rng
        r = box[0]
        if r is None:
            r = box[1]
            if r is None:
                r = StepRandom(step_seed(self._seed, self._step))
            else:
                r._state, r.gauss_next = step_seed(self._seed, self._step), None
            box[0] = r
        return r

    def _derive(self, **changes) -> Context:
        fields: dict[str, Any] = {"time": self.time, "threads": self.threads, "free": self.free,
                  "workers": self.workers, "concurrency": self.concurrency}
        fields.update(changes)
        return Context(fields["time"], fields["threads"], fields["free"], fields["workers"],
                       fields["concurrency"], self._seed, self._step, self._rng)

    def restrict(self, keep: Callable[[Any], bool]) -> Context:
        """The same moment seen by only the threads for which keep(thread) is true."""
        threads, free = self.scope(keep)
        if threads is self.threads:
            return self
        return Context(self.time, threads, free, self.workers, self.concurrency, self._seed,
                       self._step, self._rng)

    def scope(self, keep: Callable[[Any], bool]) -> tuple[tuple, tuple]:
        """(threads, free) of restrict(keep), without making the context (self.threads itself
        when keep excludes none)."""
        # Keyed by identity: a run's thread tuples are few and live as long as it does (hashing
        # the tuple on every question would cost more than the filtering it saves).
        cache_key = (keep, id(self.threads))
        scope = _RESTRICTED.get(cache_key)
        if scope is None or scope[0] is not self.threads:
            if len(_RESTRICTED) > 10_000:
                _RESTRICTED.clear()  # unbounded distinct keep functions: never grow forever
            kept = tuple(t for t in self.threads if keep(t))
            scope = _RESTRICTED[cache_key] = (self.threads, kept,
                                              frozenset(t for t in self.threads if t not in kept))
        _, threads, excluded = scope
        free = self.free
        if not excluded:
            return self.threads, free
        if len(threads) == 1:
            free = threads if threads[0] in free else ()
        elif free and free[-1] in excluded and len(excluded) == 1:
            free = free[:-1]  # clients: the Scheduler keeps the nemesis thread last
        elif len(excluded) <= 2:
            # the common scopes (clients: all but the nemesis) exclude a thread or two
            for t in excluded:
                if t in free:
                    rest = list(free)
                    rest.remove(t)
                    free = tuple(rest)
        else:
            free = tuple(t for t in free if t not in excluded)
        return threads, free

    def only(self, threads: Iterable) -> Context:
        """The same moment seen by only the given threads."""
        chosen = threads if isinstance(threads, (set, frozenset)) else set(threads)
        return Context(self.time, tuple(t for t in self.threads if t in chosen),
                       tuple(t for t in self.free if t in chosen), self.workers, self.concurrency,
                       self._seed, self._step, self._rng)

    def at(self, time: int) -> Context:
        return self._derive(time=time)

    def process_thread(self, process: Any) -> Any:
        """The thread running `process`: client process p runs on thread p mod C (a retired
        process's successor is p + C), the nemesis on "nemesis"."""
        if is_client_thread(process):
            return process % self.concurrency
        return process

    def some_free_process(self) -> Any | None:
        """The process of the thread that has been free longest (fair, and deterministic)."""
        return self.workers[self.free[0]] if self.free else None

    def free_processes(self) -> list:
        return [self.workers[t] for t in self.free]

    def all_processes(self) -> list:
        return [self.workers[t] for t in self.threads]

    def __repr__(self) -> str:
        return f"Context(time={self.time}, threads={self.threads}, free={self.free})"


# -- the protocol and plain values --------------------------------------------------------------

class Generator:
    """Base class: subclasses implement op(); update() ignores events unless overridden."""

    __slots__ = ()
    #: True when update() is known to change nothing (lets wrappers skip the work of passing on)
    deaf = False
    #: None, or keep(thread): every op this generator emits is for a thread that keep accepts,
    #: so that while none of those is free, asking it gives nothing (the interpreter need not)
    threads_kept: Callable[[Any], bool] | None = None

    def op(self, ctx: Context) -> tuple[Any, Generator]:
        """(an op, PENDING or None (exhausted); the generator that follows)."""
        raise NotImplementedError

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


_BASE_UPDATE = Generator.update


def _ignores_updates(gen: Generator) -> bool:
    return type(gen).update is _BASE_UPDATE or gen.deaf


class _Empty(Generator):
    """Exhausted from the start."""

    __slots__ = ()

    def op(self, ctx):
        return None, self

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY = _Empty()


def lift(x: Any) -> Generator:
    """A generator, a dict (one op), a function (called for each op), a list or tuple (one after
    another) or None (nothing) -> a Generator."""
    if isinstance(x, Generator):
        return x
    if x is None:
        return EMPTY
    if isinstance(x, dict):
        return OpTemplate(x)
    if isinstance(x, (list, tuple)):
        return Seq(tuple(x))
    if isinstance(x, Op):
        raise GeneratorError("give operations as dicts ({'f': 'read', 'key': 'r0'}), not Op "
                             "objects: an Op is one history entry and cannot be emitted twice")
    if callable(x):
        return FnGen(x)
    raise GeneratorError(f"cannot use {type(x).__name__} {x!r} as a generator (give a dict, a "
                         "list, a function or a Generator)")


_OP_FIELD_SET = frozenset(OP_FIELDS)


def fill_op(template: dict, ctx: Context, extra_keys: tuple | None = None) -> Any:
    """A dict -> a fresh invoke Op on the longest-free process in scope (PENDING if none); keys
    other than Op's fields go into Op.extra."""
    # (called for most ops a workload makes: written for speed)
    if extra_keys is None:
        extra_keys = (() if _OP_FIELD_SET.issuperset(template)
                      else tuple(k for k in template if k not in _OP_FIELD_SET))
    get = template.get
    process = get("process")
    if process is None:
        free = ctx.free  # the longest-free process in scope, as ctx.some_free_process()
        if not free:
            return PENDING
        process = ctx.workers[free[0]]
    time = get("time")
    return Op(process=process, type=get("type", INVOKE), f=template["f"], key=get("key"),
              value=get("value"), time=ctx.time if time is None else max(time, 0),
              node=get("node"), extra={k: template[k] for k in extra_keys} if extra_keys else {})


class OpTemplate(Generator):
    """One operation, from a dict."""

    __slots__ = ("template", "extra_keys")

    def __init__(self, template: dict):
        if "f" not in template:
            raise GeneratorError(f"an operation needs f (what to do), got {template!r}")
        time = template.get("time")
        if time is not None and (isinstance(time, bool) or not isinstance(time, int)):
            raise GeneratorError(f"an operation's time is integer ns since the start, got {time!r}")
        self.template = template
        self.extra_keys = tuple(k for k in template if k not in _OP_FIELD_SET)

    def op(self, ctx):
        o = fill_op(self.template, ctx, self.extra_keys)
        return (PENDING, self) if o is PENDING else (o, EMPTY)

    def __repr__(self) -> str:
        return f"OpTemplate({self.template!r})"


def _wants_ctx(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                  p.VAR_POSITIONAL)]
    return bool(positional)


class FnGen(Generator):
    """fn(ctx) (or fn()) called for each op; its generator runs to exhaustion, then fn again."""

    __slots__ = ("fn", "with_ctx")

    def __init__(self, fn: Callable):
        self.fn = fn
        self.with_ctx = _wants_ctx(fn)

    def op(self, ctx):
        x = self.fn(ctx) if self.with_ctx else self.fn()
        if x is None:
            return None, EMPTY
        o, rest = lift(x).op(ctx)
        if o is None:
            # A function whose generator is already empty would be called forever: it ends.
            return None, EMPTY
        return o, Seq((rest, self))

    def __repr__(self) -> str:
        return f"FnGen({getattr(self.fn, '__name__', self.fn)!r})"


class Seq(Generator):
    """Each generator until exhausted, then the next; updates go to the current one."""

    __slots__ = ("items", "i", "current")

    def __init__(self, items: tuple, i: int = 0, current: Generator | None = None):
        self.items, self.i, self.current = items, i, current

    def op(self, ctx):
        items, i, current = self.items, self.i, self.current
        n = len(items)
        while i < n:
            gen = current if current is not None else lift(items[i])
            o, rest = gen.op(ctx)
            if o is None:
                i, current = i + 1, None
                continue
            if i == n - 1 and o is not PENDING:
                return o, rest  # the last element: no need to keep the sequence around
            return o, Seq(items, i, rest)
        return None, EMPTY

    def update(self, ctx, event):
        if self.i >= len(self.items):
            return self
        gen = self.current if self.current is not None else lift(self.items[self.i])
        updated = gen.update(ctx, event)
        return self if updated is self.current else Seq(self.items, self.i, updated)

    def __repr__(self) -> str:
        return f"Seq(at {self.i} of {len(self.items)})"


# -- combinators --------------------------------------------------------------------------------

class Limit(Generator):
    __slots__ = ("remaining", "gen", "deaf", "threads_kept")

    def __init__(self, remaining: int, gen: Generator):
        self.remaining, self.gen = remaining, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        if self.remaining <= 0:
            return None, EMPTY
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        return o, Limit(self.remaining if o is PENDING else self.remaining - 1, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Limit(self.remaining, gen)


def limit(n: int, gen) -> Generator:
    """At most n operations of gen."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise GeneratorError(f"limit needs a non-negative integer count, got {n!r}")
    return Limit(n, lift(gen))


def once(gen) -> Generator:
    """The first operation of gen only."""
    return limit(1, gen)


class Repeat(Generator):
    __slots__ = ("gen", "remaining", "deaf", "threads_kept")

    def __init__(self, gen: Generator, remaining: int | None):
        self.gen, self.remaining = gen, remaining
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        if self.remaining == 0:
            return None, EMPTY
        o, _ = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING or self.remaining is None:
            return o, self  # (forever: the same value again)
        return o, Repeat(self.gen, self.remaining - 1)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Repeat(gen, self.remaining)


def repeat(gen, times: int | None = None) -> Generator:
    """gen's first operation again and again (times times, or forever), each asked afresh."""
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise GeneratorError(f"repeat needs a non-negative integer times, got {times!r}")
    return Repeat(lift(gen), times)


class Cycle(Generator):
    __slots__ = ("original", "current", "remaining")

    def __init__(self, original: Generator, current: Generator, remaining: int | None):
        self.original, self.current, self.remaining = original, current, remaining

    def op(self, ctx):
        if self.remaining == 0:
            return None, EMPTY
        o, rest = self.current.op(ctx)
        remaining = self.remaining
        if o is None:
            remaining = None if remaining is None else remaining - 1
            if remaining == 0:
                return None, EMPTY
            o, rest = self.original.op(ctx)
            if o is None:
                return None, EMPTY  # an empty generator cycled is empty, not a busy loop
        return o, Cycle(self.original, rest, remaining)

    def update(self, ctx, event):
        return Cycle(self.original, self.current.update(ctx, event), self.remaining)


def cycle(gen, times: int | None = None) -> Generator:
    """gen to exhaustion, then gen again from its start (times passes, or forever)."""
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise GeneratorError(f"cycle needs a positive integer times, got {times!r}")
    g = lift(gen)
    return Cycle(g, g, times)


class Mix(Generator):
    __slots__ = ("gens", "cumulative")

    def __init__(self, gens: tuple, cumulative: tuple):
        self.gens, self.cumulative = gens, cumulative

    def op(self, ctx):
        gens, cumulative = self.gens, self.cumulative
        while gens:
            i = bisect.bisect_right(cumulative, ctx.rng.random() * cumulative[-1])
            if i >= len(gens):
                i = len(gens) - 1  # (a draw of exactly the total)
            o, rest = gens[i].op(ctx)
            if o is None:
                # that branch is done: the mix goes on with the others
                weights = _weights_of(cumulative)
                gens = gens[:i] + gens[i + 1:]
                weights = weights[:i] + weights[i + 1:]
                cumulative = _cumulative(weights)
                continue
            if o is PENDING:
                return PENDING, Mix(gens, cumulative)
            if rest is gens[i] and gens is self.gens:
                return o, self  # e.g. a repeat: the mix is unchanged
            return o, Mix(gens[:i] + (rest,) + gens[i + 1:], cumulative)
        return None, EMPTY


def _cumulative(weights) -> tuple:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return tuple(out)


def _weights_of(cumulative: tuple) -> list:
    return [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]


def mix(gens, weights=None) -> Generator:
    """Each operation from one of gens chosen at random (uniformly, or by weights); an exhausted
    branch drops out. Updates are ignored (as Jepsen's)."""
    gens = tuple(lift(g) for g in gens)
    if weights is None:
        weights = [1.0] * len(gens)
    weights = list(weights)
    if len(weights) != len(gens):
        raise GeneratorError(f"mix got {len(gens)} generators but {len(weights)} weights")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
            raise GeneratorError(f"mix weights must be positive numbers, got {w!r}")
    if not gens:
        return EMPTY
    return Mix(gens, _cumulative(weights))


class Stagger(Generator):
    __slots__ = ("span", "next_time", "gen", "deaf", "threads_kept")

    def __init__(self, span: int, next_time: int | None, gen: Generator):
        self.span, self.next_time, self.gen = span, next_time, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, self
        due = ctx.time if self.next_time is None else self.next_time
        if o.time < due:
            o.time = due
        gap = int(ctx.rng.random() * self.span)
        return o, Stagger(self.span, o.time + gap, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Stagger(self.span, self.next_time, gen)


def stagger(dt: float, gen) -> Generator:
    """Ops of gen at random intervals, uniform in [0, 2 dt) s, over all threads together (a
    total rate of about 1/dt ops/s; a late op does not bank a burst)."""
    return Stagger(2 * seconds_to_ns(dt, "stagger dt"), None, lift(gen))


class Delay(Generator):
    __slots__ = ("dt", "next_time", "gen", "deaf", "threads_kept")

    def __init__(self, dt: int, next_time: int | None, gen: Generator):
        self.dt, self.next_time, self.gen = dt, next_time, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, self
        if self.next_time is not None and o.time < self.next_time:
            o.time = self.next_time
        return o, Delay(self.dt, o.time + self.dt, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Delay(self.dt, self.next_time, gen)


def delay(dt: float, gen) -> Generator:
    """Ops of gen dt seconds apart (over all threads together)."""
    return Delay(seconds_to_ns(dt, "delay dt"), None, lift(gen))


class TimeLimit(Generator):
    __slots__ = ("dt", "cutoff", "gen", "deaf", "threads_kept")

    def __init__(self, dt: int, cutoff: int | None, gen: Generator):
        self.dt, self.cutoff, self.gen = dt, cutoff, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        if self.cutoff is not None and ctx.time >= self.cutoff:
            return None, EMPTY
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, self if rest is self.gen else TimeLimit(self.dt, self.cutoff, rest)
        cutoff = self.cutoff if self.cutoff is not None else o.time + self.dt
        if o.time >= cutoff:
            return None, EMPTY
        return o, TimeLimit(self.dt, cutoff, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else TimeLimit(self.dt, self.cutoff, gen)


def time_limit(dt: float, gen) -> Generator:
    """Ops of gen for dt seconds, counted from its first op."""
    return TimeLimit(seconds_to_ns(dt, "time limit"), None, lift(gen))


class Synchronize(Generator):
    __slots__ = ("gen", "deaf", "threads_kept")

    def __init__(self, gen: Generator):
        self.gen = gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        if len(ctx.free) == len(ctx.threads):
            return self.gen.op(ctx)  # from now on it is just gen
        return PENDING, self

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Synchronize(gen)


def synchronize(gen) -> Generator:
    """gen, once every thread in scope is free (all earlier ops completed)."""
    return Synchronize(lift(gen))


def phases(*gens) -> Generator:
    """Each generator in turn; one starts only when the previous is exhausted and all its ops
    have completed."""
    return Seq(tuple(Synchronize(lift(g)) for g in gens))


def sequence(*gens) -> Generator:
    """Each generator in turn, without waiting for the previous one's ops to complete."""
    return Seq(tuple(lift(g) for g in gens))


def then(first, second) -> Generator:
    """first, then (once its ops have completed) second. Unlike Jepsen's `then`, the arguments
    come in the order they run."""
    return Seq((lift(first), Synchronize(lift(second))))


class OnThreads(Generator):
    __slots__ = ("keep", "gen", "deaf", "threads_kept")

    def __init__(self, keep: Callable[[Any], bool], gen: Generator):
        self.keep, self.gen = keep, gen
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf  # update() only passes on to gen
        self.threads_kept = keep

    def op(self, ctx):
        threads, free = ctx.scope(self.keep)
        if not free:
            # no thread in scope can take an op now; with no thread at all, none ever will
            return (PENDING, self) if threads else (None, EMPTY)
        sub = ctx if threads is ctx.threads else Context(ctx.time, threads, free, ctx.workers,
                                                         ctx.concurrency, ctx._seed, ctx._step,
                                                         ctx._rng)
        o, rest = self.gen.op(sub)
        if o is None:
            return None, EMPTY
        return o, self if rest is self.gen else OnThreads(self.keep, rest)

    def update(self, ctx, event):
        if _ignores_updates(self.gen) or not self.keep(ctx.process_thread(event.process)):
            return self
        gen = self.gen.update(ctx.restrict(self.keep), event)
        return self if gen is self.gen else OnThreads(self.keep, gen)


def on_threads(keep: Callable[[Any], bool], gen) -> Generator:
    """gen, run only by the threads for which keep(thread) is true (and seeing only them)."""
    return OnThreads(keep, lift(gen))


def _is_nemesis_thread(thread: Any) -> bool:
    return thread == NEMESIS


def clients(gen) -> Generator:
    """gen, run by the client threads only."""
    return OnThreads(is_client_thread, lift(gen))


def nemesis(gen) -> Generator:
    """gen, run by the nemesis thread only."""
    return OnThreads(_is_nemesis_thread, lift(gen))


def _soonest(candidates):
    """(op, ...) tuples -> the one whose op comes first; ties go to the earliest listed, so the
    choice is deterministic (callers list threads longest-free first, which keeps it fair)."""
    best = None
    for c in candidates:
        if best is None or c[0].time < best[0].time:
            best = c
    return best


class AnyOf(Generator):
    __slots__ = ("gens",)

    def __init__(self, gens: tuple):
        self.gens = gens

    def op(self, ctx):
        best, pending = None, False
        for i, g in enumerate(self.gens):
            o, rest = g.op(ctx)
            if o is None:
                continue
            if o is PENDING:
                pending = True
            elif best is None or o.time < best[0].time:
                best = (o, i, rest)
        if best is not None:
            o, i, rest = best
            return o, AnyOf(self.gens[:i] + (rest,) + self.gens[i + 1:])
        return (PENDING, self) if pending else (None, EMPTY)

    def update(self, ctx, event):
        return AnyOf(tuple(g.update(ctx, event) for g in self.gens))


def any_of(*gens) -> Generator:
    """Whichever of gens has the soonest op, until all are exhausted; updates go to all."""
    return AnyOf(tuple(lift(g) for g in gens))


def nemesis_and_clients(nemesis_gen, client_gen) -> Generator:
    """nemesis_gen on the nemesis thread alongside client_gen on the client threads."""
    return any_of(nemesis(nemesis_gen), clients(client_gen))


class EachThread(Generator):
    __slots__ = ("fresh", "gens")

    def __init__(self, fresh: Generator, gens: dict):
        self.fresh, self.gens = fresh, gens

    def _key(self, ctx: Context, thread):
        return thread

    def _event_key(self, thread, event: Op):
        return thread

    def op(self, ctx):
        best, pending = None, False
        for thread in ctx.free:
            key = self._key(ctx, thread)
            o, rest = self.gens.get(key, self.fresh).op(ctx.only((thread,)))
            if o is None:
                continue
            if o is PENDING:
                pending = True
            elif best is None or o.time < best[0].time:
                best = (o, key, rest)
        if best is not None:
            o, key, rest = best
            gens = dict(self.gens)
            gens[key] = rest
            return o, type(self)(self.fresh, gens)
        if pending or len(ctx.free) < len(ctx.threads):
            return PENDING, self  # a busy thread may still have ops
        return None, EMPTY

    def update(self, ctx, event):
        thread = ctx.process_thread(event.process)
        if thread not in ctx.threads:
            return self
        key = self._event_key(thread, event)
        gens = dict(self.gens)
        gens[key] = self.gens.get(key, self.fresh).update(ctx.only((thread,)), event)
        return type(self)(self.fresh, gens)


class EachProcess(EachThread):
    __slots__ = ()

    def _key(self, ctx: Context, thread):
        return ctx.workers[thread]

    def _event_key(self, thread, event: Op):
        return event.process


def each_thread(gen) -> Generator:
    """An independent copy of gen for every thread (each sees only its own thread)."""
    return EachThread(lift(gen), {})


def each_process(gen) -> Generator:
    """An independent copy of gen for every process: a thread whose process retired (after an
    info) starts a fresh copy."""
    return EachProcess(lift(gen), {})


class Reserve(Generator):
    __slots__ = ("counts", "gens")

    def __init__(self, counts: tuple, gens: tuple):
        self.counts, self.gens = counts, gens

    def _ranges(self, ctx: Context) -> list[tuple]:
        threads = ctx.threads
        if sum(self.counts) > len(threads):
            raise GeneratorError(f"reserve wants {sum(self.counts)} threads ({', '.join(map(str, self.counts))}) "
                                 f"but only {len(threads)} are in scope: {list(threads)}")
        ranges, lo = [], 0
        for n in self.counts:
            ranges.append(threads[lo:lo + n])
            lo += n
        ranges.append(threads[lo:])
        return ranges

    def op(self, ctx):
        best, pending = None, False
        for i, threads in enumerate(self._ranges(ctx)):
            if not threads:
                continue  # nobody runs this range
            o, rest = self.gens[i].op(ctx.only(threads))
            if o is None:
                continue
            if o is PENDING:
                pending = True
            elif best is None or o.time < best[0].time:
                best = (o, i, rest)
        if best is not None:
            o, i, rest = best
            return o, Reserve(self.counts, self.gens[:i] + (rest,) + self.gens[i + 1:])
        return (PENDING, self) if pending else (None, EMPTY)

    def update(self, ctx, event):
        thread = ctx.process_thread(event.process)
        for i, threads in enumerate(self._ranges(ctx)):
            if thread in threads:
                gens = self.gens[:i] + (self.gens[i].update(ctx.only(threads), event),) + self.gens[i + 1:]
                return Reserve(self.counts, gens)
        return self


def reserve(*args) -> Generator:
    """reserve(n1, g1, n2, g2, ..., default): the first n1 threads in scope run g1, the next n2
    run g2, ..., the rest run default (None: nothing)."""
    if len(args) % 2 != 1:
        raise GeneratorError("reserve takes pairs of (thread count, generator) and then a default "
                             f"generator; got {len(args)} arguments")
    counts = args[:-1:2]
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GeneratorError(f"reserve thread counts must be positive integers, got {n!r}")
    gens = tuple(lift(g) for g in args[1:-1:2]) + (lift(args[-1]),)
    return Reserve(tuple(counts), gens)


class UntilOk(Generator):
    __slots__ = ("gen", "done", "active")

    def __init__(self, gen: Generator, done: bool, active: frozenset):
        self.gen, self.done, self.active = gen, done, active

    def op(self, ctx):
        if self.done:
            return None, EMPTY
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, UntilOk(rest, False, self.active)
        return o, UntilOk(rest, False, self.active | {o.process})

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        if event.process not in self.active or event.type == INVOKE:
            return UntilOk(gen, self.done, self.active)
        active = self.active - {event.process}
        return UntilOk(gen, self.done or event.type == OK, active)


def until_ok(gen) -> Generator:
    """Ops of gen until one of them completes ok."""
    return UntilOk(lift(gen), False, frozenset())


class FlipFlop(Generator):
    __slots__ = ("gens", "i")

    def __init__(self, gens: tuple, i: int):
        self.gens, self.i = gens, i

    def op(self, ctx):
        o, rest = self.gens[self.i].op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, self
        gens = (rest, self.gens[1]) if self.i == 0 else (self.gens[0], rest)
        return o, FlipFlop(gens, 1 - self.i)

    def update(self, ctx, event):
        # Unlike Jepsen's (which ignores updates), both sides hear every event, so that e.g.
        # an until_ok inside a flip_flop still sees its completions.
        return FlipFlop(tuple(g.update(ctx, event) for g in self.gens), self.i)


def flip_flop(a, b) -> Generator:
    """An op of a, then one of b, then a, ...; ends when the side due is exhausted."""
    return FlipFlop((lift(a), lift(b)), 0)


class Sleep(Generator):
    __slots__ = ("dt", "until")

    def __init__(self, dt: int | None, until: int | None):
        self.dt, self.until = dt, until

    def op(self, ctx):
        wake = self.until if self.until is not None else ctx.time + self.dt
        if wake <= ctx.time:
            return None, EMPTY
        process = ctx.some_free_process()
        if process is None:
            return PENDING, self
        return Op(process=process, type=SLEEP, f=SLEEP, value=wake, time=ctx.time), EMPTY


def sleep(dt: float) -> Generator:
    """One thread in scope does nothing for dt seconds (not recorded in the history)."""
    return Sleep(seconds_to_ns(dt, "sleep"), None)


def sleep_until(t: float) -> Generator:
    """One thread in scope does nothing until t seconds after the start (nothing if past)."""
    return Sleep(None, seconds_to_ns(t, "sleep_until time"))


class Log(Generator):
    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message

    def op(self, ctx):
        process = ctx.some_free_process()
        if process is None:
            return PENDING, self
        return Op(process=process, type=LOG, f=LOG, value=self.message, time=ctx.time), EMPTY


def log_message(message: str) -> Generator:
    """Log message (chaos.generator logger) when reached, on a free thread (which it does not
    keep busy); not recorded."""
    return Log(str(message))


class FilterOps(Generator):
    __slots__ = ("pred", "gen", "deaf", "threads_kept")

    def __init__(self, pred: Callable[[Op], bool], gen: Generator):
        self.pred, self.gen = pred, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        gen = self.gen
        while True:
            o, rest = gen.op(ctx)
            if o is None:
                return None, EMPTY
            if o is PENDING or o.type != INVOKE or self.pred(o):
                return o, FilterOps(self.pred, rest)
            gen = rest

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else FilterOps(self.pred, gen)


def filter_ops(pred: Callable[[Op], bool], gen) -> Generator:
    """Only the ops of gen for which pred(op) is true (sleeps and logs pass)."""
    return FilterOps(pred, lift(gen))


class MapOps(Generator):
    __slots__ = ("fn", "gen", "deaf", "threads_kept")

    def __init__(self, fn: Callable[[Op], Op], gen: Generator):
        self.fn, self.gen = fn, gen
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf  # update() only passes on to gen
        self.threads_kept = None  # fn may send an op to another process

    def op(self, ctx):
        o, rest = self.gen.op(ctx)
        if o is None:
            return None, EMPTY
        if o is not PENDING and o.type == INVOKE:
            o = self.fn(o)
            if not isinstance(o, Op):
                raise GeneratorError(f"map_ops function returned {type(o).__name__}, not an Op")
        return o, MapOps(self.fn, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else MapOps(self.fn, gen)


def map_ops(fn: Callable[[Op], Op], gen) -> Generator:
    """The ops of gen passed through fn(op) -> op (sleeps and logs pass unchanged)."""
    return MapOps(fn, lift(gen))


class Series(Generator):
    __slots__ = ("fn", "i")

    def __init__(self, fn: Callable[[int], Any], i: int):
        self.fn, self.i = fn, i

    def op(self, ctx):
        x = self.fn(self.i)
        if x is None:
            return None, EMPTY
        o, rest = lift(x).op(ctx)
        if o is None:
            return None, EMPTY
        if o is PENDING:
            return PENDING, self
        return o, Seq((rest, Series(self.fn, self.i + 1)))


def series(fn: Callable[[int], Any], start: int = 0) -> Generator:
    """fn(start), fn(start + 1), ...: each result (a dict or a generator) in turn; None ends."""
    return Series(fn, start)


class RotatingKeys(Generator):
    __slots__ = ("per_key", "prefix", "ops_per_key", "slots", "next_index", "deaf")

    def __init__(self, per_key, prefix, ops_per_key, slots, next_index, deaf=None):
        self.per_key, self.prefix, self.ops_per_key = per_key, prefix, ops_per_key
        self.slots, self.next_index = slots, next_index  # slots: (key, its generator, ops so far)
        self.deaf = all(_ignores_updates(gen) for _, gen, _ in slots) if deaf is None else deaf

    def _fresh(self, index: int) -> tuple:
        key = f"{self.prefix}{index}"
        return key, lift(self.per_key(key)), 0

    def op(self, ctx):
        slots, next_index = self.slots, self.next_index
        s = int(ctx.rng.random() * len(slots))  # randrange's generality costs twice as much
        key, gen, count = slots[s]
        o, rest = gen.op(ctx)
        if o is None:
            # this key's generator is done: the slot moves on to a fresh key
            slots = _replace(slots, s, self._fresh(next_index))
            next_index += 1
            key, gen, count = slots[s]
            o, rest = gen.op(ctx)
            if o is None:
                return None, EMPTY
        if o is PENDING:
            return PENDING, self
        count += 1
        if count >= self.ops_per_key:
            slot = self._fresh(next_index)
            next_index += 1
        else:
            slot = (key, rest, count)
        gen = slot[1]
        deaf = (None if slots is not self.slots
                else self.deaf and (type(gen).update is _BASE_UPDATE or gen.deaf))
        return o, RotatingKeys(self.per_key, self.prefix, self.ops_per_key, _replace(slots, s, slot),
                               next_index, deaf)

    def update(self, ctx, event):
        for s, (key, gen, count) in enumerate(self.slots):
            if key == event.key:
                if _ignores_updates(gen):
                    return self
                return RotatingKeys(self.per_key, self.prefix, self.ops_per_key,
                                    _replace(self.slots, s, (key, gen.update(ctx, event), count)),
                                    self.next_index)
        return self


def _replace(t: tuple, i: int, item) -> tuple:
    return t[:i] + (item,) + t[i + 1:]


def rotating_keys(per_key: Callable[[str], Any], *, keys: int = 5, ops_per_key: int = 200,
                  prefix: str = "k") -> Generator:
    """`keys` keys in use at once (prefix0, prefix1, ...), each op on one chosen at random; a key
    gets ops_per_key ops of per_key(key), then its slot moves to a fresh key."""
    for name, n in (("keys", keys), ("ops_per_key", ops_per_key)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GeneratorError(f"rotating_keys needs a positive integer {name}, got {n!r}")
    first = RotatingKeys(per_key, prefix, ops_per_key, (), keys)
    return RotatingKeys(per_key, prefix, ops_per_key, tuple(first._fresh(i) for i in range(keys)), keys)


class ThenKeys(Generator):
    __slots__ = ("gen", "final", "keys", "seen")

    def __init__(self, gen: Generator, final: Callable[[list], Any], keys: tuple, seen: frozenset):
        self.gen, self.final, self.keys, self.seen = gen, final, keys, seen

    def op(self, ctx):
        o, rest = self.gen.op(ctx)
        if o is not None:
            return o, ThenKeys(rest, self.final, self.keys, self.seen)
        return Synchronize(lift(self.final(list(self.keys)))).op(ctx)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        key = event.key
        if event.type == INVOKE and key is not None and is_client_thread(event.process) \
                and key not in self.seen:
            return ThenKeys(gen, self.final, self.keys + (key,), self.seen | {key})
        return ThenKeys(gen, self.final, self.keys, self.seen)


def then_keys(gen, final: Callable[[list], Any]) -> Generator:
    """gen, then (once its ops have completed) final(keys), where keys are the keys gen's
    client invocations touched, in order of first use (e.g. the final reads)."""
    return ThenKeys(lift(gen), final, (), frozenset())


def final_reads(keys: Iterable, *, timeout: float | None = None) -> Generator:
    """Read each key, retrying it until an ok, one key after another on one client thread; the
    ops are marked final. With timeout, give up after that many seconds."""
    reads = Seq(tuple(until_ok(repeat({"f": "read", "key": key, "final": True})) for key in keys))
    gen = clients(reserve(1, reads, None))
    return time_limit(timeout, gen) if timeout is not None else gen


class Before(Generator):
    __slots__ = ("cutoff", "gen", "deaf", "threads_kept")

    def __init__(self, cutoff: int, gen: Generator):
        self.cutoff, self.gen = cutoff, gen
        # update() only passes events on to gen, and its ops are gen's
        self.deaf = type(gen).update is _BASE_UPDATE or gen.deaf
        self.threads_kept = gen.threads_kept

    def op(self, ctx):
        if ctx.time >= self.cutoff:
            return None, EMPTY
        o, rest = self.gen.op(ctx)
        if o is None or (o is not PENDING and o.time >= self.cutoff):
            return None, EMPTY
        return o, Before(self.cutoff, rest)

    def update(self, ctx, event):
        gen = self.gen.update(ctx, event)
        return self if gen is self.gen else Before(self.cutoff, gen)


def before(t: float, gen) -> Generator:
    """Ops of gen timed before t seconds after the start of the run (time_limit counts from the
    first op instead); a schedule's "at" is such a time."""
    return Before(seconds_to_ns(t, "before time"), lift(gen))
