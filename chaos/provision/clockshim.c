/*
 * splitbrain's clock shim: an LD_PRELOAD library that moves a process's clocks, the monotonic
 * ones included, and keeps every timed wait of the process on the moved clock.
 *
 * The spec file named by SPLITBRAIN_CLOCK_FILE (written by chaos/provision/clockshim.py, which
 * documents the format and mirrors this arithmetic) says, with t the real CLOCK_MONOTONIC:
 *
 *     skew(t) = skew + (t - anchor) * (rate - 1)  [+ strobe_delta while a strobe is "up"]
 *
 * and every clock of the realtime family reads real + skew(t), every clock of the monotonic
 * family real + skew(t) + mono_offset. A strobe is up in its even periods, from strobe_start, for
 * strobe_count periods, then stays where its last period left it. (mono_offset is what a reset
 * leaves so that the monotonic clock does not go back when the wall clock returns to real time.) The anchor is absolute (containers share the host's CLOCK_MONOTONIC), so a restarted
 * process continues the same skew without help, and a strobe flips inside the process exactly on
 * time with nobody writing the file.
 *
 * Timed waits: the kernel compares absolute deadlines against the *real* clock, and relative
 * timeouts in real time. So each deadline or timeout of the process (given on its moved clock) is
 * translated to real time, `remaining / rate`, and waited in slices of at most SLICE_NS and never
 * past the next strobe flip; after a slice the remaining time is measured again. A slowed clock
 * therefore really stretches sleeps, condition and semaphore waits and poll timeouts, a bump
 * forward ends them early, a bump back lengthens them, and nothing spins or hangs.
 *
 * Without SPLITBRAIN_CLOCK_FILE the library is inert (every call goes straight to libc). A
 * missing file means real time; an unreadable spec means real time and one line on stderr.
 * The library calls libc only through dlsym and symbols old enough that it loads into any glibc
 * (it is built on the host and copied into containers of other distributions).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* dlsym moved into libc in glibc 2.34; bind to the baseline version so that the library also
 * loads where it lives in libdl. */
#if defined(__x86_64__)
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver dlsym,dlsym@GLIBC_2.17");
#endif

#define EXPORT __attribute__((visibility("default")))
#define NS 1000000000LL
#define CHECK_INTERVAL_NS 1000000LL /* how often the spec file is looked at: 1 ms */
#define SLICE_NS 50000000LL         /* the longest real wait before a deadline is translated again */
#define NS_MAX (INT64_MAX / 4)      /* saturation: far enough from overflow for any sum below */
#define SPEC_MAX 512

typedef struct {
    int64_t anchor, skew, strobe_start, strobe_delta, strobe_period, strobe_count, mono_offset;
    double rate;
} spec_t;

static const spec_t REAL_TIME = {0, 0, 0, 0, 0, 0, 0, 1.0};

