/* test_util.c: unit tests of archevald's utilities (server/util.c and the
 * histogram of server/metrics.c, the page tokens of server/route.c):
 * SHA-256 against the FIPS 180-4 examples, job ids (format, uniqueness,
 * time order), RFC 3339 timestamps, the escaping of logged fields, page
 * tokens (seq and id, the old seq-only form, what is refused, the order
 * they resume in).
 *
 * Single-threaded; each test owns what it allocates. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/sha256.h"
#include "api/status.h"
#include "server/metrics.h"
#include "server/route.h"
#include "server/util.h"

START_TEST(sha256_fips_examples) {
  char hex[65];
  ae_sha256_hex("abc", 3, hex);
  ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad");
  ae_sha256_hex("", 0, hex);
  ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                        "27ae41e4649b934ca495991b7852b855");
  const char *two_blocks =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  ae_sha256_hex(two_blocks, strlen(two_blocks), hex);
  ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039"
                        "a33ce45964ff2167f6ecedd419db06c1");
  /* One million 'a': many full blocks. */
  size_t n = 1000000;
  char *a = malloc(n);
  ck_assert_ptr_nonnull(a);
  memset(a, 'a', n);
  ae_sha256_hex(a, n, hex);
  free(a);
  ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
                        "f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* Streamed in pieces of every size, the hash is the one-shot hash (the
 * FIPS million 'a', and a text whose pieces straddle block edges). */
START_TEST(sha256_streamed_equals_one_shot) {
  size_t n = 1000000;
  char *a = malloc(n);
  ck_assert_ptr_nonnull(a);
  memset(a, 'a', n);
  static const size_t pieces[] = {1, 3, 55, 63, 64, 65, 127, 1000, 4099};
  for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
    ae_sha256_ctx c;
    ae_sha256_init(&c);
    for (size_t off = 0; off < n; off += pieces[k])
      ae_sha256_update(&c, a + off, off + pieces[k] <= n ? pieces[k] : n - off);
    char hex[65];
    ae_sha256_final_hex(&c, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
                          "f1809a48a497200e046d39ccc7112cd0");
  }
  for (size_t len = 0; len < 200; len++) {
    char one[65], streamed[65];
    for (size_t i = 0; i < len; i++)
      a[i] = (char)('0' + (i * 7 + len) % 64);
    ae_sha256_hex(a, len, one);
    ae_sha256_ctx c;
    ae_sha256_init(&c);
    ae_sha256_update(&c, a, len / 3);
    ae_sha256_update(&c, a + len / 3, 0);
    ae_sha256_update(&c, a + len / 3, len - len / 3);
    ae_sha256_final_hex(&c, streamed);
    ck_assert_str_eq(one, streamed);
  }
  free(a);
}
END_TEST

START_TEST(job_ids_sort_in_creation_order) {
  char prev[32] = "";
  for (int i = 0; i < 5000; i++) {
    char id[32];
    ae_job_id_new(id, sizeof id);
    ck_assert_uint_eq(strlen(id), 24);
    ck_assert(!strncmp(id, "j_", 2));
    for (const char *c = id + 2; *c; c++)
      ck_assert(strchr("0123456789abcdefghjkmnpqrstvwxyz", *c) != NULL);
    ck_assert_int_gt(strcmp(id, prev), 0); /* strictly increasing */
    memcpy(prev, id, sizeof id);
  }
}
END_TEST

START_TEST(rfc3339_with_milliseconds) {
  char buf[40];
  ae_format_rfc3339(0, buf, sizeof buf);
  ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
  /* 2026-11-23T00:25:34.123Z */
  ae_format_rfc3339(1795393534123LL, buf, sizeof buf);
  ck_assert_str_eq(buf, "2026-11-23T00:25:34.123Z");
}
END_TEST

START_TEST(log_escape_control_bytes) {
  char out[64];
  /* A forged line: the newline and the CR become \x0a and \x0d. */
  ck_assert_uint_eq(ae_log_escape("/a\n2026 info x\r", out, sizeof out),
                    strlen("/a\\x0a2026 info x\\x0d"));
  ck_assert_str_eq(out, "/a\\x0a2026 info x\\x0d");
  /* Backslash, DEL and bytes over 0x7e too (no ambiguity, valid UTF-8). */
  ae_log_escape("\\\x7f\xff ok", out, sizeof out);
  ck_assert_str_eq(out, "\\x5c\\x7f\\xff ok");
  /* Truncation never splits an escape. */
  char small[6];
  ae_log_escape("ab\ncd", small, sizeof small);
  ck_assert_str_eq(small, "ab");
  ae_log_escape("abcdefgh", small, sizeof small);
  ck_assert_str_eq(small, "abcde");
}
END_TEST

