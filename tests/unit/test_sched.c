/*
 * test_sched.c - unit tests of the scheduler core: rt_main lifecycle,
 * spawning (100k, from foreign threads), work spreading over Ps, GOMAXPROCS
 * at run time, deadlock detection (and rt_ref holding it off), 100k parked
 * goroutines past the guard-page budget, errno per goroutine, rt_dump,
 * idle CPU use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/rttest.h"
#include "rt.h"

/* ThreadSanitizer keeps a large state per goroutine (fiber): the 100k
 * shapes run scaled down under it. */
#if defined(__SANITIZE_THREAD__)
#define SCALE 1000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SCALE 1000
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

static const rt_config two = {.gomaxprocs = 2, .stack_size = 0};

/* ---- rt_main lifecycle ---- */

static _Atomic int main_runs;

static void count_main(void *arg)
{
    (void)arg;
    CHECK(rt_in_goroutine());
    CHECK(rt_goid() > 0);
    atomic_fetch_add(&main_runs, 1);
}

static void test_main_many_times(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++)
        assert_int_equal(
            rt_main(i % 2 ? &two : NULL, count_main, NULL, NULL, 0), 0);
    assert_int_equal(atomic_load(&main_runs), 50);
    assert_false(rt_in_goroutine());
    assert_int_equal(rt_goid(), 0);
}

/* ---- 100k goroutines spawned and completed ---- */

#define NSPAWN (100000 / SCALE)
static _Atomic int spawned_done;
static rt_chan *done_ch;

static void spawn_child(void *arg)
{
    (void)arg;
    if (atomic_fetch_add(&spawned_done, 1) + 1 == NSPAWN) {
        int v = 1;
        CHECK_EQ(rt_chan_send(done_ch, &v, RT_FOREVER), 0);
    }
}

static void spawn_main(void *arg)
{
    (void)arg;
    done_ch = rt_chan_make(sizeof(int), 1);
    for (int i = 0; i < NSPAWN; i++)
        CHECK_EQ(rt_go(spawn_child, NULL), 0);
    int v = 0;
    bool ok = false;
    CHECK_EQ(rt_chan_recv(done_ch, &v, &ok, RT_FOREVER), 0);
    CHECK(ok);
    rt_chan_release(done_ch);
}

static void test_spawn_100k(void **state)
{
    (void)state;
    atomic_store(&spawned_done, 0);
    assert_int_equal(rt_main(&two, spawn_main, NULL, NULL, 0), 0);
    assert_int_equal(atomic_load(&spawned_done), NSPAWN);
}

/* ---- work spawned on one P runs on both ---- */

#define NBUSY 64
static pthread_t busy_tid[NBUSY];
static _Atomic int busy_done;

static _Atomic int seen_two;
static int busy_total = NBUSY;
static int64_t busy_wait_ns = 2000000000LL;
static pthread_t first_tid;
static _Atomic int first_set;

/* Records its thread, then keeps its P busy (no yield) until a goroutine
 * on another thread shows up: only another M stealing from this P's queue
 * can end the wait early, so the test does not depend on timing. */
static void busy(void *arg)
{
    int i = (int)(intptr_t)arg;
    pthread_t me = pthread_self();
    busy_tid[i] = me;
    int expect = 0;
    if (atomic_compare_exchange_strong(&first_set, &expect, 1)) {
        first_tid = me;
        atomic_store(&first_set, 2); /* published */
    } else if (atomic_load(&first_set) == 2 && !pthread_equal(first_tid, me)) {
        atomic_store(&seen_two, 1);
    }
    int64_t end = rt_now() + busy_wait_ns;
    while (!atomic_load(&seen_two) && rt_now() < end) {
    }
    if (atomic_fetch_add(&busy_done, 1) + 1 == busy_total) {
        int v = 1;
        rt_chan_send(done_ch, &v, RT_FOREVER);
    }
}

static int distinct_threads(int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            if (pthread_equal(busy_tid[i], busy_tid[j]))
                seen = true;
        d += !seen;
    }
    return d;
}

static void reset_busy(int total, int64_t wait_ns)
{
    busy_total = total;
    busy_wait_ns = wait_ns;
    atomic_store(&busy_done, 0);
    atomic_store(&seen_two, 0);
    atomic_store(&first_set, 0);
}

static void spread_main(void *arg)
{
    (void)arg;
    done_ch = rt_chan_make(sizeof(int), 1);
    reset_busy(NBUSY, 2000000000LL);
    for (int i = 0; i < NBUSY; i++)
        CHECK_EQ(rt_go(busy, (void *)(intptr_t)i), 0);
    int v;
    CHECK_EQ(rt_chan_recv(done_ch, &v, NULL, RT_FOREVER), 0);
    rt_chan_release(done_ch);
}

