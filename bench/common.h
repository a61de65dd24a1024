/*
 * What the C benchmark programs share: clocks, CPU time, the payload, small
 * argument parsing and the RESULT line. Header-only; C11 + POSIX.
 */
#ifndef WDPOOL_BENCH_COMMON_H
#define WDPOOL_BENCH_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Every program sends the same 100-byte payload: byte i is 'a' + (7 i mod 26)
 * (bench/raw and bench/go build the same bytes). */
enum { PAYLOAD_LEN = 100 };

static inline void bench_payload(uint8_t out[PAYLOAD_LEN]) {
  for (int i = 0; i < PAYLOAD_LEN; i++) out[i] = (uint8_t)('a' + (7 * i) % 26);
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User + system CPU seconds of the whole process (all its threads, the
 * library's own included). */
static inline double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static inline void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

/* "--name value" arguments: the value of `name`, or `dflt`. */
static inline const char *arg_str(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

/* A flag without a value: present or not. */
static inline int arg_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

static inline long arg_long(int argc, char **argv, const char *name, long dflt) {
  const char *v = arg_str(argc, argv, name, NULL);
  if (!v) return dflt;
  char *end;
  long n = strtol(v, &end, 10);
  if (*end || n < 0) die("%s: not a non-negative integer: %s", name, v);
  return n;
}

static inline int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The q-quantile (0..1) of `n` sorted values, nearest rank. */
static inline uint64_t quantile(const uint64_t *sorted, size_t n, double q) {
  if (n == 0) return 0;
  size_t rank = (size_t)(q * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

#endif
