/*
 * test_registry.c - unit tests of the registry (daemon/registry.c): it
 * answers with codes and never with a request: not found, created once,
 * found again, wrong type (with the existing type's ops), the object
 * limit, a failed init leaving nothing behind, any-type lookups, drop;
 * and of the server-wide fencing-token counter (daemon/holds.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "holds.h"

typedef struct tobj {
    obj o;
    int inits;
} tobj;

static int t_drops, t_finis;

static int t_init(obj *o, dreq *arg)
{
    (void)arg;
    ((tobj *)o)->inits++;
    return 0;
}

static int t_init_fail(obj *o, dreq *arg)
{
    (void)o;
    (void)arg;
    return -1;
}

static void t_fini(obj *o)
{
    (void)o;
    t_finis++;
}

static void t_drop(obj *o)
{
    (void)o;
    t_drops++;
}

static const obj_ops t_a_ops = {
    .type = OBJ_MAP,
    .name = "map",
    .size = sizeof(tobj),
    .init = t_init,
    .fini = t_fini,
    .drop = t_drop,
};
static const obj_ops t_b_ops = {
    .type = OBJ_ATOMIC,
    .name = "atomic",
    .size = sizeof(tobj),
    .init = t_init,
    .fini = t_fini,
    .drop = t_drop,
};
static const obj_ops t_fail_ops = {
    .type = OBJ_WG,
    .name = "wg",
    .size = sizeof(tobj),
    .init = t_init_fail,
};

static int setup(void **state)
{
    (void)state;
    srv_conf.max_objects = 1000;
    t_drops = t_finis = 0;
    return 0;
}

static void test_not_found(void **state)
{
    reg_found f;
    (void)state;

    assert_int_equal(reg_lookup("none", &t_a_ops, false, NULL, &f), REG_ENOENT);
    assert_null(f.o);
    assert_false(f.created);
    /* Any type, without create: also not found, and nothing made. */
    assert_int_equal(reg_lookup("none", NULL, true, NULL, &f), REG_ENOENT);
    assert_int_equal(reg_drop("none"), REG_ENOENT);
}

static void test_create_find_drop(void **state)
{
    int64_t before = atomic_load(&srv_stat.objects);
    reg_found f, g;
    (void)state;

    assert_int_equal(reg_lookup("a1", &t_a_ops, true, NULL, &f), REG_OK);
    assert_non_null(f.o);
    assert_true(f.created);
    assert_string_equal(f.o->name, "a1");
    assert_int_equal(((tobj *)f.o)->inits, 1);
    assert_int_equal(atomic_load(&srv_stat.objects), before + 1);
    /* Found again: the same object, not made twice. */
    assert_int_equal(reg_lookup("a1", &t_a_ops, true, NULL, &g), REG_OK);
    assert_ptr_equal(g.o, f.o);
    assert_false(g.created);
    assert_int_equal(((tobj *)g.o)->inits, 1);
    obj_release(g.o);
    /* Any type finds it too. */
    assert_int_equal(reg_lookup("a1", NULL, false, NULL, &g), REG_OK);
    assert_ptr_equal(g.o, f.o);
    obj_release(g.o);
    /* Dropped: gone from the namespace, alive while referenced. */
    assert_int_equal(reg_drop("a1"), 0);
    assert_int_equal(t_drops, 1);
    assert_int_equal(t_finis, 0);
    assert_true(atomic_load(&f.o->dropped));
    assert_int_equal(atomic_load(&srv_stat.objects), before);
    assert_int_equal(reg_lookup("a1", &t_a_ops, false, NULL, &g), REG_ENOENT);
    obj_release(f.o);
    assert_int_equal(t_finis, 1);
}

static void test_wrong_type(void **state)
{
    reg_found f, g;
    (void)state;

    assert_int_equal(reg_lookup("b1", &t_b_ops, true, NULL, &f), REG_OK);
    assert_int_equal(reg_lookup("b1", &t_a_ops, true, NULL, &g), REG_ETYPE);
    assert_null(g.o);
    assert_ptr_equal(g.have, &t_b_ops);
    assert_false(g.created);
    obj_release(f.o);
    assert_int_equal(reg_drop("b1"), 0);
}

static void test_limit_and_failed_init(void **state)
{
    int64_t before = atomic_load(&srv_stat.objects);
    reg_found f;
    (void)state;

    srv_conf.max_objects = (int)before;
    assert_int_equal(reg_lookup("c1", &t_a_ops, true, NULL, &f), REG_ELIMIT);
    assert_null(f.o);
    srv_conf.max_objects = 1000;
    /* A family whose init fails: nothing is inserted or counted. */
    assert_int_equal(reg_lookup("c2", &t_fail_ops, true, NULL, &f), REG_ENOMEM);
    assert_null(f.o);
    assert_int_equal(atomic_load(&srv_stat.objects), before);
    assert_int_equal(reg_lookup("c2", NULL, false, NULL, &f), REG_ENOENT);
}

/* Many names, all found again: the keyed hash spreads them over the
 * buckets and each chain still finds its own. */
static void test_many_names(void **state)
{
    char name[32];
    reg_found f;
    (void)state;

    srv_conf.max_objects = 100000;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "n.%d", i);
        assert_int_equal(reg_lookup(name, &t_a_ops, true, NULL, &f), REG_OK);
        assert_true(f.created);
        obj_release(f.o);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "n.%d", i);
        assert_int_equal(reg_lookup(name, &t_a_ops, false, NULL, &f), REG_OK);
        assert_string_equal(f.o->name, name);
        obj_release(f.o);
        assert_int_equal(reg_drop(name), 0);
    }
}

/* The token counter only ever rises: a floor below it changes nothing. */
static void test_token_floor(void **state)
{
    uint64_t t0 = hold_token_last();
    (void)state;

    hold_token_floor(t0 + 1000);
    assert_int_equal(hold_token_last(), t0 + 1000);
    hold_token_floor(t0 + 10);
    assert_int_equal(hold_token_last(), t0 + 1000);
    assert_true(hold_token_last() < HOLD_TOKEN_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_not_found, setup),
        cmocka_unit_test_setup(test_create_find_drop, setup),
        cmocka_unit_test_setup(test_wrong_type, setup),
        cmocka_unit_test_setup(test_limit_and_failed_init, setup),
        cmocka_unit_test_setup(test_many_names, setup),
        cmocka_unit_test_setup(test_token_floor, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
