/* Unit tests for base/siphash: SipHash-1-3 against independent reference values (CPython 3.11's bytes hash
 * with PYTHONHASHSEED=0, which is SipHash-1-3 with an all-zero key), and the properties callers rely on. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/siphash.h"

START_TEST(test_zero_key_matches_cpython_reference_values)
{
    /* PYTHONHASHSEED=0 python3 -c 'print(hash(b"a") & (2**64 - 1))', and so on. */
    static const struct {
        const char *in;
        size_t len;
        uint64_t want;
    } v[] = {
        {"a", 1, 4644417185603328019ULL},
        {"abcdefgh", 8, 4574395652268504554ULL},
        {"0123456789abcde", 15, 2807106383851130827ULL},
        {"\x00\x01\x02\x03\x04\x05\x06\x07\x08", 9, 8471974163824919394ULL},
    };
    struct cg_siphash_key zero = {0, 0};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        ck_assert_uint_eq(cg_siphash13(&zero, v[i].in, v[i].len), v[i].want);
    }
}
END_TEST

START_TEST(test_the_result_does_not_depend_on_alignment)
{
    uint8_t buf[64 + 8];
    struct cg_siphash_key key = {0x0123456789abcdefULL, 0xfedcba9876543210ULL};
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 37 + 11);
    }
    uint64_t aligned = cg_siphash13(&key, buf, 64);
    for (size_t off = 1; off < 8; off++) {
        memmove(buf + off, buf + off - 1, 64);
        ck_assert_uint_eq(cg_siphash13(&key, buf + off, 64), aligned);
    }
}
END_TEST

START_TEST(test_different_keys_give_different_hashes)
{
    struct cg_siphash_key a, b;
    cg_siphash_key_random(&a);
    cg_siphash_key_random(&b);
    ck_assert(a.k0 != b.k0 || a.k1 != b.k1);
    ck_assert_uint_ne(cg_siphash13(&a, "client", 6), cg_siphash13(&b, "client", 6));
}
END_TEST

START_TEST(test_empty_input_is_hashed_with_its_length)
{
    struct cg_siphash_key key = {1, 2};
    ck_assert_uint_ne(cg_siphash13(&key, NULL, 0), cg_siphash13(&key, "", 1));
}
END_TEST

static Suite *siphash_suite(void)
{
    Suite *s = suite_create("siphash");
    TCase *tc = tcase_create("siphash-1-3");
    tcase_add_test(tc, test_zero_key_matches_cpython_reference_values);
    tcase_add_test(tc, test_the_result_does_not_depend_on_alignment);
    tcase_add_test(tc, test_different_keys_give_different_hashes);
    tcase_add_test(tc, test_empty_input_is_hashed_with_its_length);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(siphash_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
