/* base/buf: growable buffers. */
#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

static int reserve(struct cg_buf *b, size_t need, size_t limit)
{
    if (need > limit) {
        return -1;
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *grown = realloc(b->p, cap);
    if (grown == NULL) {
        return -1;
    }
    b->p = grown;
    b->cap = cap;
    return 0;
}

int cg_buf_append(struct cg_buf *b, const void *data, size_t n, size_t limit)
{
    if (n > limit - b->len || reserve(b, b->len + n, limit) != 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
    }
    return 0;
}

uint8_t *cg_buf_take(struct cg_buf *b, size_t *len)
{
    uint8_t *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void cg_buf_free(struct cg_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