/* ---- libc, resolved once ------------------------------------------------------------------ */
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);
static int (*real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
static int (*real_cond_clockwait)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
static int (*real_sem_timedwait)(sem_t *, const struct timespec *);
static int (*real_sem_clockwait)(sem_t *, clockid_t, const struct timespec *);
static int (*real_mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
static int (*real_mutex_clocklock)(pthread_mutex_t *, clockid_t, const struct timespec *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*real_epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);

static int resolved;           /* 1 once the pointers above are set */
static const char *spec_path;  /* NULL: inert */
static char spec_path_copy[4096];

static void resolve(void)
{
    if (__atomic_load_n(&resolved, __ATOMIC_ACQUIRE))
        return;
    /* Racing threads store the same values: harmless. */
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = dlsym(RTLD_NEXT, "gettimeofday");
    real_clock_nanosleep = dlsym(RTLD_NEXT, "clock_nanosleep");
    real_cond_timedwait = dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    real_cond_clockwait = dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    real_sem_timedwait = dlsym(RTLD_NEXT, "sem_timedwait");
    real_sem_clockwait = dlsym(RTLD_NEXT, "sem_clockwait");
    real_mutex_timedlock = dlsym(RTLD_NEXT, "pthread_mutex_timedlock");
    real_mutex_clocklock = dlsym(RTLD_NEXT, "pthread_mutex_clocklock");
    real_epoll_wait = dlsym(RTLD_NEXT, "epoll_wait");
    real_epoll_pwait = dlsym(RTLD_NEXT, "epoll_pwait");
    real_epoll_pwait2 = dlsym(RTLD_NEXT, "epoll_pwait2");
    real_poll = dlsym(RTLD_NEXT, "poll");
    real_ppoll = dlsym(RTLD_NEXT, "ppoll");
    real_select = dlsym(RTLD_NEXT, "select");
    real_pselect = dlsym(RTLD_NEXT, "pselect");
    /* A copy: programs that set their process title (redis, nginx, ...) overwrite the memory
     * of their environment, where getenv's answer points. */
    const char *path = getenv("SPLITBRAIN_CLOCK_FILE");
    if (path && *path && strlen(path) < sizeof(spec_path_copy)) {
        memcpy(spec_path_copy, path, strlen(path) + 1);
        spec_path = spec_path_copy;
    } else if (path && *path) {
        static const char too_long[] = "splitbrain clock shim: SPLITBRAIN_CLOCK_FILE is too long; real time\n";
        ssize_t ignored = write(2, too_long, sizeof(too_long) - 1);
        (void)ignored;
    }
    __atomic_store_n(&resolved, 1, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void init(void) { resolve(); }

/* ---- real time ---------------------------------------------------------------------------- */
static int raw_gettime(clockid_t c, struct timespec *ts)
{
    if (real_clock_gettime)
        return real_clock_gettime(c, ts);
    return (int)syscall(SYS_clock_gettime, c, ts); /* before dlsym could run */
}

static int64_t ts_ns(const struct timespec *ts)
{
    if (ts->tv_sec >= NS_MAX / NS)
        return NS_MAX;
    if (ts->tv_sec <= -NS_MAX / NS)
        return -NS_MAX;
    return (int64_t)ts->tv_sec * NS + ts->tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
    struct timespec ts;
    int64_t sec = ns / NS, rest = ns % NS;
    if (rest < 0) {
        rest += NS;
        sec -= 1;
    }
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)rest;
    return ts;
}

static int64_t real_ns(clockid_t c)
{
    struct timespec ts;
    if (raw_gettime(c, &ts) != 0)
        return 0;
    return ts_ns(&ts);
}

/* ---- the spec: parsed from the file, published in two slots ---------------------------------
 * The reloading thread fills the slot not in use, then bumps `seq`, whose low bit names the slot
 * readers use; a reader retries only if `seq` moved while it copied. No reader ever waits for the
 * writer, so a signal handler that reads the clock in the middle of a reload cannot deadlock. */
static spec_t slots[2] = {{0, 0, 0, 0, 0, 0, 0, 1.0}, {0, 0, 0, 0, 0, 0, 0, 1.0}};
static unsigned seq;
static int64_t next_check;     /* real CLOCK_MONOTONIC ns of the next look at the file */
static int reloading;          /* one thread reads the file at a time; the others go on */
static char last_text[SPEC_MAX];
static int last_len = -1;
static int warned;

/* A decimal with at most nine fraction digits, as nanoseconds (no locale, no floating point). */
static int parse_fixed(const char **p, int64_t *out)
{
    const char *s = *p;
    int neg = 0, digits = 0;
    int64_t whole = 0, frac = 0, scale = NS;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    while (*s >= '0' && *s <= '9') {
        if (whole > NS_MAX / NS / 10)
            return -1;
        whole = whole * 10 + (*s++ - '0');
        digits++;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            if (scale > 1) {
                scale /= 10;
                frac += (*s - '0') * scale;
            }
            s++;
            digits++;
        }
    }
    if (!digits)
        return -1;
    *out = (whole * NS + frac) * (neg ? -1 : 1);
    *p = s;
    return 0;
}

static int parse_spec(const char *text, spec_t *out)
{
    spec_t s = REAL_TIME;
    int seen_rate = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\n' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=')
            p++;
        if (*p != '=')
            return -1;
        size_t len = (size_t)(p - key);
        p++;
        int64_t v;
        if (parse_fixed(&p, &v) != 0 || (*p && *p != ' ' && *p != '\n' && *p != '\t'))
            return -1;
#define KEY(name) (len == sizeof(name) - 1 && memcmp(key, name, len) == 0)
        if (KEY("anchor"))
            s.anchor = v;
        else if (KEY("skew"))
            s.skew = v;
        else if (KEY("rate")) {
            if (v <= 0)
                return -1;
            s.rate = (double)v / (double)NS;
            seen_rate = 1;
        } else if (KEY("strobe_start"))
            s.strobe_start = v;
        else if (KEY("strobe_delta"))
            s.strobe_delta = v;
        else if (KEY("strobe_period")) {
            if (v < 0)
                return -1;
            s.strobe_period = v;
        } else if (KEY("mono_offset"))
            s.mono_offset = v;
        else if (KEY("strobe_count")) {
            if (v < 0 || v % NS)
                return -1;
            s.strobe_count = v / NS;
        } else
            return -1;
#undef KEY
    }
    if (!seen_rate)
        return -1;
    *out = s;
    return 0;
}