static void test_work_spreads(void **state)
{
    (void)state;
    assert_int_equal(rt_main(&two, spread_main, NULL, NULL, 0), 0);
    assert_true(atomic_load(&seen_two));
    assert_true(distinct_threads(NBUSY) >= 2);
}

/* ---- GOMAXPROCS at run time ---- */

static void procs_main(void *arg)
{
    (void)arg;
    CHECK_EQ(rt_gomaxprocs(0), 2);
    CHECK_EQ(rt_gomaxprocs(1), 2);
    CHECK_EQ(rt_gomaxprocs(0), 1);
    /* With one P every goroutine runs on one thread at a time; still all
     * complete. */
    done_ch = rt_chan_make(sizeof(int), 1);
    /* One P: nobody can run beside them, so they do not wait. */
    reset_busy(NBUSY, 0);
    for (int i = 0; i < NBUSY; i++)
        CHECK_EQ(rt_go(busy, (void *)(intptr_t)i), 0);
    int v;
    CHECK_EQ(rt_chan_recv(done_ch, &v, NULL, RT_FOREVER), 0);
    CHECK_EQ(rt_gomaxprocs(3), 1);
    CHECK_EQ(rt_gomaxprocs(0), 3);
    reset_busy(NBUSY, 2000000000LL);
    for (int i = 0; i < NBUSY; i++)
        CHECK_EQ(rt_go(busy, (void *)(intptr_t)i), 0);
    CHECK_EQ(rt_chan_recv(done_ch, &v, NULL, RT_FOREVER), 0);
    CHECK(atomic_load(&seen_two));
    CHECK(distinct_threads(NBUSY) >= 2);
    CHECK_EQ(rt_gomaxprocs(2), 3);
    rt_chan_release(done_ch);
}

static void test_gomaxprocs(void **state)
{
    (void)state;
    assert_true(rt_num_cpu() >= 1);
    assert_int_equal(rt_main(&two, procs_main, NULL, NULL, 0), 0);
}

/* ---- foreign threads: spawn and try ops ---- */

static rt_chan *fch;

static void foreign_child(void *arg)
{
    int v = (int)(intptr_t)arg;
    CHECK(rt_in_goroutine());
    CHECK_EQ(rt_chan_send(fch, &v, RT_FOREVER), 0);
}

static void *foreign_thread(void *arg)
{
    (void)arg;
    CHECK(!(rt_in_goroutine()));
    CHECK_EQ(rt_go(foreign_child, (void *)(intptr_t)42), 0);
    int v = 0;
    bool ok = false;
    int r;
    /* Poll from this foreign thread until the goroutine has sent. */
    RTTEST_WAIT((r = rt_chan_recv(fch, &v, &ok, RT_POLL)) != RT_EAGAIN);
    CHECK_EQ(r, 0);
    CHECK(ok);
    CHECK_EQ(v, 42);
    return NULL;
}

static void test_foreign_spawn_and_try(void **state)
{
    (void)state;
    assert_int_equal(rt_start(&two), 0);
    fch = rt_chan_make(sizeof(int), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, foreign_thread, NULL), 0);
    pthread_join(t, NULL);

    /* Try ops on a buffered channel from this (foreign) thread. */
    rt_chan *b = rt_chan_make(sizeof(int), 1);
    int v = 7;
    assert_int_equal(rt_chan_send(b, &v, RT_POLL), 0);
    assert_int_equal(rt_chan_send(b, &v, RT_POLL), RT_EAGAIN);
    /* Blocking calls from a foreign thread are refused. */
    assert_int_equal(rt_chan_send(b, &v, RT_FOREVER), RT_EPERM);
    v = 0;
    assert_int_equal(rt_chan_recv(b, &v, NULL, RT_POLL), 0);
    assert_int_equal(v, 7);
    assert_int_equal(rt_chan_recv(b, &v, NULL, rt_deadline_ms(10)), RT_EPERM);
    rt_chan_release(b);
    rt_stop();
    rt_chan_release(fch);
    /* Start and stop again: a fresh runtime each time. */
    assert_int_equal(rt_start(&two), 0);
    rt_stop();
}

/* ---- deadlock detection ---- */

static rt_chan *dead_ch;

static void deadlock_main(void *arg)
{
    (void)arg;
    rt_chan *c = dead_ch = rt_chan_make(sizeof(int), 0);
    int v;
    rt_chan_recv(c, &v, NULL, RT_FOREVER);
    CHECK_FAIL("recv returned in a deadlock");
}