/* Page tokens name the last item's seq and id; the next page starts
 * strictly after that pair in (seq, id) order, so items of one seq at a
 * page boundary are neither skipped nor repeated. */
START_TEST(page_tokens_resume_after_seq_and_id) {
  char tok[AE_PAGE_TOKEN_MAX];
  ae_page_key key;
  ae_page_token_encode(1790000000123456LL, "j_01m94km83z0004b6mysr14", tok,
                       sizeof tok);
  ck_assert_int_eq(ae_page_token_decode(tok, &key), AE_OK);
  ck_assert(key.seq == 1790000000123456LL);
  ck_assert_str_eq(key.id, "j_01m94km83z0004b6mysr14");
  /* A token of the seq alone (what versions before 2026-12-06 gave) still
   * reads, with no id: every item of that seq comes after it. */
  ae_page_token_encode(42, NULL, tok, sizeof tok);
  ck_assert_ptr_null(strchr(tok, '.'));
  ck_assert_int_eq(ae_page_token_decode(tok, &key), AE_OK);
  ck_assert(key.seq == 42 && key.id[0] == '\0');
  ck_assert(!ae_page_key_after(&key, 42, "j_a"));
  ck_assert(ae_page_key_after(&key, 41, "j_z"));
  /* Anything else is refused: another id under the same check, a bad
   * character, an empty or overlong id, garbage. */
  ae_page_token_encode(7, "j_c", tok, sizeof tok);
  char *dot = strchr(tok, '.');
  ck_assert_ptr_nonnull(dot);
  dot[3] = 'q';
  ck_assert_int_eq(ae_page_token_decode(tok, &key), AE_EINVAL);
  dot[3] = 'c';
  ck_assert_int_eq(ae_page_token_decode(tok, &key), AE_OK);
  char bad[AE_PAGE_TOKEN_MAX + 64];
  snprintf(bad, sizeof bad, "%.*s.j c", (int)(dot - tok), tok);
  ck_assert_int_eq(ae_page_token_decode(bad, &key), AE_EINVAL);
  snprintf(bad, sizeof bad, "%.*s.", (int)(dot - tok), tok);
  ck_assert_int_eq(ae_page_token_decode(bad, &key), AE_EINVAL);
  snprintf(bad, sizeof bad, "%.*s.%0*d", (int)(dot - tok), tok, AE_PAGE_ID_MAX,
           0);
  ck_assert_int_eq(ae_page_token_decode(bad, &key), AE_EINVAL);
  ck_assert_int_eq(ae_page_token_decode("zz", &key), AE_EINVAL);
  ck_assert_int_eq(ae_page_token_decode("", &key), AE_EINVAL);
  /* The order: after (7, "j_c") come (7, "j_b") and (6, anything). */
  ck_assert_int_eq(ae_page_token_decode(tok, &key), AE_OK);
  ck_assert(ae_page_key_after(&key, 7, "j_b"));
  ck_assert(!ae_page_key_after(&key, 7, "j_c"));
  ck_assert(!ae_page_key_after(&key, 7, "j_d"));
  ck_assert(ae_page_key_after(&key, 6, "j_z"));
  ck_assert(!ae_page_key_after(&key, 8, "j_a"));
  ae_page_key none = {.seq = -1};
  ck_assert(ae_page_key_after(&none, 1LL << 60, "j_z"));
}
END_TEST

START_TEST(histogram_buckets) {
  static const double bounds[] = {0.1, 1, 10};
  ae_histogram h;
  ae_histogram_init(&h, bounds, 3);
  ae_histogram_observe(&h, 0.05);
  ae_histogram_observe(&h, 0.1); /* le is inclusive */
  ae_histogram_observe(&h, 5);
  ae_histogram_observe(&h, 50);
  ck_assert_uint_eq(h.counts[0], 2);
  ck_assert_uint_eq(h.counts[1], 0);
  ck_assert_uint_eq(h.counts[2], 1);
  ck_assert_uint_eq(h.counts[3], 1);
  ck_assert_uint_eq(h.total, 4);
  ck_assert_double_eq_tol(h.sum, 55.15, 1e-12);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server_util");
  TCase *tc = tcase_create("util");
  tcase_add_test(tc, sha256_fips_examples);
  tcase_add_test(tc, sha256_streamed_equals_one_shot);
  tcase_add_test(tc, job_ids_sort_in_creation_order);
  tcase_add_test(tc, rfc3339_with_milliseconds);
  tcase_add_test(tc, histogram_buckets);
  tcase_add_test(tc, page_tokens_resume_after_seq_and_id);
  tcase_add_test(tc, log_escape_control_bytes);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failures = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failures != 0;
}
