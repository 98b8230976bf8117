/* coap/code: the method and response-code tables. */
#include "coap/code.h"

#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Methods (RFC 7252 §12.1.1, RFC 8132 §2-3), indexed by code - 1. */
static const struct {
    const char *name;
    bool payload; /* the HTTP body goes along as payload */
    bool unsafe;  /* changes the resource (RFC 9110 §9.2.1) */
} method_table[CO_METHOD_COUNT] = {
    [CO_GET - 1] = {"GET", false, false},     [CO_POST - 1] = {"POST", true, true},
    [CO_PUT - 1] = {"PUT", true, true},       [CO_DELETE - 1] = {"DELETE", false, true},
    [CO_FETCH - 1] = {"FETCH", true, false},  [CO_PATCH - 1] = {"PATCH", true, true},
    [CO_IPATCH - 1] = {"iPATCH", true, true},
};

const char *co_method_name(uint8_t code)
{
    return code >= 1 && code <= CO_METHOD_COUNT ? method_table[code - 1].name : NULL;
}

uint8_t co_method_by_name(const char *name)
{
    for (uint8_t code = 1; name != NULL && code <= CO_METHOD_COUNT; code++) {
        if (strcmp(name, method_table[code - 1].name) == 0) {
            return code;
        }
    }
    return name != NULL && strcmp(name, "IPATCH") == 0 ? CO_IPATCH : 0;
}

uint8_t co_method_from_http(const char *method, bool *head)
{
    *head = method != NULL && strcmp(method, "HEAD") == 0;
    return *head ? CO_GET : co_method_by_name(method);
}

bool co_method_has_payload(uint8_t code)
{
    return code >= 1 && code <= CO_METHOD_COUNT && method_table[code - 1].payload;
}

bool co_method_is_unsafe(uint8_t code)
{
    return code >= 1 && code <= CO_METHOD_COUNT && method_table[code - 1].unsafe;
}

/* Response codes: RFC 8075 §7 Table 2 (note numbers are the RFC's), plus the codes later RFCs define with
 * an obvious HTTP twin. CACHEABLE per RFC 7252 §5.9: 2.05, 2.03, every 4.xx and 5.xx. */
static const struct co_code_info code_table[] = {
    {CO_CODE(2, 1), 201, 0},                              /* 2.01 Created             note 1 */
    {CO_CODE(2, 2), 200, CO_EMPTY_204},                   /* 2.02 Deleted 200 / 204   note 2 */
    {CO_CODE(2, 3), 304, CO_CACHEABLE},                   /* 2.03 Valid               notes 3, 4 */
    {CO_CODE(2, 4), 200, CO_EMPTY_204},                   /* 2.04 Changed 200 / 204   note 2 */
    {CO_CODE(2, 5), 200, CO_CACHEABLE},                   /* 2.05 Content */
    {CO_CODE(2, 31), 0, 0},                               /* 2.31 Continue N/A        note 10 */
    {CO_CODE(4, 0), 400, CO_CACHEABLE},                   /* 4.00 Bad Request */
    {CO_CODE(4, 1), 403, CO_CACHEABLE},                   /* 4.01 Unauthorized        note 5 */
    {CO_CODE(4, 2), 500, CO_CACHEABLE},                   /* 4.02 Bad Option          note 6 */
    {CO_CODE(4, 3), 403, CO_CACHEABLE},                   /* 4.03 Forbidden */
    {CO_CODE(4, 4), 404, CO_CACHEABLE},                   /* 4.04 Not Found */
    {CO_CODE(4, 5), 400, CO_CACHEABLE | CO_ALLOW_405},    /* 4.05 Method Not Allowed  note 7 */
    {CO_CODE(4, 6), 406, CO_CACHEABLE},                   /* 4.06 Not Acceptable */
    {CO_CODE(4, 8), 0, 0},                                /* 4.08 Request Entity Incomplete note 10 */
    {CO_CODE(4, 9), 409, CO_CACHEABLE},                   /* 4.09 Conflict (RFC 8132) */
    {CO_CODE(4, 12), 412, CO_CACHEABLE},                  /* 4.12 Precondition Failed */
    {CO_CODE(4, 13), 413, CO_CACHEABLE},                  /* 4.13 Request Entity Too Large note 11 */
    {CO_CODE(4, 15), 415, CO_CACHEABLE},                  /* 4.15 Unsupported Content-Format */
    {CO_CODE(4, 22), 422, CO_CACHEABLE},                  /* 4.22 Unprocessable Entity (RFC 8132) */
    {CO_CODE(4, 29), 429, CO_CACHEABLE | CO_RETRY_AFTER}, /* 4.29 Too Many Requests (RFC 8516) */
    {CO_CODE(5, 0), 500, CO_CACHEABLE},                   /* 5.00 Internal Server Error */
    {CO_CODE(5, 1), 501, CO_CACHEABLE},                   /* 5.01 Not Implemented */
    {CO_CODE(5, 2), 502, CO_CACHEABLE},                   /* 5.02 Bad Gateway */
    {CO_CODE(5, 3), 503, CO_CACHEABLE | CO_RETRY_AFTER},  /* 5.03 Service Unavailable note 8 */
    {CO_CODE(5, 4), 504, CO_CACHEABLE},                   /* 5.04 Gateway Timeout */
    {CO_CODE(5, 5), 502, CO_CACHEABLE},                   /* 5.05 Proxying Not Supported note 9 */
};

/* A code missing above is read as its class's generic x.00 (RFC 7252 §5.9); an unknown success code must
 * not be cached (RFC 7252 §5.6). */
static const struct co_code_info class_table[] = {
    {CO_CODE(2, 0), 200, 0},
    {CO_CODE(4, 0), 400, CO_CACHEABLE},
    {CO_CODE(5, 0), 500, CO_CACHEABLE},
};

const struct co_code_info *co_code_info(uint8_t code)
{
    for (size_t i = 0; i < COUNT(code_table); i++) {
        if (code_table[i].code == code) {
            return &code_table[i];
        }
    }
    for (size_t i = 0; i < COUNT(class_table); i++) {
        if (CO_CODE_CLASS(class_table[i].code) == CO_CODE_CLASS(code)) {
            return &class_table[i];
        }
    }
    return NULL;
}

bool co_code_is_response(uint8_t code)
{
    unsigned cls = CO_CODE_CLASS(code);
    return (cls == 2 || cls == 4 || cls == 5) && code != CO_CODE(2, 31);
}

bool co_code_cacheable(uint8_t code)
{
    const struct co_code_info *row = co_code_info(code);
    return row != NULL && (row->flags & CO_CACHEABLE) != 0;
}

void co_code_format(uint8_t code, char buf[5])
{
    unsigned detail = CO_CODE_DETAIL(code);
    buf[0] = (char)('0' + CO_CODE_CLASS(code));
    buf[1] = '.';
    buf[2] = (char)('0' + detail / 10);
    buf[3] = (char)('0' + detail % 10);
    buf[4] = '\0';
}
