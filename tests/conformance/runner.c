/*
 * The C runner of the conformance scenarios (tests/conformance/README.md):
 * runs every scenario file given on the command line against the C ABI
 * and an in-process mock cluster of its own per scenario. Owners are
 * explicit `wdpool_owner` keys; a `with` scope is a checkout, a
 * `transaction` scope a checkout plus `wdpool_producer_begin`, and `end`
 * says how the body ended (`wdpool_producer_end`, then the checkin), as the
 * Ruby and Go bindings do from their ensure / defer.
 *
 *   runner FILE.json...         prints one line per scenario, exits 1 when
 *                               any expectation failed.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "wdpool.h"

#define MAX_OWNERS 8
#define MAX_DEPTH 16
#define MAX_POOLS 8
#define MAX_EVENTS 512
#define MAX_MESSAGES 64
#define MAX_CONFIGURED 64

/* ------------------------------------------------------------------------
 * Failures: every unmet expectation is printed, with its step. */

static int failures;
static const char *current_file;
static size_t current_step;
static const char *current_op;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL %s: step %zu (%s): ", current_file, current_step, current_op);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  failures++;
}

/* ------------------------------------------------------------------------
 * Placeholders: "{run}" (unique per scenario run) and "{index}" (the slot
 * index, in configuration values). */

static char run_id[64];

static void expand(const char *in, long long index, char *out, size_t cap) {
  size_t n = 0;
  while (*in != '\0' && n + 1 < cap) {
    if (strncmp(in, "{run}", 5) == 0) {
      n += (size_t)snprintf(out + n, cap - n, "%s", run_id);
      in += 5;
    } else if (index >= 0 && strncmp(in, "{index}", 7) == 0) {
      n += (size_t)snprintf(out + n, cap - n, "%lld", index);
      in += 7;
    } else {
      out[n++] = *in++;
    }
    if (n >= cap) n = cap - 1;
  }
  out[n] = '\0';
}

/* ------------------------------------------------------------------------
 * Events: every event is recorded; `events` steps compare the lifecycle
 * events of the scenario's pools. */

typedef struct {
  char name[48];
  uint64_t pool_id;
  bool global;
  size_t size;
  uint64_t timeout_ms;
  int64_t slot;
  char producer_id[128];
  uint64_t waited_ms;
  size_t available;
  uint64_t undelivered;
  char message[256];
} recorded;

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static recorded events[MAX_EVENTS];
static size_t events_len;

static void on_event(void *user_data, const wdpool_event *e) {
  (void)user_data;
  pthread_mutex_lock(&events_lock);
  if (events_len < MAX_EVENTS) {
    recorded *r = &events[events_len++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", e->name);
    r->pool_id = e->pool_id;
    r->global = e->global;
    r->size = e->size;
    r->timeout_ms = e->timeout_ms;
    r->slot = e->slot;
    if (e->producer_id != NULL) snprintf(r->producer_id, sizeof r->producer_id, "%s", e->producer_id);
    r->waited_ms = e->waited_ms;
    r->available = e->available;
    r->undelivered = e->undelivered;
    snprintf(r->message, sizeof r->message, "%s", e->message != NULL ? e->message : "");
  }
  pthread_mutex_unlock(&events_lock);
}

/* ------------------------------------------------------------------------
 * The scenario's world. */

typedef struct {
  bool txn;
  wdpool_producer *producer;
} scope;

typedef struct {
  char name[16];
  wdpool_owner key;
  scope stack[MAX_DEPTH];
  int depth;
  wdpool_producer *last; /* the producer of the scope that ended last */
} owner;

typedef struct {
  char name[16];
  bool global;
  wdpool_pool *pool; /* NULL for the global pool */
  uint64_t id;
  bool created;
} pool_entry;

typedef struct {
  wdpool_mock_cluster *cluster;
  owner owners[MAX_OWNERS];
  int owners_len;
  pool_entry pools[MAX_POOLS];
  int pools_len;
  size_t events_seen; /* index in `events` of the next event to compare */
} world;

static owner *owner_named(world *w, const char *name) {
  for (int i = 0; i < w->owners_len; i++)
    if (strcmp(w->owners[i].name, name) == 0) return &w->owners[i];
  if (w->owners_len == MAX_OWNERS) return NULL;
  owner *o = &w->owners[w->owners_len];
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "%s", name);
  o->key = (wdpool_owner)(0x1000 + w->owners_len);
  w->owners_len++;
  return o;
}