static void publish(const spec_t *s)
{
    unsigned now = __atomic_load_n(&seq, __ATOMIC_RELAXED);
    spec_t *dst = &slots[(now + 1) & 1];
    __atomic_store(&dst->anchor, &s->anchor, __ATOMIC_RELAXED);
    __atomic_store(&dst->skew, &s->skew, __ATOMIC_RELAXED);
    __atomic_store(&dst->strobe_start, &s->strobe_start, __ATOMIC_RELAXED);
    __atomic_store(&dst->strobe_delta, &s->strobe_delta, __ATOMIC_RELAXED);
    __atomic_store(&dst->strobe_period, &s->strobe_period, __ATOMIC_RELAXED);
    __atomic_store(&dst->strobe_count, &s->strobe_count, __ATOMIC_RELAXED);
    __atomic_store(&dst->mono_offset, &s->mono_offset, __ATOMIC_RELAXED);
    __atomic_store(&dst->rate, &s->rate, __ATOMIC_RELAXED);
    __atomic_store_n(&seq, now + 1, __ATOMIC_RELEASE);
}

static void load_current(spec_t *s)
{
    unsigned before;
    do {
        before = __atomic_load_n(&seq, __ATOMIC_ACQUIRE);
        spec_t *src = &slots[before & 1];
        __atomic_load(&src->anchor, &s->anchor, __ATOMIC_RELAXED);
        __atomic_load(&src->skew, &s->skew, __ATOMIC_RELAXED);
        __atomic_load(&src->strobe_start, &s->strobe_start, __ATOMIC_RELAXED);
        __atomic_load(&src->strobe_delta, &s->strobe_delta, __ATOMIC_RELAXED);
        __atomic_load(&src->strobe_period, &s->strobe_period, __ATOMIC_RELAXED);
        __atomic_load(&src->strobe_count, &s->strobe_count, __ATOMIC_RELAXED);
        __atomic_load(&src->mono_offset, &s->mono_offset, __ATOMIC_RELAXED);
        __atomic_load(&src->rate, &s->rate, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while (__atomic_load_n(&seq, __ATOMIC_RELAXED) != before);
}

static void warn(const char *what)
{
    if (__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        return;
    static const char head[] = "splitbrain clock shim: ";
    static const char tail[] = "; this process runs on real time until the file is valid\n";
    ssize_t ignored;
    ignored = write(2, head, sizeof(head) - 1);
    ignored = write(2, what, strlen(what));
    ignored = write(2, tail, sizeof(tail) - 1);
    (void)ignored;
}

/* Read the spec file again when it is due (every CHECK_INTERVAL_NS); async-signal-safe. */
static void maybe_reload(int64_t mono)
{
    if (mono < __atomic_load_n(&next_check, __ATOMIC_RELAXED))
        return;
    if (__atomic_exchange_n(&reloading, 1, __ATOMIC_ACQUIRE))
        return;
    int saved = errno;
    char text[SPEC_MAX];
    int len = -1;
    int fd = open(spec_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof(text) - 1);
        close(fd);
        len = n < 0 ? -1 : (int)n;
    }
    if (len != last_len || (len > 0 && memcmp(text, last_text, (size_t)len) != 0)) {
        spec_t s = REAL_TIME;
        if (len > 0) {
            text[len] = 0;
            if (len == SPEC_MAX - 1 || parse_spec(text, &s) != 0) {
                warn("cannot parse the spec in SPLITBRAIN_CLOCK_FILE");
                s = REAL_TIME;
            } else {
                __atomic_store_n(&warned, 0, __ATOMIC_RELAXED);
            }
        }
        publish(&s);
        if (len > 0)
            memcpy(last_text, text, (size_t)len);
        last_len = len;
    }
    __atomic_store_n(&next_check, mono + CHECK_INTERVAL_NS, __ATOMIC_RELAXED);
    __atomic_store_n(&reloading, 0, __ATOMIC_RELEASE);
    errno = saved;
}

/* ---- the arithmetic ------------------------------------------------------------------------ */
static int64_t strobe_flip(const spec_t *s, int64_t t)
{
    int64_t k = t > s->strobe_start ? (t - s->strobe_start) / s->strobe_period : 0;
    return k > s->strobe_count - 1 ? s->strobe_count - 1 : k;
}

static int strobing(const spec_t *s) { return s->strobe_count > 0 && s->strobe_period > 0; }

static int64_t skew_at(const spec_t *s, int64_t t)
{
    int64_t k = s->skew;
    if (s->rate != 1.0)
        k += (int64_t)((double)(t - s->anchor) * (s->rate - 1.0));
    if (strobing(s) && strobe_flip(s, t) % 2 == 0)
        k += s->strobe_delta;
    return k;
}

/* Real ns from t until the strobe flips next (NS_MAX when it will not flip again). */
static int64_t until_next_flip(const spec_t *s, int64_t t)
{
    if (!strobing(s))
        return NS_MAX;
    int64_t k = strobe_flip(s, t);
    if (k >= s->strobe_count - 1)
        return NS_MAX;
    int64_t next = s->strobe_start + (k + 1) * s->strobe_period;
    return next > t ? next - t : 1;
}

enum { OTHER, WALL, MONO };

static int family(clockid_t c)
{
    switch (c) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_TAI:
    case CLOCK_REALTIME_ALARM:
        return WALL;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_BOOTTIME:
    case CLOCK_BOOTTIME_ALARM:
        return MONO;
    default:
        return OTHER;
    }
}

typedef struct {
    spec_t spec;
    int64_t mono;   /* real CLOCK_MONOTONIC */
    int64_t real;   /* real reading of the clock asked for */
    int64_t fake;   /* what the process sees on that clock */
} reading_t;

static void read_clock(clockid_t c, reading_t *r)
{
    r->mono = real_ns(CLOCK_MONOTONIC);
    maybe_reload(r->mono);
    load_current(&r->spec);
    r->real = c == CLOCK_MONOTONIC ? r->mono : real_ns(c);
    r->fake = r->real + skew_at(&r->spec, r->mono);
    if (family(c) == MONO) {
        r->fake += r->spec.mono_offset;
        if (r->fake < 0)
            r->fake = 0; /* a bump back past the boot: the clock stops at zero */
    }
}

/* How long to wait in real time for `remaining` ns of the process's clock: never past the next
 * strobe flip nor SLICE_NS, so that changes are seen; rounded up so a slice never falls short. */
static int64_t real_slice(const reading_t *r, int64_t remaining)
{
    double real = (double)remaining / r->spec.rate;
    int64_t slice = real >= (double)SLICE_NS ? SLICE_NS : (int64_t)real + 1;
    int64_t flip = until_next_flip(&r->spec, r->mono);
    return flip < slice ? flip : slice;
}

/* ---- clocks -------------------------------------------------------------------------------- */
EXPORT int clock_gettime(clockid_t c, struct timespec *ts)
{
    resolve();
    if (!spec_path || family(c) == OTHER)
        return raw_gettime(c, ts);
    int saved = errno;
    reading_t r;
    read_clock(c, &r);
    *ts = ns_ts(r.fake);
    errno = saved;
    return 0;
}

EXPORT int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    resolve();
    int ret = real_gettimeofday ? real_gettimeofday(tv, tz) : (int)syscall(SYS_gettimeofday, tv, tz);
    if (ret != 0 || !spec_path)
        return ret;
    reading_t r;
    read_clock(CLOCK_REALTIME, &r);
    struct timespec ts = ns_ts(r.fake);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

EXPORT time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

/* ---- absolute deadlines: pthread, semaphores, clock_nanosleep ----------------------------- */
/* One real wait with an absolute real deadline on clock c; returns 0, timeout_code or an error. */
typedef int (*attempt_fn)(clockid_t c, const struct timespec *real_deadline, void *ctx);

/* Wait until clock c, as the process sees it, reads `deadline`, or the attempt ends otherwise. */
static int wait_until(clockid_t c, int64_t deadline, attempt_fn attempt, void *ctx, int timeout_code)
{
    for (;;) {
        reading_t r;
        read_clock(c, &r);
        int64_t remaining = deadline - r.fake;
        struct timespec real_deadline = ns_ts(remaining > 0 ? r.real + real_slice(&r, remaining) : r.real);
        int ret = attempt(c, &real_deadline, ctx);
        if (ret != timeout_code || remaining <= 0)
            return ret;
        read_clock(c, &r);
        if (r.fake >= deadline)
            return timeout_code;
    }
}

static int valid_ts(const struct timespec *ts) { return ts && ts->tv_nsec >= 0 && ts->tv_nsec < NS; }

/* The clock of a condition variable: glibc (2.25 and newer) keeps it in bit 1 of __wrefs. Checked
 * once against conditions of both clocks; where the layout differs, the deadline's distance from
 * each clock decides (the realtime and monotonic clocks are decades apart). */
static int cond_layout_known = -1;

static int check_cond_layout(void)
{
    int known = __atomic_load_n(&cond_layout_known, __ATOMIC_RELAXED);
    if (known >= 0)
        return known;
    int (*attr_init)(pthread_condattr_t *) = dlsym(RTLD_NEXT, "pthread_condattr_init");
    int (*attr_setclock)(pthread_condattr_t *, clockid_t) = dlsym(RTLD_NEXT, "pthread_condattr_setclock");
    int (*cond_init)(pthread_cond_t *, const pthread_condattr_t *) = dlsym(RTLD_NEXT, "pthread_cond_init");
    known = 0;
    if (attr_init && attr_setclock && cond_init) {
        pthread_condattr_t attr;
        pthread_cond_t mono, wall;
        if (attr_init(&attr) == 0 && attr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
            cond_init(&mono, &attr) == 0 && cond_init(&wall, NULL) == 0)
            known = (mono.__data.__wrefs & 2) && !(wall.__data.__wrefs & 2);
    }
    __atomic_store_n(&cond_layout_known, known, __ATOMIC_RELAXED);
    return known;
}

static clockid_t cond_clock(pthread_cond_t *cond, const struct timespec *deadline)
{
    if (check_cond_layout())
        return (__atomic_load_n(&cond->__data.__wrefs, __ATOMIC_RELAXED) & 2) ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    int64_t d = ts_ns(deadline);
    int64_t to_wall = d - real_ns(CLOCK_REALTIME), to_mono = d - real_ns(CLOCK_MONOTONIC);
    return llabs(to_mono) < llabs(to_wall) ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

typedef struct { pthread_cond_t *cond; pthread_mutex_t *mutex; } cond_ctx;

static int attempt_cond(clockid_t c, const struct timespec *d, void *p)
{
    cond_ctx *x = p;
    (void)c; /* the condition's own clock */
    return real_cond_timedwait(x->cond, x->mutex, d);
}

static int attempt_cond_clock(clockid_t c, const struct timespec *d, void *p)
{
    cond_ctx *x = p;
    return real_cond_clockwait(x->cond, x->mutex, c, d);
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                                  const struct timespec *restrict abstime)
{
    resolve();
    if (!spec_path || !valid_ts(abstime))
        return real_cond_timedwait(cond, mutex, abstime);
    cond_ctx x = {cond, mutex};
    return wait_until(cond_clock(cond, abstime), ts_ns(abstime), attempt_cond, &x, ETIMEDOUT);
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                                  clockid_t clock, const struct timespec *restrict abstime)
{
    resolve();
    if (!real_cond_clockwait)
        return ENOSYS;
    if (!spec_path || !valid_ts(abstime) || family(clock) == OTHER)
        return real_cond_clockwait(cond, mutex, clock, abstime);
    cond_ctx x = {cond, mutex};
    return wait_until(clock, ts_ns(abstime), attempt_cond_clock, &x, ETIMEDOUT);
}

/* sem_* report errors in errno; the attempts return them as codes. */
static int attempt_sem(clockid_t c, const struct timespec *d, void *p)
{
    (void)c;
    return real_sem_timedwait(p, d) == 0 ? 0 : errno;
}

static int attempt_sem_clock(clockid_t c, const struct timespec *d, void *p)
{
    return real_sem_clockwait(p, c, d) == 0 ? 0 : errno;
}

EXPORT int sem_timedwait(sem_t *restrict sem, const struct timespec *restrict abstime)
{
    resolve();
    if (!spec_path || !valid_ts(abstime))
        return real_sem_timedwait(sem, abstime);
    int ret = wait_until(CLOCK_REALTIME, ts_ns(abstime), attempt_sem, sem, ETIMEDOUT);
    if (ret == 0)
        return 0;
    errno = ret;
    return -1;
}

EXPORT int sem_clockwait(sem_t *restrict sem, clockid_t clock, const struct timespec *restrict abstime)
{
    resolve();
    if (!real_sem_clockwait) {
        errno = ENOSYS;
        return -1;
    }
    if (!spec_path || !valid_ts(abstime) || family(clock) == OTHER)
        return real_sem_clockwait(sem, clock, abstime);
    int ret = wait_until(clock, ts_ns(abstime), attempt_sem_clock, sem, ETIMEDOUT);
    if (ret == 0)
        return 0;
    errno = ret;
    return -1;
}

static int attempt_mutex(clockid_t c, const struct timespec *d, void *p)
{
    (void)c;
    return real_mutex_timedlock(p, d);
}

static int attempt_mutex_clock(clockid_t c, const struct timespec *d, void *p)
{
    return real_mutex_clocklock(p, c, d);
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *restrict mutex, const struct timespec *restrict abstime)
{
    resolve();
    if (!spec_path || !valid_ts(abstime))
        return real_mutex_timedlock(mutex, abstime);
    return wait_until(CLOCK_REALTIME, ts_ns(abstime), attempt_mutex, mutex, ETIMEDOUT);
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *restrict mutex, clockid_t clock,
                                   const struct timespec *restrict abstime)
{
    resolve();
    if (!real_mutex_clocklock)
        return ENOSYS;
    if (!spec_path || !valid_ts(abstime) || family(clock) == OTHER)
        return real_mutex_clocklock(mutex, clock, abstime);
    return wait_until(clock, ts_ns(abstime), attempt_mutex_clock, mutex, ETIMEDOUT);
}

/* clock_nanosleep returns 0 when the deadline passed: a slice that ends is "timed out" (code 0). */
static int attempt_sleep(clockid_t c, const struct timespec *d, void *p)
{
    (void)p;
    return real_clock_nanosleep(c, TIMER_ABSTIME, d, NULL);
}

EXPORT int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    resolve();
    if (!spec_path || family(clock) == OTHER || !valid_ts(req))
        return real_clock_nanosleep(clock, flags, req, rem);
    int64_t deadline;
    if (flags & TIMER_ABSTIME) {
        deadline = ts_ns(req);
    } else {
        reading_t r;
        read_clock(clock, &r);
        deadline = r.fake + ts_ns(req);
    }
    int ret = wait_until(clock, deadline, attempt_sleep, NULL, 0);
    if (ret == EINTR && rem && !(flags & TIMER_ABSTIME)) {
        reading_t r;
        read_clock(clock, &r);
        *rem = ns_ts(deadline > r.fake ? deadline - r.fake : 0);
    }
    return ret;
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    int ret = clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem);
    if (ret == 0)
        return 0;
    errno = ret;
    return -1;
}

