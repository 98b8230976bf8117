/* proxy/auth: the authentication decision of a route, as pure functions over the request's header values.
 *
 * A route is protected by one scheme: a bearer token (RFC 6750 §2.1, `Authorization: Bearer <token>`) or an
 * API key in a header of the route's choosing (such as X-API-Key). The accepted secrets are given when the
 * struct is built; it keeps only their SHA-256 digests. A candidate is hashed once and its digest compared
 * with every accepted digest, with no early exit, by cg_secret_equal: the time of a check depends neither on
 * the secrets nor on which one matched, and not on their lengths; only on the candidate's own length and on
 * how many secrets the route has.
 *
 * Results: PX_AUTH_MISSING is answered 401 with px_auth_challenge as WWW-Authenticate; PX_AUTH_WRONG is
 * answered 403.
 *
 * Ownership: px_auth_new copies what it needs (the header name, the digests); the description and its
 * secrets may be freed (cg_secret_list_free) as soon as it returns. Free the result with px_auth_free.
 *
 * Threads: a built struct px_auth is immutable: any thread may check against it at the same time.
 *
 * Secrets: no function here logs, and no reason text holds a secret or a part of one. */
#ifndef PX_AUTH_H
#define PX_AUTH_H

#include <stddef.h>

#include "base/secret.h"

enum px_auth_scheme { PX_AUTH_BEARER = 1, PX_AUTH_API_KEY = 2 };

enum px_auth_result {
    PX_AUTH_OK = 0,      /* the credential is one of the route's secrets */
    PX_AUTH_MISSING = 1, /* 401: no credential at all */
    PX_AUTH_WRONG = 2,   /* 403: a credential of another scheme, a malformed one, or a wrong value */
};

#define PX_AUTH_HEADER_MAX 64 /* the longest API-key header name */

/* What a route's authentication is, independent of the configuration format. */
struct px_auth_desc {
    enum px_auth_scheme scheme;
    const char *header;              /* PX_AUTH_API_KEY: the request header holding the key; else unused */
    const struct cg_secret *secrets; /* the accepted secrets (such as a cg_secret_list's items) */
    size_t secrets_len;              /* at least 1 */
};

struct px_auth;

/* Builds a route's authentication. Refused, with a reason in reason[0..reason_cap) (NUL-terminated; size
 * CG_SECRET_REASON_MAX is enough): an unknown scheme; an API-key header name that is empty, longer than
 * PX_AUTH_HEADER_MAX, not an RFC 9110 token, or Authorization (that is the bearer scheme); no secret or an
 * empty one; a bearer secret with a character outside RFC 6750's b64token (ALPHA DIGIT - . _ ~ + /, then
 * '=' only at the end), or an API key with a control character, since a client could never send either.
 * Returns 0 with *out set, or -1 (*out is NULL; also when memory runs out or SHA-256 is not available). */
int px_auth_new(const struct px_auth_desc *desc, struct px_auth **out, char *reason, size_t reason_cap);

void px_auth_free(struct px_auth *auth);

enum px_auth_scheme px_auth_scheme(const struct px_auth *auth);

/* The header an API-key route reads its key from (as configured), or NULL for a bearer route. */
const char *px_auth_header(const struct px_auth *auth);

/* Decides a request. authorization is its Authorization value, api_key the value of px_auth_header (pass
 * NULL for a bearer route); NULL or "" is an absent header. The values are as libmicrohttpd gives them
 * (surrounding whitespace already removed).
 * - bearer: no Authorization → MISSING. "Bearer" (any case), one or more spaces, then a b64token and nothing
 *   else, matching a secret → OK. Any other scheme (Basic …), a missing token, a tab instead of spaces, a
 *   character outside b64token, or a token that matches no secret → WRONG.
 * - api_key: a key that matches a secret → OK, else WRONG. No key but an Authorization header (a credential
 *   of another scheme) → WRONG. Neither → MISSING.
 * auth NULL (a route without authentication) → OK. */
enum px_auth_result px_auth_check(const struct px_auth *auth, const char *authorization, const char *api_key);

/* Writes the WWW-Authenticate value of a 401 into buf: `Bearer realm="coapgw"` for a bearer route,
 * `ApiKey header="X-API-Key"` (the configured name) for an API-key route. Returns its length, or -1 when
 * len is too small (buf then holds a truncated, NUL-terminated text). */
int px_auth_challenge(const struct px_auth *auth, char *buf, size_t len);

#endif