static void test_deadlock_detected(void **state)
{
    (void)state;
    char buf[4096];
    buf[0] = '\0';
    assert_int_equal(rt_main(&two, deadlock_main, NULL, buf, sizeof(buf)),
                     RT_EDEADLK);
    assert_non_null(strstr(buf, "all goroutines are asleep - deadlock!"));
    assert_non_null(strstr(buf, "chan receive"));
    rt_chan_release(dead_ch);
    assert_string_equal(rt_strerror(RT_EDEADLK),
                        "all goroutines are asleep - deadlock!");
}

static void *late_sender(void *arg)
{
    rt_chan *c = arg;
    rttest_msleep(200);
    int v = 99, r;
    RTTEST_WAIT((r = rt_chan_send(c, &v, RT_POLL)) != RT_EAGAIN);
    CHECK_EQ(r, 0);
    rt_unref();
    return NULL;
}

static pthread_t late_thread;
static rt_chan *late_ch;

static void ref_main(void *arg)
{
    (void)arg;
    rt_chan *c = late_ch = rt_chan_make(sizeof(int), 0);
    rt_ref();
    CHECK_EQ(pthread_create(&late_thread, NULL, late_sender, c), 0);
    int v = 0;
    bool ok = false;
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
    CHECK(ok);
    CHECK_EQ(v, 99);
}

static void test_no_deadlock_with_ref(void **state)
{
    (void)state;
    char buf[256];
    assert_int_equal(rt_main(&two, ref_main, NULL, buf, sizeof(buf)), 0);
    pthread_join(late_thread, NULL);
    rt_chan_release(late_ch);
}

/* A goroutine sleeping on a deadline is not a deadlock. */
static void timeout_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    int v;
    CHECK_EQ(rt_chan_recv(c, &v, NULL, rt_deadline_ms(50)), RT_ETIMEDOUT);
    rt_chan_release(c);
}

static void test_no_deadlock_with_timer(void **state)
{
    (void)state;
    assert_int_equal(rt_main(&two, timeout_main, NULL, NULL, 0), 0);
}

/* ---- 100k parked goroutines (past the guard budget), then released ---- */

#define NPARK (100000 / SCALE)
static _Atomic int parked_done;

static void park_child(void *arg)
{
    rt_chan *c = arg;
    int v;
    bool ok = true;
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
    CHECK(!(ok));
    if (atomic_fetch_add(&parked_done, 1) + 1 == NPARK) {
        int one = 1;
        rt_chan_send(done_ch, &one, RT_FOREVER);
    }
}

static void park_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    done_ch = rt_chan_make(sizeof(int), 1);
    for (int i = 0; i < NPARK; i++)
        CHECK_EQ(rt_go(park_child, c), 0);
    /* Wait until every one is parked on c. */
    while (rt_num_goroutine() != NPARK + 1)
        rt_gosched();
    for (int spins = 0; spins < 100000 / SCALE; spins++) {
        rt_gosched();
    }
    CHECK_EQ(rt_num_goroutine(), NPARK + 1);
    CHECK_EQ(rt_chan_close(c), 0);
    int v;
    CHECK_EQ(rt_chan_recv(done_ch, &v, NULL, RT_FOREVER), 0);
    rt_chan_release(c);
    rt_chan_release(done_ch);
}

static void test_parked_100k(void **state)
{
    (void)state;
    atomic_store(&parked_done, 0);
    assert_int_equal(rt_main(&two, park_main, NULL, NULL, 0), 0);
    assert_int_equal(atomic_load(&parked_done), NPARK);
}

/* ---- errno is per goroutine ---- */

/* errno is read and written in their own non-inlined functions: glibc's
 * __errno_location() is a const function, so within one function the
 * compiler may reuse the address it returned before a yield -- the very
 * thread-local caching rt.h forbids.  What the runtime promises is that a
 * fresh read after a switch gives the goroutine's own value. */
static __attribute__((noinline)) void put_errno(int e)
{
    errno = e;
    __asm__ __volatile__("" ::: "memory");
}

static __attribute__((noinline)) int get_errno(void)
{
    __asm__ __volatile__("" ::: "memory");
    return errno;
}

static void errno_child(void *arg)
{
    int mine = (int)(intptr_t)arg;
    for (int i = 0; i < 1000; i++) {
        put_errno(mine);
        rt_gosched();
        CHECK_EQ(get_errno(), mine);
    }
    int v = 1;
    rt_chan_send(done_ch, &v, RT_FOREVER);
}

