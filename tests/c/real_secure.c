/*
 * wdpool from C against the SECURED real broker (scripts/kafka.sh start
 * --secure): TLS + SASL/SCRAM-SHA-512 as user alice, whose librdkafka
 * properties come from <dir>/client-alice.properties. A plain produce, a
 * committed and an aborted transaction, then everything read back
 * (read_committed) with kafka_read using the same properties: exactly the
 * committed messages, each once. Then a slot with a wrong password: its
 * produce fails within message.timeout.ms naming the cause, and the
 * password appears in no error message.
 *
 *   WDPOOL_KAFKA_SECURE_DIR=<KAFKA_CLIENT_CONFIG_DIR> WDPOOL_KAFKA_READ=target/debug/examples/kafka_read \
 *     target/c/real_secure
 *
 * `make test-real` builds it (under ASan + UBSan) and runs it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "support.h"

#define MAX_PROPS 16
#define MESSAGE_TIMEOUT_MS 6000
#define SLACK_MS 4000

typedef struct {
  char key[128];
  char value[512];
} prop;

typedef struct {
  prop props[MAX_PROPS];
  size_t len;
  char txn_prefix[96];
  const char *bad_password; /* slot 1 gets it when not NULL */
} settings;

static char topic[128];
static char secret[512]; /* alice's password, to look for in errors */

static size_t load_properties(const char *path, prop *out, size_t max) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  char line[700];
  size_t n = 0;
  while (fgets(line, sizeof line, f) != NULL && n < max) {
    line[strcspn(line, "\r\n")] = '\0';
    char *eq = strchr(line, '=');
    if (line[0] == '#' || eq == NULL) continue;
    *eq = '\0';
    size_t klen = strlen(line), vlen = strlen(eq + 1);
    if (klen >= sizeof out[n].key || vlen >= sizeof out[n].value) {
      fprintf(stderr, "real_secure: %s: a line is too long\n", path);
      exit(2);
    }
    memcpy(out[n].key, line, klen + 1);
    memcpy(out[n].value, eq + 1, vlen + 1);
    n++;
  }
  fclose(f);
  return n;
}

static int configure(void *user_data, wdpool_config *config, size_t index) {
  const settings *s = user_data;
  for (size_t i = 0; i < s->len; i++) {
    const char *value = s->props[i].value;
    if (s->bad_password != NULL && index == 1 && strcmp(s->props[i].key, "sasl.password") == 0) value = s->bad_password;
    if (wdpool_config_set_kafka(config, s->props[i].key, value, NULL) != WDPOOL_OK) return 0;
  }
  char timeout[16];
  snprintf(timeout, sizeof timeout, "%d", MESSAGE_TIMEOUT_MS);
  if (wdpool_config_set_kafka(config, "message.timeout.ms", timeout, NULL) != WDPOOL_OK) return 0;
  if (s->txn_prefix[0] != '\0') {
    char id[128];
    snprintf(id, sizeof id, "%s-%zu", s->txn_prefix, index);
    if (wdpool_config_set_kafka(config, "transactional.id", id, NULL) != WDPOOL_OK) return 0;
  }
  return WDPOOL_CB_OK;
}

static wdpool_result produce(wdpool_producer *producer, const char *payload, wdpool_error **err) {
  wdpool_message m = text_message(topic, payload);
  return wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, err);
}

static int produce_two(void *user_data, wdpool_producer *producer) {
  const char **payloads = user_data;
  for (int i = 0; i < 2; i++) {
    wdpool_error *err = NULL;
    if (produce(producer, payloads[i], &err) != WDPOOL_OK) {
      fprintf(stderr, "real_secure: produce %s: %s\n", payloads[i], wdpool_error_message(err));
      wdpool_error_free(err);
      return 0;
    }
  }
  return user_data == NULL ? 0 : WDPOOL_CB_OK;
}

static int produce_then_abort(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  return produce(producer, "c-aborted", NULL) == WDPOOL_OK ? WDPOOL_CB_ABORT : 0;
}

/* kafka_read's payloads (hex, 4th column) decoded, one per line, into out. */
static size_t read_back(const char *tool, const char *dir, size_t expect, char out[][32], size_t max) {
  char command[1024];
  snprintf(command, sizeof command,
           "'%s' --bootstrap \"$(cat '%s/bootstrap')\" --topic '%s' --isolation read_committed --expect %zu "
           "--timeout-ms 60000 --config-file '%s/client-alice.properties'",
           tool, dir, topic, expect, dir);
  FILE *in = popen(command, "r");
  if (in == NULL) {
    perror("popen");
    exit(2);
  }
  char line[512];
  size_t n = 0;
  while (fgets(line, sizeof line, in) != NULL) {
    char *hex = line;
    for (int col = 0; col < 3 && hex != NULL; col++) hex = strchr(hex, '\t') ? strchr(hex, '\t') + 1 : NULL;
    if (hex == NULL || n >= max) continue;
    size_t k = 0;
    while (hex[0] != '\t' && hex[0] != '\0' && hex[1] != '\0' && k + 1 < sizeof out[n]) {
      unsigned byte = 0;
      sscanf(hex, "%2x", &byte);
      out[n][k++] = (char)byte;
      hex += 2;
    }
    out[n][k] = '\0';
    n++;
  }
  int status = pclose(in);
  CHECK_EQ(status, 0);
  return n;
}