static pool_entry *pool_named(world *w, const char *name) {
  for (int i = 0; i < w->pools_len; i++)
    if (strcmp(w->pools[i].name, name) == 0) return &w->pools[i];
  return NULL;
}

/* ------------------------------------------------------------------------
 * Results: a call's outcome as the scenario names it. */

typedef struct {
  char kind[48]; /* "ok", "timeout", ..., "app", "exited" */
  char message[512];
  int32_t kafka_code;
  uint32_t kafka_flags;
} outcome;

static void outcome_of(outcome *out, wdpool_result rc, wdpool_error *err) {
  const char *name = wdpool_result_name((int)rc);
  if (strncmp(name, "WDPOOL_", 7) == 0) name += 7;
  size_t i = 0;
  for (; name[i] != '\0' && i + 1 < sizeof out->kind; i++) out->kind[i] = (char)tolower((unsigned char)name[i]);
  out->kind[i] = '\0';
  snprintf(out->message, sizeof out->message, "%s", err != NULL ? wdpool_error_message(err) : "");
  out->kafka_code = wdpool_error_kafka_code(err);
  out->kafka_flags = wdpool_error_kafka_flags(err);
  wdpool_error_free(err);
}

static void outcome_set(outcome *out, const char *kind) {
  snprintf(out->kind, sizeof out->kind, "%s", kind);
  out->message[0] = '\0';
  out->kafka_code = 0;
  out->kafka_flags = 0;
}

static void check_number(const json_value *expect, const char *key, long long actual) {
  const json_value *v = json_get(expect, key);
  if (v == NULL) return;
  if (v->type == JSON_BOOL) {
    if ((actual != 0) != v->boolean) fail("%s: got %s, expected %s", key, actual ? "true" : "false", v->boolean ? "true" : "false");
  } else if ((long long)v->number != actual) {
    fail("%s: got %lld, expected %lld", key, actual, (long long)v->number);
  }
}

static void check_string(const json_value *expect, const char *key, const char *actual) {
  const char *want = json_get_string(expect, key, NULL);
  if (want == NULL) return;
  char expanded[256];
  expand(want, -1, expanded, sizeof expanded);
  if (strcmp(expanded, actual) != 0) fail("%s: got \"%s\", expected \"%s\"", key, actual, expanded);
}

/* "message": a substring or a list of substrings of the error message. */
static void check_contains(const json_value *expect, const char *key, const char *actual) {
  const json_value *v = json_get(expect, key);
  if (v == NULL) return;
  size_t n = v->type == JSON_ARRAY ? v->count : 1;
  for (size_t i = 0; i < n; i++) {
    const json_value *s = v->type == JSON_ARRAY ? &v->items[i] : v;
    if (s->type != JSON_STRING) continue;
    char expanded[256];
    expand(s->string, -1, expanded, sizeof expanded);
    if (strstr(actual, expanded) == NULL) fail("%s: \"%s\" does not contain \"%s\"", key, actual, expanded);
  }
}

/* The expected result ("ok" without an expectation) and its message. */
static void check_outcome(const json_value *expect, const outcome *got) {
  const char *want = json_get_string(expect, "result", "ok");
  if (strcmp(want, got->kind) != 0) fail("result: got %s (%s), expected %s", got->kind, got->message, want);
  check_contains(expect, "message", got->message);
  check_number(expect, "kafka_code", got->kafka_code);
  /* "kafka_flags": the exact set, by name. */
  const json_value *flags = json_get(expect, "kafka_flags");
  if (flags != NULL) {
    uint32_t want_flags = 0;
    for (size_t i = 0; i < flags->count; i++) {
      const char *f = flags->items[i].type == JSON_STRING ? flags->items[i].string : "";
      want_flags |= strcmp(f, "retriable") == 0            ? WDPOOL_KAFKA_RETRIABLE
                    : strcmp(f, "fatal") == 0              ? WDPOOL_KAFKA_FATAL
                    : strcmp(f, "txn_requires_abort") == 0 ? WDPOOL_KAFKA_TXN_REQUIRES_ABORT
                                                           : 0x100;
    }
    if (want_flags != got->kafka_flags) fail("kafka_flags: got %u, expected %u", got->kafka_flags, want_flags);
  }
}

/* Checks a call's result and frees its error. */
static void expect_result(const json_value *expect, wdpool_result rc, wdpool_error *err) {
  outcome got;
  outcome_of(&got, rc, err);
  check_outcome(expect, &got);
}

/* ------------------------------------------------------------------------
 * Pools. */

