/* proxy/policy: the request side of HTTP caching (RFC 9110 §13.1.2, RFC 9111 §5.2.1) as pure functions over
 * header values: which directives the client sent and which entity-tags it already holds. No I/O, no clock;
 * the only allocation is the entity-tag list. */
#ifndef PX_POLICY_H
#define PX_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coap/optset.h"

struct px_etag {
    uint8_t len; /* 1..8 */
    uint8_t bytes[8];
};

/* What a request says about caching. PX_CONDITIONS_INIT is "nothing said". */
struct px_conditions {
    bool no_cache;  /* Cache-Control: no-cache, or Pragma: no-cache: revalidate first */
    bool no_store;  /* Cache-Control: no-store: bypass the cache */
    long max_age;   /* Cache-Control: max-age=N: accept no answer older than N s; -1 when not sent */
    long min_fresh; /* Cache-Control: min-fresh=N: accept only answers fresh for N s more; -1 when not sent */
    bool inm_star;  /* If-None-Match: * */
    unsigned inm_count;
    struct px_etag *inm; /* the entity-tags of If-None-Match that are ours (malloc'd) */
};

#define PX_CONDITIONS_INIT                                                                                   \
    {                                                                                                        \
        .max_age = -1, .min_fresh = -1                                                                       \
    }

/* Whether an entry of this age (s) with this much freshness left (s) satisfies the request's directives
 * (RFC 9111 §5.2.1.1, §5.2.1.3): no no-cache, age within max-age, remaining at least min-fresh. */
bool px_conditions_accept_fresh(const struct px_conditions *c, uint32_t age, uint32_t remaining);
/* Reads Cache-Control, or Pragma when there is no Cache-Control (RFC 9111 §5.4). NULLs are absent fields. */
void px_conditions_parse_cache(struct px_conditions *c, const char *cache_control, const char *pragma);
/* Reads every entity-tag of an If-None-Match list (weak comparison: "W/" is ignored; tags that are not
 * ours can never match and are dropped; out of memory, the tags read so far are kept). */
void px_conditions_parse_inm(struct px_conditions *c, const char *if_none_match);
/* True when If-None-Match was given at all ("*" or at least one of our tags). */
bool px_conditions_has_inm(const struct px_conditions *c);
/* Whether a 200 answer with these options becomes 304 Not Modified: its ETag is listed, or "*" was sent. */
bool px_conditions_not_modified(const struct px_conditions *c, const struct co_optset *opts);
void px_conditions_fini(struct px_conditions *c);

#endif
