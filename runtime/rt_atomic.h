/*
 * rt_atomic.h - Go's sync/atomic for C: header-only, thin static inline
 * wrappers over C11 <stdatomic.h>.  Public; include it from user code and
 * tests (the runtime itself uses <stdatomic.h> directly).
 *
 * Every operation is sequentially consistent, as Go's are.  Add wraps
 * around on overflow exactly like Go's (two's complement): the arithmetic
 * is done on unsigned values, so no signed overflow (undefined behaviour)
 * ever happens, and C11 defines atomic_fetch_add on signed types to wrap.
 *
 * Names follow Go: rt_atomic_<op>_<type>(ptr, ...).  Add returns the new
 * value (Go's AddInt32); And/Or return the old value (Go 1.23's AndInt32);
 * Swap returns the old value; CompareAndSwap returns true if it swapped.
 */
#ifndef CHAND_RT_ATOMIC_H
#define CHAND_RT_ATOMIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef _Atomic int32_t rt_atomic_int32;
typedef _Atomic int64_t rt_atomic_int64;
typedef _Atomic uint32_t rt_atomic_uint32;
typedef _Atomic uint64_t rt_atomic_uint64;
typedef _Atomic(void *) rt_atomic_ptr;

/* Defines load/store/swap/cas for type T named N over atomic type A. */
#define RT__ATOMIC_BASIC(N, T, A)                                              \
    static inline T rt_atomic_load_##N(A *p)                                   \
    {                                                                          \
        return atomic_load(p);                                                 \
    }                                                                          \
    static inline void rt_atomic_store_##N(A *p, T v)                          \
    {                                                                          \
        atomic_store(p, v);                                                    \
    }                                                                          \
    static inline T rt_atomic_swap_##N(A *p, T v)                              \
    {                                                                          \
        return atomic_exchange(p, v);                                          \
    }                                                                          \
    static inline bool rt_atomic_cas_##N(A *p, T old, T new_v)                 \
    {                                                                          \
        return atomic_compare_exchange_strong(p, &old, new_v);                 \
    }

/* Defines add/and/or for integer type T (unsigned twin U) named N. */
#define RT__ATOMIC_INT(N, T, U, A)                                             \
    RT__ATOMIC_BASIC(N, T, A)                                                  \
    static inline T rt_atomic_add_##N(A *p, T delta)                           \
    {                                                                          \
        /* The new value is computed in U: wraps, never overflows. */          \
        return (T)((U)atomic_fetch_add(p, delta) + (U)delta);                  \
    }                                                                          \
    static inline T rt_atomic_and_##N(A *p, T mask)                            \
    {                                                                          \
        return atomic_fetch_and(p, mask);                                      \
    }                                                                          \
    static inline T rt_atomic_or_##N(A *p, T mask)                             \
    {                                                                          \
        return atomic_fetch_or(p, mask);                                       \
    }

RT__ATOMIC_INT(int32, int32_t, uint32_t, rt_atomic_int32)
RT__ATOMIC_INT(int64, int64_t, uint64_t, rt_atomic_int64)
RT__ATOMIC_INT(uint32, uint32_t, uint32_t, rt_atomic_uint32)
RT__ATOMIC_INT(uint64, uint64_t, uint64_t, rt_atomic_uint64)
RT__ATOMIC_BASIC(ptr, void *, rt_atomic_ptr)

/*
 * Go's atomic.Value for C: holds one void * (NULL until the first Store).
 * Unlike Go it has no type check to make (C pointers are untyped) and
 * storing NULL is allowed.  Zero-initialise it or use RT_ATOMIC_VALUE_INIT.
 */
typedef struct rt_atomic_value {
    _Atomic(void *) v;
} rt_atomic_value;
#define RT_ATOMIC_VALUE_INIT                                                   \
    {                                                                          \
        NULL                                                                   \
    }

/* Returns the value most recently stored (NULL if none). */
static inline void *rt_atomic_value_load(rt_atomic_value *av)
{
    return atomic_load(&av->v);
}
static inline void rt_atomic_value_store(rt_atomic_value *av, void *v)
{
    atomic_store(&av->v, v);
}
/* Stores v and returns the previous value. */
static inline void *rt_atomic_value_swap(rt_atomic_value *av, void *v)
{
    return atomic_exchange(&av->v, v);
}
/* Stores new_v if the value is old; returns true if it did. */
static inline bool rt_atomic_value_cas(rt_atomic_value *av, void *old,
                                       void *new_v)
{
    return atomic_compare_exchange_strong(&av->v, &old, new_v);
}

#undef RT__ATOMIC_BASIC
#undef RT__ATOMIC_INT

#ifdef __cplusplus
}
#endif
#endif /* CHAND_RT_ATOMIC_H */
