/* fuzz/fuzz_fproxy: libFuzzer harness for proxy/fproxy's parsers of untrusted input — the forward-proxy
 * target URI (request path and query from HTTP clients) and the allow-list rules (configuration) — and
 * the address check (base/addrrule: rules, ports, cg_addr_allowed, cg_addr_normalize). Must never crash,
 * leak, hang or read out of bounds. Never resolves a name (no DNS in a fuzzer): only targets that are IP
 * literals go through px_fp_resolve (AI_NUMERICHOST). */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/fproxy.h"

/* Input: byte 0 picks the mode; the rest is split at the first NUL into two NUL-terminated strings. */
static void fuzz_target(const char *rest, size_t rest_len, const char *query,
                        const struct cg_addr_rule *rules, size_t n)
{
    struct px_fp_target t;
    const char *reason = NULL;
    int st = px_fp_target_parse(rest, rest_len, query, &t, &reason);

    if (st != 0) {
        if (reason == NULL || (st != 400 && st != 500)) {
            abort();
        }
        px_fp_target_fini(&t);
        return;
    }
    if (t.host == NULL || t.path == NULL || strlen(t.host) == 0 || strlen(t.host) > PX_FP_HOST_MAX ||
        t.port == 0) {
        abort();
    }
    if (t.host_kind != PX_FP_HOST_NAME) {
        struct sockaddr_storage out;
        socklen_t len;
        if (px_fp_resolve(&t, rules, n, &out, &len, &reason) == 0 &&
            !cg_addr_allowed(rules, n, &out, t.port)) {
            abort(); /* what resolve returns must pass the check it made */
        }
    }
    px_fp_target_fini(&t);
}

static void fuzz_rule(const char *text, const uint8_t *addr, size_t addr_len)
{
    struct cg_addr_rule r;
    const char *reason = NULL;
    struct sockaddr_storage ss;

    if (cg_addr_rule_parse(text, &r, &reason) != 0) {
        if (reason == NULL) {
            abort();
        }
        return;
    }
    if ((r.family != AF_INET || r.len > 32) && (r.family != AF_INET6 || r.len > 128)) {
        abort();
    }
    memset(&ss, 0, sizeof(ss));
    if (addr_len >= 16) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, addr, 16);
    } else if (addr_len >= 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, addr, 4);
    }
    uint16_t port = (uint16_t)(addr_len * 257);
    if (cg_port_parse(text, strlen(text), &port) == 0 && port == 0) {
        abort(); /* 1..65535 */
    }
    bool allowed = cg_addr_allowed(&r, 1, &ss, port);
    if (ss.ss_family != 0) {
        /* What the client connects to is judged as the address it was made from. */
        struct sockaddr_storage to;
        socklen_t to_len;
        cg_addr_normalize(&ss, port, &to, &to_len);
        if (cg_addr_allowed(&r, 1, &to, port) != allowed) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const rule_texts[] = {"127.0.0.0/8", "::1/128", "224.0.1.187/32:5683", "0.0.0.0/0:*"};
    struct cg_addr_rule rules[4];
    const char *reason;
    char *buf, *rest;
    size_t first, more;

    if (size == 0) {
        return 0;
    }
    buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    first = strlen(buf);
    more = first < size - 1 ? size - 2 - first : 0; /* bytes after the NUL, if there is one */
    if (data[0] & 1) {
        fuzz_rule(buf, (const uint8_t *)buf + first + 1, more);
    } else {
        for (size_t i = 0; i < 4; i++) {
            cg_addr_rule_parse(rule_texts[i], &rules[i], &reason);
        }
        /* rest gets an allocation of exactly its length, so a read past rest_len is caught */
        rest = malloc(first > 0 ? first : 1);
        memcpy(rest, buf, first);
        fuzz_target(rest, first, (data[0] & 2) && first < size - 1 ? buf + first + 1 : NULL, rules,
                    (size_t)(data[0] >> 2) % 5);
        free(rest);
    }
    free(buf);
    return 0;
}
