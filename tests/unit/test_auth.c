/* Unit tests for base/secret (secret files, constant-time equality) and proxy/auth (bearer and API-key
 * decisions, challenges). Files live in a mkdtemp directory that the fixture removes. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/secret.h"
#include "proxy/auth.h"

/* ---- fixture: one temporary directory per test case ---- */

static char dir[64];
static char reason[CG_SECRET_REASON_MAX];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/coapgw-auth-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The path of name inside the temporary directory (a static buffer per call site is enough here). */
static const char *path_of(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Writes a file of these bytes and mode (set with fchmod, so the umask does not matter). */
static const char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    static char paths[8][128];
    static unsigned next;
    char *p = paths[next++ % 8];
    path_of(name, p, 128);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text), 0600);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- secret files ---- */

START_TEST(test_a_private_regular_file_is_read_whole)
{
    const char *p = write_text("ok", "abc\n");
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, reason, sizeof(reason)), 0);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(data, "abc\n", 5); /* NUL-terminated */
    cg_secret_free(data, len);
}
END_TEST

START_TEST(test_a_missing_file_is_refused)
{
    char p[128];
    uint8_t *data = (uint8_t *)"x";
    size_t len = 1;
    ck_assert_int_eq(cg_secret_file_read(path_of("nope", p, sizeof(p)), &data, &len, reason, sizeof(reason)),
                     -1);
    ck_assert_str_eq(reason, "does not exist");
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(test_a_file_readable_by_group_or_others_is_refused)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0602};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        const char *p = write_file("shared", "s3cret\n", 7, modes[i]);
        uint8_t *data;
        size_t len;
        ck_assert_int_eq(cg_secret_file_read(p, &data, &len, reason, sizeof(reason)), -1);
        ck_assert_str_eq(reason, "is readable by group or others; chmod 600 it");
        ck_assert_ptr_null(strstr(reason, "s3cret"));
    }
    /* 0400 is as private as 0600. */
    const char *p = write_file("readonly", "s3cret\n", 7, 0400);
    struct cg_secret_list list;
    ck_assert_int_eq(cg_secret_list_read(p, &list, reason, sizeof(reason)), 0);
    cg_secret_list_free(&list);
}
END_TEST

START_TEST(test_a_fifo_is_refused_at_once)
{
    char p[128];
    path_of("fifo", p, sizeof(p));
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    uint8_t *data;
    size_t len;
    double t0 = now_s();
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, reason, sizeof(reason)), -1);
    ck_assert_double_lt(now_s() - t0, 1.0);
    ck_assert_str_eq(reason, "is not a regular file");
}
END_TEST

START_TEST(test_a_directory_is_refused)
{
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(cg_secret_file_read(dir, &data, &len, reason, sizeof(reason)), -1);
    ck_assert_str_eq(reason, "is not a regular file");
}
END_TEST

START_TEST(test_a_symlink_is_followed_and_its_target_mode_checked)
{
    char link_ok[128], link_bad[128];
    const char *priv = write_text("private", "tok\n");
    const char *pub = write_file("public", "tok\n", 4, 0644);
    ck_assert_int_eq(symlink(priv, path_of("to-private", link_ok, sizeof(link_ok))), 0);
    ck_assert_int_eq(symlink(pub, path_of("to-public", link_bad, sizeof(link_bad))), 0);
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(cg_secret_file_read(link_ok, &data, &len, reason, sizeof(reason)), 0);
    ck_assert_uint_eq(len, 4);
    cg_secret_free(data, len);
    ck_assert_int_eq(cg_secret_file_read(link_bad, &data, &len, reason, sizeof(reason)), -1);
    ck_assert_str_eq(reason, "is readable by group or others; chmod 600 it");
}
END_TEST

START_TEST(test_a_file_over_one_mib_is_refused_and_one_mib_is_read)
{
    const char *p = write_text("big", "");
    ck_assert_int_eq(truncate(p, CG_SECRET_FILE_MAX + 1), 0);
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, reason, sizeof(reason)), -1);
    ck_assert_str_eq(reason, "is larger than 1 MiB");
    ck_assert_int_eq(truncate(p, CG_SECRET_FILE_MAX), 0);
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, reason, sizeof(reason)), 0);
    ck_assert_uint_eq(len, CG_SECRET_FILE_MAX);
    cg_secret_free(data, len);
}
END_TEST