EXPORT int usleep(useconds_t us)
{
    struct timespec req = ns_ts((int64_t)us * 1000);
    return nanosleep(&req, NULL);
}

EXPORT unsigned int sleep(unsigned int seconds)
{
    struct timespec req = {seconds, 0}, rem = {0, 0};
    if (nanosleep(&req, &rem) == 0)
        return 0;
    return (unsigned int)rem.tv_sec + (rem.tv_nsec > 0);
}

/* ---- relative timeouts: epoll, poll, select ------------------------------------------------ */
/* One real wait of at most `real_ns`; returns what the call returns (> 0 events, 0 timeout, -1). */
typedef int (*poll_fn)(int64_t real_ns, void *ctx);

static int poll_for(int64_t timeout, poll_fn attempt, void *ctx)
{
    reading_t r;
    read_clock(CLOCK_MONOTONIC, &r);
    int64_t deadline = r.fake + timeout;
    for (;;) {
        int ret = attempt(real_slice(&r, deadline - r.fake), ctx);
        if (ret != 0)
            return ret;
        read_clock(CLOCK_MONOTONIC, &r);
        if (r.fake >= deadline)
            return 0;
    }
}

static int ms_up(int64_t ns) { return (int)((ns + 999999) / 1000000); }

typedef struct { int fd; struct epoll_event *events; int max; const sigset_t *mask; int pwait; } epoll_ctx;