typedef struct {
  const json_value *config;
  const char *bootstrap;
  bool fail;
  long long indexes[MAX_CONFIGURED];
  size_t indexes_len;
} configure_ctx;

static int configure(void *user_data, wdpool_config *config, size_t index) {
  configure_ctx *ctx = user_data;
  if (ctx->indexes_len < MAX_CONFIGURED) ctx->indexes[ctx->indexes_len++] = (long long)index;
  if (ctx->fail) return 0;
  char value[256];
  if (wdpool_config_set_kafka(config, "bootstrap.servers", ctx->bootstrap, NULL) != WDPOOL_OK ||
      wdpool_config_set_kafka(config, "linger.ms", "0", NULL) != WDPOOL_OK)
    return 0;
  const json_value *kafka = json_get(ctx->config, "kafka");
  for (size_t i = 0; kafka != NULL && i < kafka->count; i++) {
    expand(kafka->items[i].type == JSON_STRING ? kafka->items[i].string : "", (long long)index, value, sizeof value);
    if (wdpool_config_set_kafka(config, kafka->keys[i], value, NULL) != WDPOOL_OK) return 0;
  }
  const char *tid = json_get_string(ctx->config, "transactional_id", NULL);
  if (tid != NULL) {
    expand(tid, (long long)index, value, sizeof value);
    if (wdpool_config_set_kafka(config, "transactional.id", value, NULL) != WDPOOL_OK) return 0;
  }
  const char *id = json_get_string(ctx->config, "id", NULL);
  if (id != NULL) {
    expand(id, (long long)index, value, sizeof value);
    if (wdpool_config_set_id(config, value, NULL) != WDPOOL_OK) return 0;
  }
  if (json_get(ctx->config, "deliver") != NULL &&
      wdpool_config_set_deliver(config, json_get_bool(ctx->config, "deliver", true), NULL) != WDPOOL_OK)
    return 0;
  long long n = json_get_int(ctx->config, "max_payload_size", -1);
  if (n >= 0 && wdpool_config_set_max_payload_size(config, (size_t)n, NULL) != WDPOOL_OK) return 0;
  n = json_get_int(ctx->config, "max_wait_timeout_ms", -1);
  if (n >= 0 && wdpool_config_set_max_wait_timeout(config, (uint64_t)n, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

static void step_pool(world *w, const json_value *step, const json_value *expect) {
  const char *name = json_get_string(step, "name", "p");
  if (w->pools_len == MAX_POOLS || pool_named(w, name) != NULL) {
    fail("pool \"%s\": too many pools, or the name is taken", name);
    return;
  }
  pool_entry *entry = &w->pools[w->pools_len++];
  memset(entry, 0, sizeof *entry);
  snprintf(entry->name, sizeof entry->name, "%s", name);
  entry->global = json_get_bool(step, "global", false);
  wdpool_options options = wdpool_options_default();
  options.size = (size_t)json_get_int(step, "size", (long long)options.size);
  options.timeout_ms = (uint64_t)json_get_int(step, "timeout_ms", (long long)options.timeout_ms);
  const json_value *config = json_get(step, "config");
  configure_ctx ctx = {.config = config, .bootstrap = wdpool_mock_cluster_bootstrap_servers(w->cluster),
                       .fail = json_get_bool(config, "fail", false)};
  bool no_config = config == NULL || config->type == JSON_NULL;
  wdpool_error *err = NULL;
  wdpool_result rc = entry->global ? wdpool_setup(&options, no_config ? NULL : configure, &ctx, &err)
                                   : wdpool_pool_new(&options, no_config ? NULL : configure, &ctx, &entry->pool, &err);
  outcome got;
  outcome_of(&got, rc, err);
  /* A configure callback that failed on purpose is the scenario's own error. */
  if (ctx.fail && rc == WDPOOL_CALLBACK_FAILED) outcome_set(&got, "app");
  check_outcome(expect, &got);
  if (rc == WDPOOL_OK) {
    entry->created = true;
    entry->id = entry->global ? wdpool_global_id() : wdpool_pool_id(entry->pool);
  }
  const json_value *want = json_get(expect, "configured");
  if (want != NULL) {
    bool same = want->count == ctx.indexes_len;
    for (size_t i = 0; same && i < want->count; i++) same = (long long)want->items[i].number == ctx.indexes[i];
    if (!same) fail("configured: the configure callback got %zu indexes, not the ones expected", ctx.indexes_len);
  }
}

static pool_entry *pool_of(world *w, const json_value *step) {
  const char *name = json_get_string(step, "pool", "p");
  pool_entry *p = pool_named(w, name);
  if (p == NULL) fail("no pool named \"%s\"", name);
  return p;
}

/* ------------------------------------------------------------------------
 * Scopes: with / transaction / end. */

static int64_t timeout_of(const json_value *step) { return json_get_int(step, "timeout_ms", WDPOOL_TIMEOUT_DEFAULT); }

static void step_open(world *w, const json_value *step, const json_value *expect, bool txn) {
  owner *o = owner_named(w, json_get_string(step, "owner", "A"));
  pool_entry *p = pool_of(w, step);
  if (o == NULL || p == NULL || o->depth == MAX_DEPTH) return;
  wdpool_producer *producer = NULL;
  wdpool_error *err = NULL;
  wdpool_result rc = p->global ? wdpool_checkout(o->key, timeout_of(step), &producer, &err)
                               : wdpool_pool_checkout(p->pool, o->key, timeout_of(step), &producer, &err);
  if (rc == WDPOOL_OK && txn) {
    rc = wdpool_producer_begin(producer, timeout_of(step), &err);
    if (rc != WDPOOL_OK) wdpool_producer_checkin(producer, NULL);
  }
  expect_result(expect, rc, err);
  if (rc != WDPOOL_OK) return;
  o->stack[o->depth].txn = txn;
  o->stack[o->depth].producer = producer;
  o->depth++;
  wdpool_producer_info info;
  if (json_get(expect, "slot") != NULL && wdpool_producer_get_info(producer, &info, NULL) == WDPOOL_OK)
    check_number(expect, "slot", (long long)info.index);
}

static void step_end(world *w, const json_value *step, const json_value *expect) {
  owner *o = owner_named(w, json_get_string(step, "owner", "A"));
  if (o == NULL || o->depth == 0) {
    fail("the owner has no open scope");
    return;
  }
  scope s = o->stack[--o->depth];
  const char *how = json_get_string(step, "how", "ok");
  outcome got;
  outcome_set(&got, "ok");
  wdpool_error *err = NULL;
  wdpool_result end_rc = WDPOOL_OK;
  int txn_outcome = strcmp(how, "ok") == 0      ? WDPOOL_TXN_COMMIT
                    : strcmp(how, "abort") == 0 ? WDPOOL_TXN_ABORT
                    : strcmp(how, "fail") == 0  ? WDPOOL_TXN_FAIL
                                                : WDPOOL_TXN_EXIT;
  if (s.txn) {
    end_rc = wdpool_producer_end(s.producer, txn_outcome, WDPOOL_TIMEOUT_DEFAULT, NULL, &err);
    if (end_rc != WDPOOL_OK) outcome_of(&got, end_rc, err);
    else wdpool_error_free(err);
    err = NULL;
  } else if (txn_outcome == WDPOOL_TXN_ABORT) {
    fail("\"abort\" ends a transaction scope only");
  }
  wdpool_result in_rc = wdpool_producer_checkin(s.producer, &err);
  if (end_rc == WDPOOL_OK && in_rc != WDPOOL_OK) outcome_of(&got, in_rc, err);
  else wdpool_error_free(err);
  /* As the bindings report it: a failed body's own error comes back
   * unchanged; a body that left early reports that (Ruby's
   * EarlyTransactionExit, Go's re-raised panic). */
  if (txn_outcome == WDPOOL_TXN_FAIL) outcome_set(&got, "app");
  if (txn_outcome == WDPOOL_TXN_EXIT && (end_rc == WDPOOL_OK || end_rc == WDPOOL_TRANSACTION_EXITED_EARLY))
    outcome_set(&got, "exited");
  check_outcome(expect, &got);
  o->last = s.producer;
}

/* The producer a step acts on: the owner's innermost scope's, or with
 * "producer": "last" the one of the scope that ended last (stale). */
static wdpool_producer *producer_of(world *w, const json_value *step) {
  owner *o = owner_named(w, json_get_string(step, "owner", "A"));
  if (o == NULL) return NULL;
  if (strcmp(json_get_string(step, "producer", "current"), "last") == 0) return o->last;
  if (o->depth == 0) {
    fail("the owner has no open scope");
    return NULL;
  }
  return o->stack[o->depth - 1].producer;
}

/* ------------------------------------------------------------------------
 * Producing. */

typedef struct {
  char topic[256];
  char *payload;
  size_t payload_len;
  bool tombstone;
  char key[128];
  char partition_key[128];
  wdpool_header headers[8];
  char header_keys[8][64];
  char header_values[8][128];
} message_buf;

static void build_message(const json_value *m, message_buf *buf, wdpool_message *out) {
  wdpool_message_init(out);
  expand(json_get_string(m, "topic", ""), -1, buf->topic, sizeof buf->topic);
  out->topic = buf->topic;
  const json_value *payload = json_get(m, "payload");
  long long size = json_get_int(m, "payload_size", -1);
  if (size >= 0) {
    buf->payload = malloc((size_t)size + 1);
    memset(buf->payload, 'x', (size_t)size);
    buf->payload_len = (size_t)size;
  } else if (payload != NULL && payload->type == JSON_STRING) {
    buf->payload = strdup(payload->string);
    buf->payload_len = strlen(payload->string);
  }
  if (buf->payload != NULL) out->payload = (wdpool_bytes){(const uint8_t *)buf->payload, buf->payload_len};
  const char *key = json_get_string(m, "key", NULL);
  if (key != NULL) {
    snprintf(buf->key, sizeof buf->key, "%s", key);
    out->key = (wdpool_bytes){(const uint8_t *)buf->key, strlen(buf->key)};
  }
  const char *pkey = json_get_string(m, "partition_key", NULL);
  if (pkey != NULL) {
    snprintf(buf->partition_key, sizeof buf->partition_key, "%s", pkey);
    out->partition_key = (wdpool_bytes){(const uint8_t *)buf->partition_key, strlen(buf->partition_key)};
  }
  if (json_get(m, "partition") != NULL) out->partition = (int32_t)json_get_int(m, "partition", -1);
  const json_value *headers = json_get(m, "headers");
  size_t n = 0;
  for (size_t i = 0; headers != NULL && i < headers->count && n < 8; i++, n++) {
    snprintf(buf->header_keys[n], sizeof buf->header_keys[n], "%s", headers->keys[i]);
    snprintf(buf->header_values[n], sizeof buf->header_values[n], "%s",
             headers->items[i].type == JSON_STRING ? headers->items[i].string : "");
    buf->headers[n].key = buf->header_keys[n];
    buf->headers[n].value = (wdpool_bytes){(const uint8_t *)buf->header_values[n], strlen(buf->header_values[n])};
  }
  if (n > 0) {
    out->headers = buf->headers;
    out->headers_len = n;
  }
}

static void check_offsets(const json_value *expect, const wdpool_report *reports, size_t n) {
  const json_value *want = json_get(expect, "offsets");
  if (want != NULL) {
    bool same = want->count == n;
    for (size_t i = 0; same && i < n; i++) same = (long long)want->items[i].number == reports[i].offset;
    if (!same) {
      char got[256] = "";
      for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)reports[i].offset);
      fail("offsets: got [%s]", got);
    }
  }
  const json_value *partition = json_get(expect, "partition");
  for (size_t i = 0; partition != NULL && i < n; i++)
    if (reports[i].partition != (int32_t)partition->number)
      fail("partition: got %d, expected %d", reports[i].partition, (int)partition->number);
  if (json_get(expect, "delivered") != NULL) {
    long long delivered = 0;
    for (size_t i = 0; i < n; i++) delivered += reports[i].error_code == 0 && reports[i].offset >= 0;
    check_number(expect, "delivered", delivered);
  }
}

/* Waits for an async delivery; appends its reports. */
static wdpool_result await_delivery(wdpool_delivery *d, wdpool_report *reports, size_t *n, wdpool_error **err) {
  wdpool_result rc = wdpool_delivery_wait(d, WDPOOL_TIMEOUT_DEFAULT, err);
  size_t count = wdpool_delivery_count(d);
  for (size_t i = 0; i < count && *n < MAX_MESSAGES; i++)
    if (wdpool_delivery_report(d, i, &reports[*n], NULL) == WDPOOL_OK) (*n)++;
  wdpool_delivery_free(d);
  return rc;
}

static void step_produce(world *w, const json_value *step, const json_value *expect) {
  wdpool_producer *producer = producer_of(w, step);
  if (producer == NULL && strcmp(json_get_string(step, "producer", "current"), "last") != 0) return;
  const char *mode = json_get_string(step, "mode", "sync");
  /* "messages": a list, or "message" repeated "count" times. */
  const json_value *list = json_get(step, "messages");
  size_t count = list != NULL ? list->count : (size_t)json_get_int(step, "count", 1);
  if (count == 0 || count > MAX_MESSAGES) {
    fail("count must be 1 to %d", MAX_MESSAGES);
    return;
  }
  bool wait = json_get_bool(step, "wait", true);
  static message_buf bufs[MAX_MESSAGES];
  static wdpool_message messages[MAX_MESSAGES];
  wdpool_report reports[MAX_MESSAGES];
  memset(bufs, 0, sizeof bufs);
  for (size_t i = 0; i < count; i++)
    build_message(list != NULL ? &list->items[i] : json_get(step, "message"), &bufs[i], &messages[i]);
  size_t reported = 0;
  wdpool_error *err = NULL;
  wdpool_result rc = WDPOOL_OK;
  wdpool_delivery *d = NULL;
  if (strcmp(mode, "sync") == 0) {
    for (size_t i = 0; i < count && rc == WDPOOL_OK; i++) {
      rc = wdpool_producer_produce_sync(producer, &messages[i], WDPOOL_TIMEOUT_DEFAULT, &reports[i], &err);
      if (rc == WDPOOL_OK) reported++;
    }
  } else if (strcmp(mode, "many_sync") == 0) {
    rc = wdpool_producer_produce_many_sync(producer, messages, count, WDPOOL_TIMEOUT_DEFAULT, reports, &err);
    if (rc == WDPOOL_OK) reported = count;
  } else if (strcmp(mode, "async") == 0) {
    for (size_t i = 0; i < count && rc == WDPOOL_OK; i++) {
      rc = wdpool_producer_produce_async(producer, &messages[i], wait ? &d : NULL, &err);
      if (rc == WDPOOL_OK && wait) rc = await_delivery(d, reports, &reported, &err);
    }
  } else if (strcmp(mode, "many_async") == 0) {
    rc = wdpool_producer_produce_many_async(producer, messages, count, wait ? &d : NULL, &err);
    if (rc == WDPOOL_OK && wait) rc = await_delivery(d, reports, &reported, &err);
  } else {
    fail("unknown mode \"%s\"", mode);
  }
  for (size_t i = 0; i < count; i++) free(bufs[i].payload);
  expect_result(expect, rc, err);
  if (rc == WDPOOL_OK) check_offsets(expect, reports, reported);
}

static void step_flush(world *w, const json_value *step, const json_value *expect) {
  wdpool_producer *producer = producer_of(w, step);
  if (producer == NULL) return;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_flush(producer, timeout_of(step), &err);
  expect_result(expect, rc, err);
}

static void step_info(world *w, const json_value *step, const json_value *expect) {
  wdpool_producer *producer = producer_of(w, step);
  if (producer == NULL) return;
  wdpool_producer_info info;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_get_info(producer, &info, &err);
  expect_result(expect, rc, err);
  if (rc != WDPOOL_OK) return;
  check_number(expect, "slot", (long long)info.index);
  check_number(expect, "transactional", info.transactional);
  check_number(expect, "in_transaction", info.in_transaction);
  check_number(expect, "depth", info.depth);
  check_number(expect, "rollback_only", info.rollback_only);
}

/* ------------------------------------------------------------------------
 * Pool-wide steps. */

static void step_close(world *w, const json_value *step, const json_value *expect) {
  pool_entry *p = pool_of(w, step);
  if (p == NULL) return;
  wdpool_close_report report;
  wdpool_error *err = NULL;
  bool force = json_get_bool(step, "force", false);
  wdpool_result rc = p->global ? wdpool_close(force, &report, &err) : wdpool_pool_close(p->pool, force, &report, &err);
  expect_result(expect, rc, err);
  if (rc != WDPOOL_OK) return;
  check_number(expect, "closed", (long long)report.closed);
  check_number(expect, "undelivered", (long long)report.undelivered);
  check_number(expect, "in_use", (long long)report.in_use);
}

static void step_reload(world *w, const json_value *step, const json_value *expect) {
  pool_entry *p = pool_of(w, step);
  if (p == NULL) return;
  wdpool_error *err = NULL;
  wdpool_result rc = p->global ? wdpool_reload(&err) : wdpool_pool_reload(p->pool, &err);
  expect_result(expect, rc, err);
}

static void step_stats(world *w, const json_value *step, const json_value *expect) {
  pool_entry *p = pool_of(w, step);
  if (p == NULL) return;
  wdpool_statistics s;
  wdpool_error *err = NULL;
  wdpool_result rc = p->global ? wdpool_stats(&s, &err) : wdpool_pool_stats(p->pool, &s, &err);
  expect_result(expect, rc, err);
  if (rc != WDPOOL_OK) return;
  check_number(expect, "size", (long long)s.size);
  check_number(expect, "created", (long long)s.created);
  check_number(expect, "idle", (long long)s.idle);
  check_number(expect, "in_use", (long long)s.in_use);
  check_number(expect, "creating", (long long)s.creating);
  check_number(expect, "waiting", (long long)s.waiting);
  check_number(expect, "checkout_timeouts", (long long)s.checkout_timeouts);
  check_number(expect, "creations", (long long)s.creations);
  check_number(expect, "replaced", (long long)s.replaced);
  check_number(expect, "closed", s.closed);
}

static const char *pool_name_of(world *w, uint64_t id) {
  for (int i = 0; i < w->pools_len; i++)
    if (w->pools[i].created && w->pools[i].id == id) return w->pools[i].name;
  return NULL;
}

static bool lifecycle(const recorded *e) {
  return strcmp(e->name, "error.occurred") != 0 && strcmp(e->name, "statistics.emitted") != 0;
}

/* The lifecycle events of the scenario's pools since the last `events`
 * step, in order, exactly those listed; each listed field must match. */
static void step_events(world *w, const json_value *step) {
  const json_value *want = json_get(step, "expect");
  pthread_mutex_lock(&events_lock);
  size_t end = events_len;
  pthread_mutex_unlock(&events_lock);
  size_t k = 0;
  for (size_t i = w->events_seen; i < end; i++) {
    const recorded *e = &events[i];
    const char *pool = pool_name_of(w, e->pool_id);
    if (pool == NULL || !lifecycle(e)) continue;
    if (want == NULL || k >= want->count) {
      fail("unexpected event %s (pool %s)", e->name, pool);
      k++;
      continue;
    }
    const json_value *x = &want->items[k++];
    check_string(x, "name", e->name);
    check_string(x, "pool", pool);
    check_number(x, "global", e->global);
    check_number(x, "size", (long long)e->size);
    check_number(x, "timeout_ms", (long long)e->timeout_ms);
    check_number(x, "slot", (long long)e->slot);
    check_string(x, "producer_id", e->producer_id);
    check_number(x, "available", (long long)e->available);
    check_number(x, "undelivered", (long long)e->undelivered);
    check_contains(x, "message", e->message);
    long long waited_max = json_get_int(x, "waited_ms_max", -1);
    if (waited_max >= 0 && (long long)e->waited_ms > waited_max)
      fail("waited_ms: got %llu, expected at most %lld", (unsigned long long)e->waited_ms, waited_max);
  }
  for (; want != NULL && k < want->count; k++)
    fail("missing event %s", json_get_string(&want->items[k], "name", "?"));
  w->events_seen = end;
}

static void step_broker(world *w, const json_value *step, const json_value *expect) {
  wdpool_error *err = NULL;
  wdpool_result rc = WDPOOL_OK;
  if (json_get(step, "up") != NULL)
    rc = wdpool_mock_cluster_set_broker_up(w->cluster, 1, json_get_bool(step, "up", true), &err);
  if (rc == WDPOOL_OK && json_get(step, "rtt_ms") != NULL)
    rc = wdpool_mock_cluster_set_rtt(w->cluster, 1, (uint32_t)json_get_int(step, "rtt_ms", 0), &err);
  expect_result(expect, rc, err);
}

static void step_topic(world *w, const json_value *step, const json_value *expect) {
  char topic[256];
  expand(json_get_string(step, "topic", ""), -1, topic, sizeof topic);
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_mock_cluster_create_topic(w->cluster, topic, (int32_t)json_get_int(step, "partitions", 1), &err);
  expect_result(expect, rc, err);
}

static void step_inject(world *w, const json_value *step, const json_value *expect) {
  const json_value *list = json_get(step, "errors");
  int32_t codes[64];
  size_t n = 0;
  for (; list != NULL && n < list->count && n < 64; n++) codes[n] = (int32_t)list->items[n].number;
  wdpool_error *err = NULL;
  wdpool_result rc =
      wdpool_mock_cluster_push_request_errors(w->cluster, (int16_t)json_get_int(step, "api_key", -1), codes, n, &err);
  expect_result(expect, rc, err);
}

static void step_active(const json_value *expect) { check_number(expect, "active", wdpool_active()); }

/* ------------------------------------------------------------------------
 * A scenario. */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)len + 1);
  if (text != NULL && fread(text, 1, (size_t)len, f) != (size_t)len) {
    free(text);
    text = NULL;
  }
  if (text != NULL) text[len] = '\0';
  fclose(f);
  return text;
}

