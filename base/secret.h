/* base/secret: reading secret files (bearer tokens, API keys, PSKs) and comparing secrets in constant time.
 *
 * A secret file must be a regular file (a symbolic link to one is followed; the target's mode is checked) of
 * at most CG_SECRET_FILE_MAX bytes that neither group nor others may access (mode & 077 == 0). A FIFO or a
 * device is refused without blocking.
 *
 * Errors: the readers return 0, or -1 with a short reason written into reason[0..reason_cap) (always
 * NUL-terminated when reason_cap > 0), such as "is readable by group or others; chmod 600 it". The caller
 * builds the full message (`FILE: field: reason`). A reason never holds a byte of the file.
 *
 * Ownership: what a reader fills in belongs to the caller, who releases it with the matching free/clear
 * function; those zero the bytes (explicit_bzero) before freeing. Every buffer that held file bytes along
 * the way is zeroed too.
 *
 * Threads: the functions keep no state; a filled-in list or key is never changed by this module and may be
 * read from any thread. */
#ifndef CG_SECRET_H
#define CG_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CG_SECRET_FILE_MAX (1024 * 1024) /* bytes; a larger file is refused */
#define CG_SECRET_KEY_MAX 64             /* bytes of a decoded key */
#define CG_SECRET_REASON_MAX 128         /* a reason buffer of this size is never truncated */

/* Reads the whole file at path into *data (malloc'd, NUL-terminated after *len bytes; release it with
 * cg_secret_free(*data, *len)). Returns 0, or -1 with a reason (*data is then NULL). */
int cg_secret_file_read(const char *path, uint8_t **data, size_t *len, char *reason, size_t reason_cap);

/* Zeroes p[0..len) and frees p. NULL is fine. */
void cg_secret_free(void *p, size_t len);

/* One secret of a list: bytes[0..len), 1 <= len, NUL-terminated (a secret is not expected to hold a NUL,
 * but len is what counts). Points into the owning list's buffer. */
struct cg_secret {
    const char *bytes;
    size_t len;
};

struct cg_secret_list {
    struct cg_secret *items; /* count >= 1 after a successful read */
    size_t count;
    char *buf; /* owns the bytes every item points into */
    size_t buf_len;
};

#define CG_SECRET_LIST_INIT                                                                                  \
    {                                                                                                        \
        NULL, 0, NULL, 0                                                                                     \
    }

/* Reads a list of secrets, one per line: blank lines and lines whose first non-blank byte is '#' are
 * skipped; spaces, tabs, CR and LF around a secret are stripped (so CRLF files work). A file with no secret
 * at all is refused ("holds no secret"). Returns 0, or -1 with a reason (*list is then empty). */
int cg_secret_list_read(const char *path, struct cg_secret_list *list, char *reason, size_t reason_cap);

/* Zeroes and frees what the list owns and leaves it empty (CG_SECRET_LIST_INIT). */
void cg_secret_list_free(struct cg_secret_list *list);

/* A single key, such as a DTLS PSK: 1..CG_SECRET_KEY_MAX bytes. */
struct cg_secret_key {
    uint8_t bytes[CG_SECRET_KEY_MAX];
    size_t len;
};

/* Reads a key file: its first line, with the line end (LF or CRLF) stripped and nothing else. With hex, the
 * line is decoded from hex digits (either case, an even number of them) into bytes. The key must be 1 to
 * CG_SECRET_KEY_MAX bytes long (after decoding). Returns 0, or -1 with a reason (*key is then zeroed). */
int cg_secret_key_read(const char *path, bool hex, struct cg_secret_key *key, char *reason,
                       size_t reason_cap);

/* Zeroes the key. */
void cg_secret_key_clear(struct cg_secret_key *key);

/* Whether a[0..alen) and b[0..blen) are the same bytes. The running time depends on alen and blen only,
 * never on the bytes or on where they first differ: every byte of the longer span is read. To hide the
 * lengths too, compare fixed-size digests of the secrets (proxy/auth does). NULL is fine with a length 0. */
bool cg_secret_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
