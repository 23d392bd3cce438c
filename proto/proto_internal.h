/*
 * proto_internal.h - what proto.c shares with scan.c, its single-pass
 * request scanner: the method table and the indexes built over it at
 * start (proto.c's constructor; read-only afterwards), and two small
 * helpers.  Not installed, not for the daemon or libchand.
 */
#ifndef CHAND_PROTO_INTERNAL_H
#define CHAND_PROTO_INTERNAL_H

#include "proto.h"

/* The methods, in PROTOCOL.md's order (ids are their positions). */
extern proto_method proto__table[];
/* strlen of each method's name, by id. */
extern size_t proto__method_len[];
/* strlen of each parameter name, by method id and parameter index. */
extern uint8_t proto__param_len[][PROTO_MAX_PARAMS];
/* Open-addressed index of the names: table index + 1, 0 = empty. */
extern uint8_t proto__method_slot[256];

/* Returns the slot where the n-byte method name starts its probe. */
static inline unsigned proto__method_hash(const char *name, size_t n)
{
    return (unsigned)(n * 31 + (unsigned char)name[0] * 7 +
                      (unsigned char)name[n / 2] * 3 +
                      (unsigned char)name[n - 1]) &
           255;
}

/* Checks one parameter value against its declared type. */
static inline bool proto__type_ok(const proto_param *p, json_t *v)
{
    switch (p->type) {
    case PROTO_T_STRING:
        return json_is_string(v);
    case PROTO_T_NAME:
        return json_is_string(v) &&
               proto_name_valid(json_string_value(v), json_string_length(v));
    case PROTO_T_INT:
        return json_is_integer(v);
    case PROTO_T_UINT:
        return json_is_integer(v) && json_integer_value(v) >= 0;
    case PROTO_T_ANY:
        return true;
    case PROTO_T_OBJECT:
        return json_is_object(v);
    case PROTO_T_ARRAY:
    case PROTO_T_CASES:
        return json_is_array(v);
    case PROTO_T_BOOL:
        return json_is_boolean(v);
    }
    return false;
}

#endif /* CHAND_PROTO_INTERNAL_H */
