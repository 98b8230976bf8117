/* coap/optset: growable option sets. */
#include "coap/optset.h"

#include <stdlib.h>
#include <string.h>

const uint8_t co_optset_no_bytes[1] = {0};

void co_optset_init(struct co_optset *set)
{
    *set = (struct co_optset)CO_OPTSET_INIT;
}

void co_optset_fini(struct co_optset *set)
{
    free(set->opt);
    free(set->buf);
    co_optset_init(set);
}

void co_optset_clear(struct co_optset *set)
{
    set->count = 0;
    set->used = 0;
}

static int grow_opts(struct co_optset *set)
{
    unsigned cap = set->cap != 0 ? set->cap * 2 : 8;
    if (cap > CO_OPT_MAX) {
        cap = CO_OPT_MAX;
    }
    struct co_opt *grown = realloc(set->opt, cap * sizeof(*grown));
    if (grown == NULL) {
        return -1;
    }
    set->opt = grown;
    set->cap = cap;
    return 0;
}

static int grow_buf(struct co_optset *set, size_t need)
{
    size_t cap = set->bufcap != 0 ? set->bufcap : 64;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > CO_OPTBUF_MAX) {
        cap = CO_OPTBUF_MAX;
    }
    uint8_t *grown = realloc(set->buf, cap);
    if (grown == NULL) {
        return -1;
    }
    set->buf = grown;
    set->bufcap = (unsigned)cap;
    return 0;
}

int co_optset_add(struct co_optset *set, uint16_t number, const void *value, size_t len)
{
    if (set->count >= CO_OPT_MAX || len > CO_OPTBUF_MAX - set->used) {
        return -1;
    }
    if (set->count == set->cap && grow_opts(set) != 0) {
        return -1;
    }
    if (set->used + len > set->bufcap && grow_buf(set, set->used + len) != 0) {
        return -1;
    }
    struct co_opt *o = &set->opt[set->count++];
    o->number = number;
    o->len = (uint16_t)len;
    o->off = (uint16_t)set->used;
    if (len > 0) {
        memcpy(set->buf + set->used, value, len);
    }
    set->used += (unsigned)len;
    return 0;
}

int co_optset_add_uint(struct co_optset *set, uint16_t number, uint32_t value)
{
    uint8_t bytes[4];
    size_t n = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint8_t byte = (uint8_t)(value >> shift);
        if (n > 0 || byte != 0) {
            bytes[n++] = byte;
        }
    }
    return co_optset_add(set, number, bytes, n);
}

int co_optset_copy(struct co_optset *dst, const struct co_optset *src)
{
    co_optset_clear(dst);
    for (unsigned i = 0; i < src->count; i++) {
        const struct co_opt *o = &src->opt[i];
        if (co_optset_add(dst, o->number, co_opt_value(src, o), o->len) != 0) {
            co_optset_clear(dst);
            return -1;
        }
    }
    return 0;
}

void co_optset_move(struct co_optset *dst, struct co_optset *src)
{
    co_optset_fini(dst);
    *dst = *src;
    co_optset_init(src);
}

const struct co_opt *co_optset_find(const struct co_optset *set, uint16_t number, unsigned from)
{
    for (unsigned i = from; set != NULL && i < set->count; i++) {
        if (set->opt[i].number == number) {
            return &set->opt[i];
        }
    }
    return NULL;
}

uint32_t co_opt_uint(const uint8_t *value, size_t len)
{
    if (len > 4) {
        return UINT32_MAX;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v = (v << 8) | value[i];
    }
    return v;
}

uint32_t co_max_age(const struct co_optset *set)
{
    const struct co_opt *o = co_optset_find(set, CO_OPT_MAX_AGE, 0);
    if (o == NULL || o->len > 4) {
        return CO_DEFAULT_MAX_AGE;
    }
    return co_opt_uint(co_opt_value(set, o), o->len);
}
