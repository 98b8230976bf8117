/* coap/optset: CoAP option numbers (RFC 7252, 7641, 7959, 8132) and the option set every layer passes
 * around: (number, value) pairs in insertion order, allocated to what they hold. Pure: no I/O, no clock. */
#ifndef CO_OPTSET_H
#define CO_OPTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum co_option {
    CO_OPT_IF_MATCH = 1,
    CO_OPT_URI_HOST = 3,
    CO_OPT_ETAG = 4,
    CO_OPT_IF_NONE_MATCH = 5,
    CO_OPT_OBSERVE = 6,
    CO_OPT_URI_PORT = 7,
    CO_OPT_LOCATION_PATH = 8,
    CO_OPT_URI_PATH = 11,
    CO_OPT_CONTENT_FORMAT = 12,
    CO_OPT_MAX_AGE = 14,
    CO_OPT_URI_QUERY = 15,
    CO_OPT_ACCEPT = 17,
    CO_OPT_LOCATION_QUERY = 20,
    CO_OPT_BLOCK2 = 23,
    CO_OPT_BLOCK1 = 27,
    CO_OPT_SIZE2 = 28,
    CO_OPT_PROXY_URI = 35,
    CO_OPT_PROXY_SCHEME = 39,
    CO_OPT_SIZE1 = 60,
};

#define CO_DEFAULT_MAX_AGE 60 /* RFC 7252 §5.10.5 */

/* Hard bounds of one set: more options or value bytes than this never fit a CoAP message anyway. */
#define CO_OPT_MAX 64
#define CO_OPTBUF_MAX 8192

struct co_opt {
    uint16_t number;
    uint16_t len;
    uint16_t off; /* value is at set->buf + off */
};

/* opt[] and buf grow on demand (doubling) up to the bounds above. A set owns its arrays unless it is a
 * read-only view made by someone else (the cache's stored sets): never fini or add to those. */
struct co_optset {
    unsigned count, cap;   /* options used, allocated */
    unsigned used, bufcap; /* value bytes used, allocated */
    struct co_opt *opt;
    uint8_t *buf;
};

#define CO_OPTSET_INIT                                                                                       \
    {                                                                                                        \
        0, 0, 0, 0, NULL, NULL                                                                               \
    }

/* An empty set; allocates nothing. */
void co_optset_init(struct co_optset *set);
/* Frees the arrays; the set is empty (and reusable) afterwards. */
void co_optset_fini(struct co_optset *set);
/* Empties the set, keeping its memory for reuse. */
void co_optset_clear(struct co_optset *set);
/* Appends a copy of value. Returns 0, or -1 when the set is full (CO_OPT_MAX / CO_OPTBUF_MAX) or out of
 * memory. */
int co_optset_add(struct co_optset *set, uint16_t number, const void *value, size_t len);
/* Appends an unsigned integer option in its minimal encoding (RFC 7252 §3.2). */
int co_optset_add_uint(struct co_optset *set, uint16_t number, uint32_t value);
/* Replaces dst's content by a copy of src (dst must be initialised). 0, or -1 on OOM (dst then empty). */
int co_optset_copy(struct co_optset *dst, const struct co_optset *src);
/* Moves src's arrays into dst (whose own are freed); src is left empty. */
void co_optset_move(struct co_optset *dst, struct co_optset *src);
/* The first option with this number at index >= from, or NULL. Use the returned pointer's index+1 to go on.
 */
const struct co_opt *co_optset_find(const struct co_optset *set, uint16_t number, unsigned from);
/* What an empty set's values point at: never NULL, so callers may pass it to memcpy with length 0. */
extern const uint8_t co_optset_no_bytes[1];

static inline const uint8_t *co_opt_value(const struct co_optset *set, const struct co_opt *o)
{
    return set->buf != NULL ? set->buf + o->off : co_optset_no_bytes;
}
/* Decodes an uint option value (0..4 bytes, big endian); longer values read as UINT32_MAX. */
uint32_t co_opt_uint(const uint8_t *value, size_t len);

/* Max-Age in seconds (RFC 7252 §5.10.5): the option's value; absent, or malformed (longer than 4 bytes),
 * it is the default of 60 (a malformed elective option is ignored, RFC 7252 §5.4.1). The one reader of
 * Max-Age: the cache, the HTTP mapping and the observation client all use it. NULL set: 60. */
uint32_t co_max_age(const struct co_optset *set);

#endif
