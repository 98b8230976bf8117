/* base/pct: the percent codec of RFC 3986 §2.1, shared by URI translation and configuration. Pure. */
#ifndef CG_PCT_H
#define CG_PCT_H

#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit (either case), or -1. */
int cg_hexval(char c);

/* Decoded length of a percent-encoded span, -1 for a malformed escape ("%G1", a trailing "%" or "%4").
 * '+' is an ordinary character: form encoding is not URI encoding. */
long cg_pct_decoded_len(const char *in, size_t len);

/* Percent-decodes in[0..len) into out (capacity cap). Returns the decoded length, or -1 for a malformed
 * escape or when out is too small. */
long cg_pct_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