static void teardown(world *w) {
  for (int i = 0; i < w->owners_len; i++)
    if (w->owners[i].depth != 0) {
      fail("owner %s left %d scope(s) open", w->owners[i].name, w->owners[i].depth);
      while (w->owners[i].depth > 0) wdpool_producer_checkin(w->owners[i].stack[--w->owners[i].depth].producer, NULL);
    }
  for (int i = 0; i < w->pools_len; i++) {
    pool_entry *p = &w->pools[i];
    if (!p->created) continue;
    if (p->global) {
      if (wdpool_global_id() == p->id) wdpool_close(true, NULL, NULL);
    } else {
      wdpool_pool_close(p->pool, true, NULL, NULL);
      wdpool_pool_free(p->pool);
    }
  }
  wdpool_mock_cluster_free(w->cluster);
}

static void run_scenario(const char *path, int number) {
  current_file = path;
  current_step = 0;
  current_op = "load";
  int before = failures;
  char *text = read_file(path);
  char error[200];
  json_value *doc = text != NULL ? json_parse(text, error, sizeof error) : NULL;
  if (doc == NULL) {
    fail("cannot read the scenario: %s", text == NULL ? "unreadable" : error);
    free(text);
    return;
  }
  snprintf(run_id, sizeof run_id, "c-%d-%d", (int)getpid(), number);
  world w;
  memset(&w, 0, sizeof w);
  wdpool_error *err = NULL;
  if (wdpool_mock_cluster_new(1, &w.cluster, &err) != WDPOOL_OK) {
    fail("mock cluster: %s", wdpool_error_message(err));
    wdpool_error_free(err);
    json_free(doc);
    free(text);
    return;
  }
  setenv("WDPOOL_BROKERS", wdpool_mock_cluster_bootstrap_servers(w.cluster), 1);
  pthread_mutex_lock(&events_lock);
  w.events_seen = events_len;
  pthread_mutex_unlock(&events_lock);
  const json_value *steps = json_get(doc, "steps");
  for (size_t i = 0; steps != NULL && i < steps->count; i++) {
    const json_value *step = &steps->items[i];
    const json_value *expect = json_get(step, "expect");
    current_step = i + 1;
    current_op = json_get_string(step, "op", "?");
    if (strcmp(current_op, "pool") == 0) step_pool(&w, step, expect);
    else if (strcmp(current_op, "with") == 0) step_open(&w, step, expect, false);
    else if (strcmp(current_op, "transaction") == 0) step_open(&w, step, expect, true);
    else if (strcmp(current_op, "end") == 0) step_end(&w, step, expect);
    else if (strcmp(current_op, "produce") == 0) step_produce(&w, step, expect);
    else if (strcmp(current_op, "flush") == 0) step_flush(&w, step, expect);
    else if (strcmp(current_op, "info") == 0) step_info(&w, step, expect);
    else if (strcmp(current_op, "close") == 0) step_close(&w, step, expect);
    else if (strcmp(current_op, "reload") == 0) step_reload(&w, step, expect);
    else if (strcmp(current_op, "stats") == 0) step_stats(&w, step, expect);
    else if (strcmp(current_op, "events") == 0) step_events(&w, step);
    else if (strcmp(current_op, "broker") == 0) step_broker(&w, step, expect);
    else if (strcmp(current_op, "topic") == 0) step_topic(&w, step, expect);
    else if (strcmp(current_op, "active") == 0) step_active(expect);
    else if (strcmp(current_op, "inject") == 0) step_inject(&w, step, expect);
    else fail("unknown op");
  }
  current_op = "teardown";
  teardown(&w);
  printf("%s %s (%zu steps)\n", failures == before ? "ok  " : "FAIL", path, steps != NULL ? steps->count : 0);
  fflush(stdout);
  json_free(doc);
  free(text);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s scenario.json...\n", argv[0]);
    return 2;
  }
  uint64_t subscription = 0;
  if (wdpool_subscribe(on_event, NULL, NULL, &subscription, NULL) != WDPOOL_OK) return 2;
  for (int i = 1; i < argc; i++) run_scenario(argv[i], i);
  wdpool_unsubscribe(subscription, NULL);
  printf("conformance (C): %d scenario file(s), %d failure(s)\n", argc - 1, failures);
  return failures == 0 ? 0 : 1;
}