static bool contains(char got[][32], size_t n, const char *payload) {
  size_t seen = 0;
  for (size_t i = 0; i < n; i++) seen += strcmp(got[i], payload) == 0;
  return seen == 1;
}

int main(void) {
  const char *dir = getenv("WDPOOL_KAFKA_SECURE_DIR");
  const char *tool = getenv("WDPOOL_KAFKA_READ");
  if (dir == NULL || dir[0] == '\0' || tool == NULL || tool[0] == '\0') {
    fprintf(stderr, "real_secure: set WDPOOL_KAFKA_SECURE_DIR (scripts/kafka.sh start --secure) and WDPOOL_KAFKA_READ\n");
    return 2;
  }
  settings s = {.len = 0};
  char path[512];
  snprintf(path, sizeof path, "%s/client-alice.properties", dir);
  s.len = load_properties(path, s.props, MAX_PROPS);
  for (size_t i = 0; i < s.len; i++)
    if (strcmp(s.props[i].key, "sasl.password") == 0) snprintf(secret, sizeof secret, "%s", s.props[i].value);
  CHECK(strlen(secret) >= 16);
  snprintf(topic, sizeof topic, "wdpool-c-secure-%ld-%lld", (long)getpid(), (long long)now_ms());
  snprintf(s.txn_prefix, sizeof s.txn_prefix, "alice-c-%ld-%lld", (long)getpid(), (long long)now_ms());

  /* A transactional pool of alice: a produce outside a transaction (an
   * implicit one), a committed and an aborted transaction. The broker
   * creates the topic (alice may). */
  wdpool_options options = {.size = 2, .timeout_ms = 30000};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure, &s, &pool, CHECK_ERR), WDPOOL_OK);
  const char *committed[2] = {"c-txn-1", "c-txn-2"};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce_two, (void *)(const char *[]){"c-with-1", "c-with-2"},
                            CHECK_ERR),
           WDPOOL_OK);
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, produce_two, (void *)committed, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, produce_then_abort, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_statistics stats;
  CHECK_RC(wdpool_pool_stats(pool, &stats, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats.in_use, 0);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  char got[16][32];
  size_t n = read_back(tool, dir, 4, got, 16);
  CHECK_EQ(n, 4);
  CHECK(contains(got, n, "c-with-1") && contains(got, n, "c-with-2"));
  CHECK(contains(got, n, "c-txn-1") && contains(got, n, "c-txn-2"));

  /* Slot 1 with a wrong password (not transactional): both slots checked
   * out; slot 1's produce fails within message.timeout.ms and says why,
   * slot 0's works. */
  s.txn_prefix[0] = '\0';
  s.bad_password = "not-the-password";
  CHECK_RC(wdpool_pool_new(&options, configure, &s, &pool, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *leases[2] = {NULL, NULL};
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &leases[0], CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, 2, WDPOOL_TIMEOUT_DEFAULT, &leases[1], CHECK_ERR), WDPOOL_OK);
  for (int i = 0; i < 2; i++) {
    size_t index = producer_index(leases[i]);
    wdpool_error *err = NULL;
    int64_t started = now_ms();
    wdpool_result rc = produce(leases[i], index == 0 ? "c-good-slot" : "c-never", &err);
    int64_t took = now_ms() - started;
    if (index == 0) {
      CHECK_EQ(rc, WDPOOL_OK);
    } else {
      CHECK_EQ(rc, WDPOOL_KAFKA);
      CHECK(took <= MESSAGE_TIMEOUT_MS + SLACK_MS);
      CHECK_CONTAINS(wdpool_error_message(err), "Authentication failed");
      CHECK(strstr(wdpool_error_message(err), secret) == NULL);
      CHECK(strstr(wdpool_error_message(err), "not-the-password") == NULL);
      printf("real_secure: the wrong password failed after %lld ms: %s\n", (long long)took, wdpool_error_message(err));
    }
    wdpool_error_free(err);
  }
  for (int i = 0; i < 2; i++) CHECK_RC(wdpool_producer_checkin(leases[i], CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_stats(pool, &stats, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats.in_use, 0);
  CHECK_EQ(stats.idle, 2);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  n = read_back(tool, dir, 5, got, 16);
  CHECK_EQ(n, 5);
  CHECK(contains(got, n, "c-good-slot"));
  return check_summary("real_secure");
}