static int attempt_epoll(int64_t ns, void *p)
{
    epoll_ctx *x = p;
    return x->pwait ? real_epoll_pwait(x->fd, x->events, x->max, ms_up(ns), x->mask)
                    : real_epoll_wait(x->fd, x->events, x->max, ms_up(ns));
}

EXPORT int epoll_wait(int fd, struct epoll_event *events, int max, int timeout)
{
    resolve();
    if (!spec_path || timeout <= 0)
        return real_epoll_wait(fd, events, max, timeout);
    epoll_ctx x = {fd, events, max, NULL, 0};
    return poll_for((int64_t)timeout * 1000000, attempt_epoll, &x);
}

EXPORT int epoll_pwait(int fd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
    resolve();
    if (!spec_path || timeout <= 0)
        return real_epoll_pwait(fd, events, max, timeout, mask);
    epoll_ctx x = {fd, events, max, mask, 1};
    return poll_for((int64_t)timeout * 1000000, attempt_epoll, &x);
}

static int attempt_epoll2(int64_t ns, void *p)
{
    epoll_ctx *x = p;
    struct timespec ts = ns_ts(ns);
    return real_epoll_pwait2(x->fd, x->events, x->max, &ts, x->mask);
}

EXPORT int epoll_pwait2(int fd, struct epoll_event *events, int max, const struct timespec *timeout,
                        const sigset_t *mask)
{
    resolve();
    if (!real_epoll_pwait2) {
        errno = ENOSYS;
        return -1;
    }
    if (!spec_path || !valid_ts(timeout) || ts_ns(timeout) == 0)
        return real_epoll_pwait2(fd, events, max, timeout, mask);
    epoll_ctx x = {fd, events, max, mask, 1};
    return poll_for(ts_ns(timeout), attempt_epoll2, &x);
}

