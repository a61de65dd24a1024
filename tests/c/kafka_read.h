/*
 * Reading a topic back from C with the kafka_read tool
 * (tests/tools/kafka_read.rs, built as target/debug/examples/kafka_read):
 * it prints one line per record, "partition \t offset \t key-hex \t
 * payload-hex \t timestamp", which kafka_read_each decodes and hands to a
 * callback. Shared by real_load.c and soak.c. Include after defining
 * _POSIX_C_SOURCE.
 */
#ifndef WDPOOL_TESTS_KAFKA_READ_H
#define WDPOOL_TESTS_KAFKA_READ_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

static inline int kafka_read_hex_value_(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes lowercase hex into `out` (NUL-terminated); false if malformed. */
static inline bool kafka_read_unhex(const char *hex, char *out, size_t cap) {
  size_t len = strlen(hex);
  if (len % 2 != 0 || len / 2 >= cap) return false;
  for (size_t i = 0; i < len; i += 2) {
    int hi = kafka_read_hex_value_(hex[i]), lo = kafka_read_hex_value_(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i / 2] = (char)(hi * 16 + lo);
  }
  out[len / 2] = '\0';
  return true;
}

/* Only these characters go into the shell command line (unquoted). */
static inline bool kafka_read_shell_safe(const char *s) {
  if (s == NULL || s[0] == '\0') return false;
  for (const char *p = s; *p != '\0'; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == ':' || c == ',' || c == '/';
    if (!ok) return false;
  }
  return true;
}

/* A tool path fit for the command line: set, and without single quotes. */
static inline bool kafka_read_tool_ok(const char *tool) {
  return tool != NULL && tool[0] != '\0' && strchr(tool, '\'') == NULL;
}

/* One record: key and payload decoded (NUL-terminated; at most 63 bytes). */
typedef void (*kafka_read_record_fn)(void *ctx, long partition, long long offset, const char *key,
                                     const char *payload);

typedef struct kafka_read_result {
  long lines;
  long malformed;  /* lines that are not five fields, or keys / payloads too long */
  int exit_status; /* kafka_read's; -1 if it did not exit normally */
} kafka_read_result;

/* Runs `tool` on `topic` (read_uncommitted, at least `expect` records within
 * `timeout_ms`) and calls `on_record` for each well-formed line, in the
 * order read (per partition, offsets increase). False when the tool could
 * not be started. `program` prefixes diagnostics. */
static inline bool kafka_read_each(const char *program, const char *tool, const char *brokers, const char *topic,
                                   long expect, long timeout_ms, kafka_read_record_fn on_record, void *ctx,
                                   kafka_read_result *r) {
  memset(r, 0, sizeof *r);
  r->exit_status = -1;
  char command[2048];
  int n = snprintf(command, sizeof command,
                   "'%s' --bootstrap %s --topic %s --isolation read_uncommitted --expect %ld --timeout-ms %ld", tool,
                   brokers, topic, expect, timeout_ms);
  if (n < 0 || (size_t)n >= sizeof command) return false;
  fflush(NULL);
  FILE *in = popen(command, "r");
  if (in == NULL) {
    fprintf(stderr, "%s: popen(%s): %s\n", program, command, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, in)) != -1) {
    r->lines++;
    if (got > 0 && line[got - 1] == '\n') line[got - 1] = '\0';
    char *fields[5] = {0};
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, "\t", &save); tok != NULL && nf < 5; tok = strtok_r(NULL, "\t", &save)) {
      fields[nf++] = tok;
    }
    char *end = NULL;
    long partition = nf == 5 ? strtol(fields[0], &end, 10) : -1;
    bool ok = nf == 5 && *end == '\0' && partition >= 0;
    long long offset = ok ? strtoll(fields[1], &end, 10) : -1;
    ok = ok && *end == '\0' && offset >= 0;
    char key[64], payload[64];
    ok = ok && kafka_read_unhex(fields[2], key, sizeof key) && kafka_read_unhex(fields[3], payload, sizeof payload);
    if (!ok) {
      if (r->malformed++ < 5) fprintf(stderr, "%s: malformed kafka_read line %ld\n", program, r->lines);
      continue;
    }
    on_record(ctx, partition, offset, key, payload);
  }
  free(line);
  int status = pclose(in);
  if (status != -1 && WIFEXITED(status)) r->exit_status = WEXITSTATUS(status);
  return true;
}

#endif
