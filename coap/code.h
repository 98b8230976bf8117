/* coap/code: the CoAP code vocabulary every layer shares. Methods (one table: names, codes, payload and the
 * HTTP methods that map to them, RFC 8075 §5.1), and response codes (one table: RFC 8075 Table 2's HTTP
 * status and the RFC 7252 §5.9 cacheability of each code). Pure: no I/O, no state. */
#ifndef CO_CODE_H
#define CO_CODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A CoAP code byte: class in the top 3 bits, detail in the low 5 (2.05 = CO_CODE(2, 5) = 69). */
#define CO_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))
#define CO_CODE_CLASS(code) ((code) >> 5)
#define CO_CODE_DETAIL(code) ((code)&0x1f)

enum co_method {
    CO_GET = 1,
    CO_POST = 2,
    CO_PUT = 3,
    CO_DELETE = 4,
    CO_FETCH = 5,
    CO_PATCH = 6,
    CO_IPATCH = 7,
};
#define CO_METHOD_COUNT 7

/* A method as a bit (for sets of methods, such as a route's): 1 << (code - 1). */
#define CO_METHOD_BIT(code) (1u << ((code)-1))
#define CO_METHOD_ALL 0x7fu

/* "GET" ... "iPATCH", NULL when code is not a method. */
const char *co_method_name(uint8_t code);
/* The CoAP method of a canonical method name ("GET" ... "iPATCH", and "IPATCH" for clients that upcase),
 * 0 when there is none. HEAD is not a CoAP method: see co_method_from_http. */
uint8_t co_method_by_name(const char *name);
/* The CoAP method for an HTTP method (RFC 8075 §5.1): HEAD → GET with *head = true. 0 for OPTIONS, TRACE,
 * CONNECT and unknown methods (HTTP method names are case-sensitive, RFC 9110 §9.1). */
uint8_t co_method_from_http(const char *method, bool *head);
/* Whether a request with this method carries the HTTP body as payload (GET and DELETE never do). */
bool co_method_has_payload(uint8_t code);
/* POST, PUT, DELETE, PATCH, iPATCH: methods that change the resource and invalidate what is cached. */
bool co_method_is_unsafe(uint8_t code);

/* Response codes. */
enum { CO_EMPTY_204 = 1, CO_ALLOW_405 = 2, CO_RETRY_AFTER = 4, CO_CACHEABLE = 8 };

struct co_code_info {
    uint8_t code;
    short http;    /* RFC 8075 Table 2; 0: never translated (2.31, 4.08: block-wise only) */
    uint8_t flags; /* CO_* above */
};

/* The row for a response code (its class's generic x.00 when the code is unknown, RFC 7252 §5.9), NULL for
 * codes that are not responses (class 0, 1, 3, 6, 7). */
const struct co_code_info *co_code_info(uint8_t code);
/* A response code: class 2, 4 or 5, except 2.31 Continue (a block-wise step, not an answer). */
bool co_code_is_response(uint8_t code);
/* RFC 7252 §5.9 (and RFC 8132, RFC 8516 for 4.09, 4.22, 4.29): may a cache store this answer? 2.05 and
 * 2.03 (as a refresh), every defined 4.xx and 5.xx; never 2.01/2.02/2.04 or an unknown 2.xx. */
bool co_code_cacheable(uint8_t code);
/* Formats a code as "2.05". buf >= 5 bytes. */
void co_code_format(uint8_t code, char buf[5]);

#endif