typedef struct { struct pollfd *fds; nfds_t n; const sigset_t *mask; } poll_ctx;

static int attempt_poll(int64_t ns, void *p)
{
    poll_ctx *x = p;
    return real_poll(x->fds, x->n, ms_up(ns));
}

static int attempt_ppoll(int64_t ns, void *p)
{
    poll_ctx *x = p;
    struct timespec ts = ns_ts(ns);
    return real_ppoll(x->fds, x->n, &ts, x->mask);
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    resolve();
    if (!spec_path || timeout <= 0)
        return real_poll(fds, n, timeout);
    poll_ctx x = {fds, n, NULL};
    return poll_for((int64_t)timeout * 1000000, attempt_poll, &x);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
    resolve();
    if (!spec_path || !valid_ts(timeout) || ts_ns(timeout) == 0)
        return real_ppoll(fds, n, timeout, mask);
    poll_ctx x = {fds, n, mask};
    return poll_for(ts_ns(timeout), attempt_ppoll, &x);
}

/* select() clears the sets when it times out: each slice starts from the caller's sets. */
typedef struct {
    int n;
    fd_set *sets[3];
    fd_set saved[3];
    const sigset_t *mask;
    int pselect;
} select_ctx;

static int attempt_select(int64_t ns, void *p)
{
    select_ctx *x = p;
    for (int i = 0; i < 3; i++)
        if (x->sets[i])
            *x->sets[i] = x->saved[i];
    if (x->pselect) {
        struct timespec ts = ns_ts(ns);
        return real_pselect(x->n, x->sets[0], x->sets[1], x->sets[2], &ts, x->mask);
    }
    struct timeval tv = {(time_t)(ns / NS), (suseconds_t)((ns % NS + 999) / 1000)};
    if (tv.tv_usec >= 1000000) {
        tv.tv_sec += 1;
        tv.tv_usec -= 1000000;
    }
    return real_select(x->n, x->sets[0], x->sets[1], x->sets[2], &tv);
}

