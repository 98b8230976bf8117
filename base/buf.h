/* base/buf: a growable byte buffer with a hard limit, for request bodies and generated text. */
#ifndef CG_BUF_H
#define CG_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_buf {
    uint8_t *p; /* malloc'd, NULL while empty */
    size_t len, cap;
};

#define CG_BUF_INIT                                                                                          \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

/* Appends n bytes, growing by doubling (at least 256 bytes). Returns 0, or -1 when len + n would pass
 * limit or memory runs out (the buffer is then unchanged). */
int cg_buf_append(struct cg_buf *b, const void *data, size_t n, size_t limit);

/* Hands the bytes over: returns p (the caller frees it) and leaves b empty. */
uint8_t *cg_buf_take(struct cg_buf *b, size_t *len);

void cg_buf_free(struct cg_buf *b);

#endif