START_TEST(test_a_short_reason_buffer_is_truncated_not_overrun)
{
    char small[8];
    const char *p = write_file("shared", "x", 1, 0644);
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, small, sizeof(small)), -1);
    ck_assert_str_eq(small, "is read");
    ck_assert_int_eq(cg_secret_file_read(p, &data, &len, NULL, 0), -1);
}
END_TEST

/* ---- secret lists ---- */

static void assert_item(const struct cg_secret_list *l, size_t i, const char *want)
{
    ck_assert_uint_gt(l->count, i);
    ck_assert_uint_eq(l->items[i].len, strlen(want));
    ck_assert_str_eq(l->items[i].bytes, want);
}

START_TEST(test_comments_and_blank_lines_are_skipped)
{
    const char *p = write_text("list", "# tokens for the sensors route\n"
                                       "\n"
                                       "alpha\n"
                                       "   # an indented comment\n"
                                       " \t \n"
                                       "beta#not-a-comment\n"
                                       "gamma");
    struct cg_secret_list l;
    ck_assert_int_eq(cg_secret_list_read(p, &l, reason, sizeof(reason)), 0);
    ck_assert_uint_eq(l.count, 3);
    assert_item(&l, 0, "alpha");
    assert_item(&l, 1, "beta#not-a-comment");
    assert_item(&l, 2, "gamma");
    cg_secret_list_free(&l);
    ck_assert_ptr_null(l.items);
    ck_assert_uint_eq(l.count, 0);
}
END_TEST

START_TEST(test_crlf_and_surrounding_blanks_are_stripped)
{
    const char *p = write_text("crlf", "one\r\n\ttwo  \r\n\r\n  three four\t\r\n");
    struct cg_secret_list l;
    ck_assert_int_eq(cg_secret_list_read(p, &l, reason, sizeof(reason)), 0);
    ck_assert_uint_eq(l.count, 3);
    assert_item(&l, 0, "one");
    assert_item(&l, 1, "two");
    assert_item(&l, 2, "three four"); /* inner blanks are the secret's own */
    cg_secret_list_free(&l);
}
END_TEST

START_TEST(test_an_empty_file_holds_no_secret)
{
    static const char *const texts[] = {"", "\n\n", "# only a comment\n", " \t\r\n#x\n"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *p = write_text("empty", texts[i]);
        struct cg_secret_list l;
        ck_assert_int_eq(cg_secret_list_read(p, &l, reason, sizeof(reason)), -1);
        ck_assert_str_eq(reason, "holds no secret");
        ck_assert_ptr_null(l.items);
        ck_assert_ptr_null(l.buf);
    }
}
END_TEST

START_TEST(test_a_list_file_must_be_private_too)
{
    const char *p = write_file("list", "alpha\n", 6, 0604);
    struct cg_secret_list l;
    ck_assert_int_eq(cg_secret_list_read(p, &l, reason, sizeof(reason)), -1);
    ck_assert_str_eq(reason, "is readable by group or others; chmod 600 it");
}
END_TEST

/* ---- single keys ---- */

static int read_key(const char *text, bool hex, struct cg_secret_key *k)
{
    return cg_secret_key_read(write_text("key", text), hex, k, reason, sizeof(reason));
}

START_TEST(test_a_raw_key_is_the_first_line_without_its_line_end)
{
    struct cg_secret_key k;
    ck_assert_int_eq(read_key("secretPSK\nignored second line\n", false, &k), 0);
    ck_assert_uint_eq(k.len, 9);
    ck_assert_mem_eq(k.bytes, "secretPSK", 9);
    ck_assert_int_eq(read_key(" with spaces \r\n", false, &k), 0);
    ck_assert_uint_eq(k.len, 13);
    ck_assert_mem_eq(k.bytes, " with spaces ", 13);
    ck_assert_int_eq(read_key("no-newline", false, &k), 0);
    ck_assert_uint_eq(k.len, 10);
    cg_secret_key_clear(&k);
    ck_assert_uint_eq(k.len, 0);
    ck_assert_uint_eq(k.bytes[0], 0);
}
END_TEST

START_TEST(test_a_hex_key_is_decoded_in_either_case)
{
    struct cg_secret_key k;
    ck_assert_int_eq(read_key("00ff7Fa0\r\n", true, &k), 0);
    ck_assert_uint_eq(k.len, 4);
    ck_assert_mem_eq(k.bytes, "\x00\xff\x7f\xa0", 4);
}
END_TEST