static void select_init(select_ctx *x, int n, fd_set *r, fd_set *w, fd_set *e)
{
    x->n = n;
    x->sets[0] = r;
    x->sets[1] = w;
    x->sets[2] = e;
    for (int i = 0; i < 3; i++)
        if (x->sets[i])
            x->saved[i] = *x->sets[i];
}

EXPORT int select(int n, fd_set *restrict r, fd_set *restrict w, fd_set *restrict e,
                  struct timeval *restrict timeout)
{
    resolve();
    if (!spec_path || !timeout || timeout->tv_usec < 0 || timeout->tv_usec >= 1000000 ||
        (timeout->tv_sec == 0 && timeout->tv_usec == 0))
        return real_select(n, r, w, e, timeout);
    select_ctx x;
    select_init(&x, n, r, w, e);
    x.mask = NULL;
    x.pselect = 0;
    reading_t start;
    read_clock(CLOCK_MONOTONIC, &start);
    int64_t total = (timeout->tv_sec >= NS_MAX / NS) ? NS_MAX : (int64_t)timeout->tv_sec * NS + (int64_t)timeout->tv_usec * 1000;
    int ret = poll_for(total, attempt_select, &x);
    /* Linux leaves the time not slept in *timeout; callers that loop on EINTR rely on it. */
    reading_t end;
    read_clock(CLOCK_MONOTONIC, &end);
    int64_t left = total - (end.fake - start.fake);
    if (left < 0)
        left = 0;
    timeout->tv_sec = (time_t)(left / NS);
    timeout->tv_usec = (suseconds_t)(left % NS / 1000);
    return ret;
}

EXPORT int pselect(int n, fd_set *restrict r, fd_set *restrict w, fd_set *restrict e,
                   const struct timespec *restrict timeout, const sigset_t *restrict mask)
{
    resolve();
    if (!spec_path || !valid_ts(timeout) || ts_ns(timeout) == 0)
        return real_pselect(n, r, w, e, timeout, mask);
    select_ctx x;
    select_init(&x, n, r, w, e);
    x.mask = mask;
    x.pselect = 1;
    return poll_for(ts_ns(timeout), attempt_select, &x);
}