static void errno_main(void *arg)
{
    (void)arg;
    done_ch = rt_chan_make(sizeof(int), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(rt_go(errno_child, (void *)(intptr_t)(100 + i)), 0);
    for (int i = 0; i < 8; i++) {
        int v;
        CHECK_EQ(rt_chan_recv(done_ch, &v, NULL, RT_FOREVER), 0);
    }
    rt_chan_release(done_ch);
}

static void test_errno_per_goroutine(void **state)
{
    (void)state;
    /* TSan reports the thread's errno as shared between its fibers (the
     * test reads and writes it around switches): not meaningful there. */
    if (SCALE > 1)
        skip();
    assert_int_equal(rt_main(&two, errno_main, NULL, NULL, 0), 0);
}

/* ---- rt_dump and counts ---- */

static void dump_child(void *arg)
{
    int v;
    rt_chan_recv(arg, &v, NULL, RT_FOREVER);
    rt_chan_release(arg);
}

static void dump_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rt_go(dump_child, rt_chan_retain(c)), 0);
    while (rt_num_goroutine() != 4)
        rt_gosched();
    /* Let them wait a little (a timed receive nobody answers). */
    rt_chan *idle = rt_chan_make(sizeof(int), 0);
    int dummy;
    CHECK_EQ(rt_chan_recv(idle, &dummy, NULL, rt_deadline_ms(20)),
             RT_ETIMEDOUT);
    rt_chan_release(idle);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_NOT_NULL(f);
    rt_dump(f);
    fclose(f);
    CHECK_NOT_NULL(strstr(text, "[chan receive"));
    CHECK_NOT_NULL(strstr(text, "4 goroutines"));
    free(text);
    CHECK(rt_num_threads() >= 1);
    rt_chan_close(c);
    rt_chan_release(c);
    /* The children drop their references as they exit: wait for them, or
     * rt_main abandons them with the channel still referenced (a leak
     * LeakSanitizer reports). */
    while (rt_num_goroutine() > 1)
        rt_gosched();
}

static void test_dump(void **state)
{
    (void)state;
    assert_int_equal(rt_main(&two, dump_main, NULL, NULL, 0), 0);
}

/* ---- an idle runtime does not burn CPU ---- */

static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static rt_chan *idle_ch;

static void idle_child(void *arg)
{
    (void)arg;
    int v;
    /* A long deadline keeps a timer armed while idle. */
    rt_chan_recv(idle_ch, &v, NULL, rt_deadline_ms(60000));
}

static void test_idle_cpu(void **state)
{
    (void)state;
    assert_int_equal(rt_start(&two), 0);
    idle_ch = rt_chan_make(sizeof(int), 0);
    assert_int_equal(rt_go(idle_child, NULL), 0);
    rttest_msleep(50);
    int64_t c0 = cpu_ns();
    rttest_msleep(300);
    int64_t used = cpu_ns() - c0;
    rt_stop();
    rt_chan_release(idle_ch);
    /* Busy polling would use ~300 ms per thread; allow 10%. */
    assert_true(used < 30000000);
}

/* ---- stack overflow dies with a clear message ---- */

static volatile int depth_limit = 1 << 30; /* never reached */

static __attribute__((noinline)) int recurse(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    if (n >= depth_limit)
        return pad[0];
    return recurse(n + 1) + pad[0];
}

static void overflow_main(void *arg)
{
    (void)arg;
    recurse(0);
}

static void test_stack_overflow_message(void **state)
{
    (void)state;
    /* TSan intercepts signal handling and the fault on a fiber stack. */
    if (SCALE > 1)
        skip();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        /* cmocka catches SIGSEGV itself; the runtime only installs its
         * handler over the default disposition. */
        signal(SIGSEGV, SIG_DFL);
        rt_config small = {.gomaxprocs = 1, .stack_size = 64 * 1024};
        rt_main(&small, overflow_main, NULL, NULL, 0);
        _exit(0); /* not reached */
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(out) - 1 &&
           (r = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    /* Killed by a signal (abort, or a sanitizer's own report and exit). */
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0));
    assert_non_null(strstr(out, "overflow"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_many_times),
        cmocka_unit_test(test_spawn_100k),
        cmocka_unit_test(test_work_spreads),
        cmocka_unit_test(test_gomaxprocs),
        cmocka_unit_test(test_foreign_spawn_and_try),
        cmocka_unit_test(test_deadlock_detected),
        cmocka_unit_test(test_no_deadlock_with_ref),
        cmocka_unit_test(test_no_deadlock_with_timer),
        cmocka_unit_test(test_parked_100k),
        cmocka_unit_test(test_errno_per_goroutine),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_idle_cpu),
        cmocka_unit_test(test_stack_overflow_message),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