START_TEST(test_a_hex_key_of_odd_length_is_refused)
{
    struct cg_secret_key k;
    ck_assert_int_eq(read_key("abc\n", true, &k), -1);
    ck_assert_str_eq(reason, "is not hex: it has an odd number of digits");
    ck_assert_uint_eq(k.len, 0);
}
END_TEST

START_TEST(test_a_hex_key_with_a_bad_digit_is_refused_and_zeroed)
{
    struct cg_secret_key k;
    ck_assert_int_eq(read_key("a1b2c3g4\n", true, &k), -1);
    ck_assert_str_eq(reason, "is not hex: it holds a character other than 0-9, a-f, A-F");
    ck_assert_uint_eq(k.len, 0);
    ck_assert_uint_eq(k.bytes[0], 0); /* "a1" was decoded before "g4" was seen */
    ck_assert_int_eq(read_key("a1 b2\n", true, &k), -1);
    ck_assert_int_eq(read_key("0x10\n", true, &k), -1);
}
END_TEST

START_TEST(test_a_key_longer_than_64_bytes_is_refused)
{
    char text[200];
    struct cg_secret_key k;
    memset(text, 'a', 128);
    strcpy(text + 128, "\n");
    ck_assert_int_eq(read_key(text, true, &k), 0); /* 128 digits: 64 bytes */
    ck_assert_uint_eq(k.len, 64);
    memset(text, 'a', 130);
    strcpy(text + 130, "\n");
    ck_assert_int_eq(read_key(text, true, &k), -1);
    ck_assert_str_eq(reason, "holds a key longer than 64 bytes");
    text[64] = '\n';
    text[65] = '\0';
    ck_assert_int_eq(read_key(text, false, &k), 0);
    ck_assert_uint_eq(k.len, 64);
    text[64] = 'a';
    ck_assert_int_eq(read_key(text, false, &k), -1);
    ck_assert_str_eq(reason, "holds a key longer than 64 bytes");
}
END_TEST

START_TEST(test_an_empty_first_line_holds_no_key)
{
    struct cg_secret_key k;
    ck_assert_int_eq(read_key("", false, &k), -1);
    ck_assert_str_eq(reason, "holds no key (its first line is empty)");
    ck_assert_int_eq(read_key("\r\nkey on the second line\n", false, &k), -1);
    ck_assert_int_eq(read_key("\n", true, &k), -1);
    ck_assert_str_eq(reason, "holds no key (its first line is empty)");
}
END_TEST

/* ---- constant-time equality ---- */

START_TEST(test_equal_secrets_of_any_length_are_equal)
{
    static const size_t lens[] = {0, 1, 7, 31, 32, 33, 64, 100};
    uint8_t a[100], b[100];
    for (size_t i = 0; i < sizeof(a); i++) {
        a[i] = b[i] = (uint8_t)(i * 37 + 11);
    }
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        ck_assert(cg_secret_equal(a, lens[i], b, lens[i]));
    }
    ck_assert(cg_secret_equal(NULL, 0, NULL, 0));
}
END_TEST

START_TEST(test_secrets_differing_anywhere_are_unequal)
{
    uint8_t a[64], b[64];
    for (size_t at = 0; at < sizeof(a); at++) {
        memset(a, 'x', sizeof(a));
        memset(b, 'x', sizeof(b));
        b[at] ^= 0x01;
        ck_assert(!cg_secret_equal(a, sizeof(a), b, sizeof(b)));
        b[at] ^= 0x81; /* a high-bit-only difference */
        ck_assert(!cg_secret_equal(a, sizeof(a), b, sizeof(b)));
    }
}
END_TEST

START_TEST(test_a_prefix_or_a_longer_secret_is_unequal)
{
    ck_assert(!cg_secret_equal("secret", 6, "secret2", 7));
    ck_assert(!cg_secret_equal("secret2", 7, "secret", 6));
    ck_assert(!cg_secret_equal("", 0, "s", 1));
    ck_assert(!cg_secret_equal("s", 1, NULL, 0));
    /* The shorter side reads as zeros past its end, which must still not equal real zero bytes. */
    ck_assert(!cg_secret_equal("ab\0", 3, "ab", 2));
}
END_TEST

/* ---- proxy/auth ---- */

