/* fuzz/fuzz_translate: libFuzzer harness for proxy/translate's parsers of untrusted input — the request
 * mapping (path, query, Content-Type, Accept, If-Match, If-None-Match from HTTP clients) and the response
 * mapping (CoAP options from devices). Must never crash, hang or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/translate.h"

/* Splits the input at NUL bytes into up to n strings (missing ones are NULL). */
static void split(char *buf, size_t len, const char **out, size_t n)
{
    size_t k = 0;
    const char *start = buf;
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
    }
    for (size_t i = 0; i <= len && k < n; i++) {
        if (i == len || buf[i] == '\0') {
            out[k++] = start;
            start = buf + i + 1;
        }
    }
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH", "HEAD"};
    static const char *const base[] = {"base", "x y"};
    char *buf = malloc(size + 1);
    const char *f[6];
    struct px_coap_request *out = malloc(sizeof(*out));
    const char *detail = NULL;

    memcpy(buf, data, size);
    buf[size] = '\0';
    co_optset_init(&out->opts);
    split(buf, size, f, 6);
    struct px_http_request in = {
        .method = methods[size % 8],
        .rest = f[0] ? f[0] : "",
        .query = f[1],
        .content_type = f[2],
        .accept = f[3],
        .if_match = f[4],
        .if_none_match = f[5],
        .body_len = size % 3,
    };
    px_request_to_coap(&in, base, size % 3, out, &detail);
    uint16_t cf;
    bool has;
    if (f[2] != NULL) {
        px_media_to_format(f[2], &cf);
    }
    px_accept_to_coap(f[3], &has, &cf);
    uint8_t tag[8];
    if (f[4] != NULL) {
        px_etag_parse(f[4], tag);
    }
    co_optset_fini(&out->opts);
    free(out);
    free(buf);
}

static void fuzz_response(const uint8_t *data, size_t size)
{
    struct co_optset *opts = malloc(sizeof(*opts));
    struct px_http_response out;
    static const char *const base[] = {"a", "b"};

    co_optset_init(opts);
    /* The input is a list of options: number (1 byte), length (1 byte), value. */
    size_t i = 1;
    while (i + 2 <= size) {
        uint16_t number = data[i];
        size_t len = data[i + 1];
        i += 2;
        if (len > size - i) {
            len = size - i;
        }
        co_optset_add(opts, number, data + i, len);
        i += len;
    }
    struct px_coap_response in = {.code = size > 0 ? data[0] : 0, .opts = opts, .payload_len = size};
    px_response_to_http(&in, "/api/", base, size % 3, size % 2 ? "GET, PUT" : NULL, &out);
    char media[128], problem[256];
    px_format_to_media((uint16_t)(size * 257), media, sizeof(media));
    char *detail = malloc(size + 1);
    memcpy(detail, data, size);
    detail[size] = '\0';
    px_problem_json(problem, sizeof(problem), PX_ERR_BAD_GATEWAY, detail);
    free(detail);
    co_optset_fini(opts);
    free(opts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] & 1)) {
        fuzz_response(data + 1, size - 1);
    } else {
        fuzz_request(data, size);
    }
    return 0;
}
