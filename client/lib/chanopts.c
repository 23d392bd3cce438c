/*
 * chanopts.c - chand_chan_opts, the options chand_make_opts sends with
 * make (type, max_deliver, dead_letter): owned copies, set one by one.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

chand_chan_opts *chand_chan_opts_new(void)
{
    return calloc(1, sizeof(chand_chan_opts));
}

void chand_chan_opts_free(chand_chan_opts *o)
{
    if (!o)
        return;
    free(o->type);
    free(o->dead_letter);
    free(o);
}

/* Replaces *slot by a copy of s (NULL unsets).  Returns 0 or CHAND_ENOMEM. */
static int set_copy(char **slot, const char *s)
{
    char *dup = NULL;

    if (s && !(dup = strdup(s)))
        return CHAND_ENOMEM;
    free(*slot);
    *slot = dup;
    return 0;
}

int chand_chan_opts_type(chand_chan_opts *o, const char *type)
{
    return o ? set_copy(&o->type, type) : CHAND_EARG;
}

int chand_chan_opts_max_deliver(chand_chan_opts *o, int64_t n)
{
    if (!o || n < 0 || n > 1000000)
        return CHAND_EARG;
    o->max_deliver = n;
    return 0;
}

int chand_chan_opts_dead_letter(chand_chan_opts *o, const char *name)
{
    return o ? set_copy(&o->dead_letter, name) : CHAND_EARG;
}