static const struct cg_secret tokens[] = {
    {"mF_9.B5f-4.1JqM", 15},
    {"second+token/with==", 19},
};

static struct px_auth *bearer(void)
{
    struct px_auth *a;
    struct px_auth_desc d = {.scheme = PX_AUTH_BEARER, .secrets = tokens, .secrets_len = 2};
    ck_assert_int_eq(px_auth_new(&d, &a, reason, sizeof(reason)), 0);
    return a;
}

static struct px_auth *api_key(void)
{
    static const struct cg_secret keys[] = {{"k-123 with space", 16}, {"other", 5}};
    struct px_auth *a;
    struct px_auth_desc d = {
        .scheme = PX_AUTH_API_KEY, .header = "X-API-Key", .secrets = keys, .secrets_len = 2};
    ck_assert_int_eq(px_auth_new(&d, &a, reason, sizeof(reason)), 0);
    return a;
}

START_TEST(test_bearer_accepts_every_listed_token)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "Bearer mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "Bearer second+token/with==", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_scheme(a), PX_AUTH_BEARER);
    ck_assert_ptr_null(px_auth_header(a));
    px_auth_free(a);
}
END_TEST

START_TEST(test_bearer_scheme_is_case_insensitive)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "bearer mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "BEARER mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "bEaReR mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    px_auth_free(a);
}
END_TEST

START_TEST(test_bearer_allows_several_spaces_but_no_tab)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "Bearer  mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "Bearer     mF_9.B5f-4.1JqM", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "Bearer\tmF_9.B5f-4.1JqM", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "BearermF_9.B5f-4.1JqM", NULL), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

START_TEST(test_bearer_without_authorization_is_missing)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, NULL, NULL), PX_AUTH_MISSING);
    ck_assert_int_eq(px_auth_check(a, "", NULL), PX_AUTH_MISSING);
    /* An API key means nothing to a bearer route. */
    ck_assert_int_eq(px_auth_check(a, NULL, "mF_9.B5f-4.1JqM"), PX_AUTH_MISSING);
    px_auth_free(a);
}
END_TEST

START_TEST(test_bearer_without_a_token_is_wrong)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "Bearer", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Bearer ", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Bearer   ", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Bearer ==", NULL), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

START_TEST(test_another_scheme_is_wrong)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "Basic dXNlcjpwYXNz", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Basic mF_9.B5f-4.1JqM", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Digest username=\"x\"", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "mF_9.B5f-4.1JqM", NULL), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

START_TEST(test_a_token_with_a_forbidden_character_is_wrong)
{
    struct px_auth *a = bearer();
    static const char *const bad[] = {
        "Bearer mF_9.B5f-4.1JqM ",
        "Bearer mF_9.B5f-4.1JqM,x",
        "Bearer mF_9 B5f-4.1JqM",
        "Bearer mF_9\"B5f",
        "Bearer a=b",
        "Bearer second+token/with==x",
        "Bearer t\xc3\xa9st",
        "Bearer tok;x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(px_auth_check(a, bad[i], NULL), PX_AUTH_WRONG);
    }
    px_auth_free(a);
}
END_TEST

START_TEST(test_a_well_formed_unknown_token_is_wrong)
{
    struct px_auth *a = bearer();
    ck_assert_int_eq(px_auth_check(a, "Bearer mF_9.B5f-4.1Jq", NULL), PX_AUTH_WRONG);   /* a prefix */
    ck_assert_int_eq(px_auth_check(a, "Bearer mF_9.B5f-4.1JqMM", NULL), PX_AUTH_WRONG); /* longer */
    ck_assert_int_eq(px_auth_check(a, "Bearer mf_9.b5f-4.1jqm", NULL), PX_AUTH_WRONG);  /* tokens keep case */
    ck_assert_int_eq(px_auth_check(a, "Bearer second+token/with=", NULL), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

START_TEST(test_api_key_missing_wrong_and_right)
{
    struct px_auth *a = api_key();
    ck_assert_str_eq(px_auth_header(a), "X-API-Key");
    ck_assert_int_eq(px_auth_scheme(a), PX_AUTH_API_KEY);
    ck_assert_int_eq(px_auth_check(a, NULL, NULL), PX_AUTH_MISSING);
    ck_assert_int_eq(px_auth_check(a, NULL, ""), PX_AUTH_MISSING);
    ck_assert_int_eq(px_auth_check(a, NULL, "k-123"), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, NULL, "K-123 WITH SPACE"), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, NULL, "k-123 with space"), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, NULL, "other"), PX_AUTH_OK);
    /* The right key wins whatever Authorization says. */
    ck_assert_int_eq(px_auth_check(a, "Basic eDp5", "other"), PX_AUTH_OK);
    px_auth_free(a);
}
END_TEST

