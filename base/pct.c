/* base/pct: percent-decoding. No allocation, no state. */
#include "base/pct.h"

int cg_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

long cg_pct_decoded_len(const char *in, size_t len)
{
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        if (in[i] != '%') {
            i++;
            continue;
        }
        if (i + 2 >= len || cg_hexval(in[i + 1]) < 0 || cg_hexval(in[i + 2]) < 0) {
            return -1;
        }
        i += 3;
    }
    return n;
}

long cg_pct_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    long n = cg_pct_decoded_len(in, len);
    if (n < 0 || (size_t)n > cap) {
        return -1;
    }
    for (size_t i = 0, o = 0; i < len; o++) {
        if (in[i] == '%') {
            out[o] = (uint8_t)(cg_hexval(in[i + 1]) * 16 + cg_hexval(in[i + 2]));
            i += 3;
        } else {
            out[o] = (uint8_t)in[i++];
        }
    }
    return n;
}
