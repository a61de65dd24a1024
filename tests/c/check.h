/*
 * A tiny harness for the wdpool C test programs.
 *
 *   CHECK(cond)                      counts a pass, or prints file:line and
 *                                    the condition and counts a failure.
 *   CHECK_EQ(actual, expected)       integers, printing both on failure.
 *   CHECK_STR(actual, expected)      NUL-terminated strings (NULL allowed).
 *   CHECK_CONTAINS(haystack, needle) strstr, printing both on failure.
 *   CHECK_RC(call, expected)         `call` is a wdpool call whose last
 *                                    argument is CHECK_ERR; checks its result
 *                                    code, and the wdpool_error contract:
 *                                    written on failure (with the same code
 *                                    and a non-empty message), untouched on
 *                                    success. Prints the message on failure.
 *   CHECK_RC_MSG(call, expected, s)  CHECK_RC, and the message contains `s`.
 *   CHECK_RC_BOTH(call, expected)    CHECK_RC, then the same call again with
 *                                    CHECK_ERR as NULL (must not crash).
 *   KNOWN_BUG(fmt, ...)              prints a "KNOWN BUG" line instead of
 *                                    asserting; counted apart.
 *   check_summary("test_x")          prints "test_x: N passed, M failed" and
 *                                    returns the process exit code.
 *
 * CHECK_RC fails to compile (-Werror=unused-variable) when `call` does not
 * use CHECK_ERR: passing NULL instead is tested with CHECK_RC_BOTH or CHECK.
 * Every macro may be used from any thread.
 */
#ifndef WDPOOL_TESTS_CHECK_H
#define WDPOOL_TESTS_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "wdpool.h"

static atomic_ulong check_passed_;
static atomic_ulong check_failed_;
static atomic_ulong check_known_bugs_;

static inline bool check_record_(bool ok, const char *file, int line, const char *what, const char *detail) {
  if (ok) {
    atomic_fetch_add(&check_passed_, 1);
    return true;
  }
  atomic_fetch_add(&check_failed_, 1);
  fprintf(stderr, "%s:%d: FAILED: %s%s%s\n", file, line, what, detail != NULL ? ": " : "",
          detail != NULL ? detail : "");
  fflush(stderr);
  return false;
}

#define CHECK(cond) check_record_((cond) ? true : false, __FILE__, __LINE__, #cond, NULL)

static inline bool check_eq_(long long actual, long long expected, const char *file, int line, const char *what) {
  char detail[96];
  snprintf(detail, sizeof detail, "got %lld, expected %lld", actual, expected);
  return check_record_(actual == expected, file, line, what, detail);
}

#define CHECK_EQ(actual, expected) \
  check_eq_((long long)(actual), (long long)(expected), __FILE__, __LINE__, #actual " == " #expected)

static inline bool check_str_(const char *actual, const char *expected, const char *file, int line,
                              const char *what) {
  char detail[512];
  bool ok = actual != NULL && expected != NULL ? strcmp(actual, expected) == 0 : actual == expected;
  snprintf(detail, sizeof detail, "got \"%s\", expected \"%s\"", actual != NULL ? actual : "(null)",
           expected != NULL ? expected : "(null)");
  return check_record_(ok, file, line, what, detail);
}

#define CHECK_STR(actual, expected) check_str_((actual), (expected), __FILE__, __LINE__, #actual " == " #expected)

static inline bool check_contains_(const char *haystack, const char *needle, const char *file, int line,
                                   const char *what) {
  char detail[640];
  bool ok = haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
  snprintf(detail, sizeof detail, "\"%s\" does not contain \"%s\"", haystack != NULL ? haystack : "(null)",
           needle != NULL ? needle : "(null)");
  return check_record_(ok, file, line, what, detail);
}

#define CHECK_CONTAINS(haystack, needle) \
  check_contains_((haystack), (needle), __FILE__, __LINE__, "strstr(" #haystack ", " #needle ")")

/* The error contract of one call; see CHECK_RC. */
static inline bool check_rc_(wdpool_result rc, wdpool_result expected, const wdpool_error *err,
                             const char *needle, const char *call, const char *file, int line) {
  char detail[768];
  const char *message = wdpool_error_message(err);
  bool ok = rc == expected;
  const char *why = "";
  if (ok && rc == WDPOOL_OK && err != NULL) {
    ok = false;
    why = " (and *err was written on success)";
  } else if (ok && rc != WDPOOL_OK && err == NULL) {
    ok = false;
    why = " (and *err was not written)";
  } else if (ok && rc != WDPOOL_OK && wdpool_error_code(err) != rc) {
    ok = false;
    why = " (and wdpool_error_code disagrees)";
  } else if (ok && rc != WDPOOL_OK && message[0] == '\0') {
    ok = false;
    why = " (and the message is empty)";
  } else if (ok && needle != NULL && strstr(message, needle) == NULL) {
    ok = false;
    why = " (but the message lacks the expected text)";
  }
  snprintf(detail, sizeof detail, "returned %s, expected %s%s%s%s%s%s%s", wdpool_result_name((int)rc),
           wdpool_result_name((int)expected), why, message[0] != '\0' ? "; message: " : "", message,
           needle != NULL ? "; wanted \"" : "", needle != NULL ? needle : "", needle != NULL ? "\"" : "");
  return check_record_(ok, file, line, call, detail);
}

/* The error out-parameter of the call inside CHECK_RC / CHECK_RC_MSG. */
#define CHECK_ERR check_errp_

/* `text` is the call as written (stringified by the public macro, before
 * CHECK_ERR and NULL are expanded). */
#define CHECK_RC_IMPL_(call, text, expected, needle)                                    \
  do {                                                                                  \
    wdpool_error *check_err_ = NULL;                                                    \
    wdpool_error **check_errp_ = &check_err_;                                           \
    wdpool_result check_rc_value_ = (call);                                             \
    check_rc_(check_rc_value_, (expected), check_err_, (needle), (text), __FILE__, __LINE__); \
    wdpool_error_free(check_err_);                                                      \
  } while (0)

#define CHECK_RC_MSG(call, expected, needle) CHECK_RC_IMPL_(call, #call, expected, needle)

#define CHECK_RC(call, expected) CHECK_RC_IMPL_(call, #call, expected, NULL)

#define CHECK_RC_BOTH(call, expected)                                                   \
  do {                                                                                  \
    CHECK_RC_IMPL_(call, #call, expected, NULL);                                        \
    {                                                                                   \
      wdpool_error **check_errp_ = NULL;                                                \
      check_record_((call) == (expected), __FILE__, __LINE__, #call " with err NULL", NULL); \
    }                                                                                   \
  } while (0)

/* A library bug that is reported to the maintainers: print it and skip the
 * assertion, so the suite stays green until it is fixed. */
#define KNOWN_BUG(...)                                        \
  do {                                                        \
    atomic_fetch_add(&check_known_bugs_, 1);                  \
    printf("KNOWN BUG (%s:%d): ", __FILE__, __LINE__);        \
    printf(__VA_ARGS__);                                      \
    printf("\n");                                             \
    fflush(stdout);                                           \
  } while (0)

static inline int check_summary(const char *program) {
  unsigned long failed = atomic_load(&check_failed_);
  unsigned long bugs = atomic_load(&check_known_bugs_);
  if (bugs > 0) printf("%s: %lu known bug(s) skipped\n", program, bugs);
  printf("%s: %lu passed, %lu failed\n", program, atomic_load(&check_passed_), failed);
  fflush(stdout);
  return failed == 0 ? 0 : 1;
}

#endif /* WDPOOL_TESTS_CHECK_H */