START_TEST(test_api_key_route_given_only_authorization_is_wrong)
{
    struct px_auth *a = api_key();
    ck_assert_int_eq(px_auth_check(a, "Bearer other", NULL), PX_AUTH_WRONG);
    ck_assert_int_eq(px_auth_check(a, "Basic eDp5", ""), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

START_TEST(test_a_route_without_auth_lets_everything_through)
{
    ck_assert_int_eq(px_auth_check(NULL, NULL, NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(NULL, "Basic eDp5", NULL), PX_AUTH_OK);
}
END_TEST

START_TEST(test_challenges_name_the_scheme)
{
    char buf[64];
    struct px_auth *b = bearer(), *k = api_key();
    ck_assert_int_eq(px_auth_challenge(b, buf, sizeof(buf)), 21);
    ck_assert_str_eq(buf, "Bearer realm=\"coapgw\"");
    ck_assert_int_eq(px_auth_challenge(k, buf, sizeof(buf)), 25);
    ck_assert_str_eq(buf, "ApiKey header=\"X-API-Key\"");
    ck_assert_int_eq(px_auth_challenge(b, buf, 21), -1);
    ck_assert_int_eq(px_auth_challenge(b, buf, 22), 21);
    px_auth_free(b);
    px_auth_free(k);
}
END_TEST

static int build(enum px_auth_scheme scheme, const char *header, const char *secret)
{
    struct cg_secret s = {secret, secret != NULL ? strlen(secret) : 0};
    struct px_auth_desc d = {.scheme = scheme, .header = header, .secrets = &s, .secrets_len = 1};
    struct px_auth *a = (struct px_auth *)&d; /* must be reset to NULL on failure */
    int rc = px_auth_new(&d, &a, reason, sizeof(reason));
    if (rc == 0) {
        px_auth_free(a);
    } else {
        ck_assert_ptr_null(a);
        /* A reason never quotes the secret. */
        ck_assert(secret == NULL || secret[0] == '\0' || strstr(reason, secret) == NULL);
    }
    return rc;
}

START_TEST(test_a_description_that_no_client_could_meet_is_refused)
{
    ck_assert_int_eq(build(PX_AUTH_BEARER, NULL, "has space"), -1);
    ck_assert_str_eq(reason, "secret #1 is not a bearer token (RFC 6750 b64token: A-Z a-z 0-9 - . _ ~ + /, "
                             "then = at the end)");
    ck_assert_int_eq(build(PX_AUTH_BEARER, NULL, "a=b"), -1);
    ck_assert_int_eq(build(PX_AUTH_BEARER, NULL, ""), -1);
    ck_assert_str_eq(reason, "secret #1 is empty");
    ck_assert_int_eq(build(PX_AUTH_API_KEY, "X-API-Key", "ctl\x01key"), -1);
    ck_assert_str_eq(reason, "secret #1 has a control character, which a header cannot carry");
    ck_assert_int_eq(build(PX_AUTH_API_KEY, NULL, "k3y"), -1);
    ck_assert_str_eq(reason, "an api_key route needs a header name");
    ck_assert_int_eq(build(PX_AUTH_API_KEY, "X API Key", "k3y"), -1);
    ck_assert_str_eq(reason, "header name is not an HTTP token (RFC 9110 section 5.6.2)");
    ck_assert_int_eq(build(PX_AUTH_API_KEY, "X-Key\"", "k3y"), -1);
    ck_assert_int_eq(build(PX_AUTH_API_KEY, "authorization", "k3y"), -1);
    ck_assert_str_eq(reason, "header name must not be Authorization (use the bearer type)");
    ck_assert_int_eq(build((enum px_auth_scheme)7, NULL, "k3y"), -1);
    ck_assert_str_eq(reason, "unknown authentication type");
    ck_assert_int_eq(build(PX_AUTH_API_KEY, "X-API-Key", "tab\tinside is fine"), 0);

    struct px_auth_desc none = {.scheme = PX_AUTH_BEARER};
    struct px_auth *a;
    ck_assert_int_eq(px_auth_new(&none, &a, reason, sizeof(reason)), -1);
    ck_assert_str_eq(reason, "holds no secret");
}
END_TEST

START_TEST(test_a_list_file_feeds_a_route_and_may_be_freed_at_once)
{
    const char *p = write_text("tokens", "# sensors\r\nabc123\r\n\r\nxyz789==\r\n");
    struct cg_secret_list l;
    ck_assert_int_eq(cg_secret_list_read(p, &l, reason, sizeof(reason)), 0);
    struct px_auth_desc d = {.scheme = PX_AUTH_BEARER, .secrets = l.items, .secrets_len = l.count};
    struct px_auth *a;
    ck_assert_int_eq(px_auth_new(&d, &a, reason, sizeof(reason)), 0);
    cg_secret_list_free(&l);
    ck_assert_int_eq(px_auth_check(a, "Bearer abc123", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "Bearer xyz789==", NULL), PX_AUTH_OK);
    ck_assert_int_eq(px_auth_check(a, "Bearer sensors", NULL), PX_AUTH_WRONG);
    px_auth_free(a);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("secret files");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_a_private_regular_file_is_read_whole);
    tcase_add_test(tc, test_a_missing_file_is_refused);
    tcase_add_test(tc, test_a_file_readable_by_group_or_others_is_refused);
    tcase_add_test(tc, test_a_fifo_is_refused_at_once);
    tcase_add_test(tc, test_a_directory_is_refused);
    tcase_add_test(tc, test_a_symlink_is_followed_and_its_target_mode_checked);
    tcase_add_test(tc, test_a_file_over_one_mib_is_refused_and_one_mib_is_read);
    tcase_add_test(tc, test_a_short_reason_buffer_is_truncated_not_overrun);
    suite_add_tcase(s, tc);

    tc = tcase_create("secret lists");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_comments_and_blank_lines_are_skipped);
    tcase_add_test(tc, test_crlf_and_surrounding_blanks_are_stripped);
    tcase_add_test(tc, test_an_empty_file_holds_no_secret);
    tcase_add_test(tc, test_a_list_file_must_be_private_too);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_a_raw_key_is_the_first_line_without_its_line_end);
    tcase_add_test(tc, test_a_hex_key_is_decoded_in_either_case);
    tcase_add_test(tc, test_a_hex_key_of_odd_length_is_refused);
    tcase_add_test(tc, test_a_hex_key_with_a_bad_digit_is_refused_and_zeroed);
    tcase_add_test(tc, test_a_key_longer_than_64_bytes_is_refused);
    tcase_add_test(tc, test_an_empty_first_line_holds_no_key);
    suite_add_tcase(s, tc);

    tc = tcase_create("equality");
    tcase_add_test(tc, test_equal_secrets_of_any_length_are_equal);
    tcase_add_test(tc, test_secrets_differing_anywhere_are_unequal);
    tcase_add_test(tc, test_a_prefix_or_a_longer_secret_is_unequal);
    suite_add_tcase(s, tc);

    tc = tcase_create("bearer");
    tcase_add_test(tc, test_bearer_accepts_every_listed_token);
    tcase_add_test(tc, test_bearer_scheme_is_case_insensitive);
    tcase_add_test(tc, test_bearer_allows_several_spaces_but_no_tab);
    tcase_add_test(tc, test_bearer_without_authorization_is_missing);
    tcase_add_test(tc, test_bearer_without_a_token_is_wrong);
    tcase_add_test(tc, test_another_scheme_is_wrong);
    tcase_add_test(tc, test_a_token_with_a_forbidden_character_is_wrong);
    tcase_add_test(tc, test_a_well_formed_unknown_token_is_wrong);
    suite_add_tcase(s, tc);

    tc = tcase_create("api key and routes");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_api_key_missing_wrong_and_right);
    tcase_add_test(tc, test_api_key_route_given_only_authorization_is_wrong);
    tcase_add_test(tc, test_a_route_without_auth_lets_everything_through);
    tcase_add_test(tc, test_challenges_name_the_scheme);
    tcase_add_test(tc, test_a_description_that_no_client_could_meet_is_refused);
    tcase_add_test(tc, test_a_list_file_feeds_a_route_and_may_be_freed_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
