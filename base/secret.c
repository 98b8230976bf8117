/* base/secret: secret files and constant-time comparison. The only allocations are the file buffer and a
 * list's item array; both are zeroed before they are freed. */
#include "base/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/pct.h"

__attribute__((format(printf, 3, 4))) static int fail(char *reason, size_t cap, const char *fmt, ...)
{
    if (cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int fail_errno(char *reason, size_t cap, int err)
{
    if (err == ENOENT) {
        return fail(reason, cap, "does not exist");
    }
    char text[64];
    /* The GNU strerror_r (we build with _GNU_SOURCE) returns the text, maybe a static one. */
    return fail(reason, cap, "cannot be read: %s", strerror_r(err, text, sizeof(text)));
}

/* The rules on what may hold a secret, checked on the path before opening it and on the open file after. */
static int check_stat(const struct stat *st, char *reason, size_t cap)
{
    if (!S_ISREG(st->st_mode)) {
        return fail(reason, cap, "is not a regular file");
    }
    if ((st->st_mode & 077) != 0) {
        return fail(reason, cap, "is readable by group or others; chmod 600 it");
    }
    if (st->st_size > CG_SECRET_FILE_MAX) {
        return fail(reason, cap, "is larger than 1 MiB");
    }
    return 0;
}

/* Reads up to size bytes; one more byte than fstat said means the file grew meanwhile, which is refused
 * rather than read half. */
static int read_all(int fd, size_t size, uint8_t **data, size_t *len, char *reason, size_t cap)
{
    uint8_t *p = malloc(size + 1);
    if (p == NULL) {
        return fail(reason, cap, "cannot be read: out of memory");
    }
    size_t got = 0;
    while (got < size + 1) {
        ssize_t n = read(fd, p + got, size + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int err = errno;
            cg_secret_free(p, size + 1);
            return fail_errno(reason, cap, err);
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got > size) {
        cg_secret_free(p, size + 1);
        return fail(reason, cap, "changed while it was read");
    }
    p[got] = '\0';
    *data = p;
    *len = got;
    return 0;
}

int cg_secret_file_read(const char *path, uint8_t **data, size_t *len, char *reason, size_t reason_cap)
{
    *data = NULL;
    *len = 0;
    /* stat first, so a FIFO or a device is refused before it is opened (opening some has side effects). */
    struct stat st;
    if (stat(path, &st) != 0) {
        return fail_errno(reason, reason_cap, errno);
    }
    if (check_stat(&st, reason, reason_cap) != 0) {
        return -1;
    }
    /* O_NONBLOCK: should the path have become a FIFO since stat, open must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return fail_errno(reason, reason_cap, errno);
    }
    /* What counts is the file that was opened, not the one stat saw. */
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        fail_errno(reason, reason_cap, errno);
    } else if (check_stat(&st, reason, reason_cap) == 0) {
        rc = read_all(fd, (size_t)st.st_size, data, len, reason, reason_cap);
    }
    close(fd);
    return rc;
}

void cg_secret_free(void *p, size_t len)
{
    if (p != NULL) {
        explicit_bzero(p, len);
        free(p);
    }
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Finds the next secret in buf[*pos..len): the next line that is neither blank nor a comment, stripped.
 * Returns 1 with *start and *slen set (and *pos past that line), or 0 at the end. */
static int next_secret(const char *buf, size_t len, size_t *pos, size_t *start, size_t *slen)
{
    while (*pos < len) {
        size_t s = *pos;
        const char *nl = memchr(buf + s, '\n', len - s);
        size_t e = nl != NULL ? (size_t)(nl - buf) : len;
        *pos = nl != NULL ? e + 1 : len;
        while (s < e && is_blank(buf[s])) {
            s++;
        }
        while (e > s && is_blank(buf[e - 1])) {
            e--;
        }
        if (e > s && buf[s] != '#') {
            *start = s;
            *slen = e - s;
            return 1;
        }
    }
    return 0;
}

int cg_secret_list_read(const char *path, struct cg_secret_list *list, char *reason, size_t reason_cap)
{
    *list = (struct cg_secret_list)CG_SECRET_LIST_INIT;
    uint8_t *data;
    size_t len;
    if (cg_secret_file_read(path, &data, &len, reason, reason_cap) != 0) {
        return -1;
    }
    char *buf = (char *)data;
    size_t count = 0, pos = 0, start, slen;
    while (next_secret(buf, len, &pos, &start, &slen)) {
        count++;
    }
    if (count == 0) {
        cg_secret_free(buf, len);
        return fail(reason, reason_cap, "holds no secret");
    }
    struct cg_secret *items = calloc(count, sizeof(*items));
    if (items == NULL) {
        cg_secret_free(buf, len);
        return fail(reason, reason_cap, "cannot be read: out of memory");
    }
    pos = 0;
    for (size_t i = 0; i < count && next_secret(buf, len, &pos, &start, &slen); i++) {
        /* The byte after a secret is a blank, the line's LF or the buffer's final NUL, all past the line
         * next_secret has already read, so it can become the secret's terminator. */
        buf[start + slen] = '\0';
        items[i] = (struct cg_secret){.bytes = buf + start, .len = slen};
    }
    *list = (struct cg_secret_list){.items = items, .count = count, .buf = buf, .buf_len = len};
    return 0;
}

void cg_secret_list_free(struct cg_secret_list *list)
{
    /* The items are pointers and lengths, but a secret's length is still worth not leaving behind. */
    cg_secret_free(list->items, list->count * sizeof(*list->items));
    cg_secret_free(list->buf, list->buf_len + 1);
    *list = (struct cg_secret_list)CG_SECRET_LIST_INIT;
}

/* Decodes the hex digits line[0..n) into key. The caller checked that the result fits. */
static int decode_hex(const char *line, size_t n, struct cg_secret_key *key, char *reason, size_t cap)
{
    if (n % 2 != 0) {
        return fail(reason, cap, "is not hex: it has an odd number of digits");
    }
    for (size_t i = 0; i < n; i += 2) {
        int hi = cg_hexval(line[i]), lo = cg_hexval(line[i + 1]);
        if (hi < 0 || lo < 0) {
            return fail(reason, cap, "is not hex: it holds a character other than 0-9, a-f, A-F");
        }
        key->bytes[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    key->len = n / 2;
    return 0;
}

static int parse_key(const char *buf, size_t len, bool hex, struct cg_secret_key *key, char *reason,
                     size_t cap)
{
    const char *nl = memchr(buf, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - buf) : len;
    if (n > 0 && buf[n - 1] == '\r') {
        n--;
    }
    if (n == 0) {
        return fail(reason, cap, "holds no key (its first line is empty)");
    }
    if ((hex ? n / 2 : n) > CG_SECRET_KEY_MAX) {
        return fail(reason, cap, "holds a key longer than %d bytes", CG_SECRET_KEY_MAX);
    }
    if (hex) {
        return decode_hex(buf, n, key, reason, cap);
    }
    memcpy(key->bytes, buf, n);
    key->len = n;
    return 0;
}

int cg_secret_key_read(const char *path, bool hex, struct cg_secret_key *key, char *reason, size_t reason_cap)
{
    cg_secret_key_clear(key);
    uint8_t *data;
    size_t len;
    if (cg_secret_file_read(path, &data, &len, reason, reason_cap) != 0) {
        return -1;
    }
    int rc = parse_key((const char *)data, len, hex, key, reason, reason_cap);
    cg_secret_free(data, len + 1);
    if (rc != 0) {
        /* A failed hex decode may have written some bytes already. */
        cg_secret_key_clear(key);
    }
    return rc;
}

void cg_secret_key_clear(struct cg_secret_key *key)
{
    explicit_bzero(key, sizeof(*key));
}

bool cg_secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* volatile reads: the compiler may neither stop at the first difference nor skip bytes. The branches
     * depend on i and the lengths only. */
    const volatile uint8_t *pa = a, *pb = b;
    size_t n = alen > blen ? alen : blen;
    unsigned diff = alen != blen;
    for (size_t i = 0; i < n; i++) {
        uint8_t x = i < alen ? pa[i] : 0;
        uint8_t y = i < blen ? pb[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}
