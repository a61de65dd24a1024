/*
 * A compact JSON reader for the conformance runner: parses a whole
 * document into a tree (RFC 8259: objects, arrays, strings with every
 * escape including surrogate pairs, numbers, true, false, null), reports the
 * first syntax error with its byte offset, and frees the tree in one call.
 * Enough for scenario files; not a general-purpose library (no streaming,
 * no writer, nesting limited to JSON_MAX_DEPTH).
 */
#ifndef WDPOOL_CONFORMANCE_JSON_H
#define WDPOOL_CONFORMANCE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
  json_type type;
  bool boolean;
  double number;
  char *string; /* JSON_STRING: NUL-terminated UTF-8 */
  size_t count; /* JSON_ARRAY / JSON_OBJECT: items (and keys) */
  struct json_value *items;
  char **keys; /* JSON_OBJECT only */
} json_value;

typedef struct {
  const char *text;
  size_t pos;
  int depth;
  char error[160];
} json_parser_;

static void json_fail_(json_parser_ *p, const char *what) {
  if (p->error[0] == '\0')
    snprintf(p->error, sizeof p->error, "offset %zu: %s", p->pos, what);
}

static void json_skip_ws_(json_parser_ *p) {
  while (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' || p->text[p->pos] == '\n' || p->text[p->pos] == '\r')
    p->pos++;
}

static bool json_parse_value_(json_parser_ *p, json_value *out);

static int json_hex4_(const char *s) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

static size_t json_utf8_(uint32_t cp, char *out) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* At the opening quote; the decoded string is never longer than its source. */
static char *json_parse_string_(json_parser_ *p) {
  const char *s = p->text + p->pos + 1;
  size_t cap = strlen(s) + 1, n = 0;
  char *buf = malloc(cap);
  if (buf == NULL) { json_fail_(p, "out of memory"); return NULL; }
  size_t i = 0;
  for (;;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\0') { p->pos += i + 1; json_fail_(p, "unterminated string"); free(buf); return NULL; }
    if (c < 0x20) { p->pos += i + 1; json_fail_(p, "control character in string"); free(buf); return NULL; }
    if (c == '"') break;
    if (c != '\\') { buf[n++] = (char)c; i++; continue; }
    char e = s[i + 1];
    i += 2;
    switch (e) {
      case '"': buf[n++] = '"'; break;
      case '\\': buf[n++] = '\\'; break;
      case '/': buf[n++] = '/'; break;
      case 'b': buf[n++] = '\b'; break;
      case 'f': buf[n++] = '\f'; break;
      case 'n': buf[n++] = '\n'; break;
      case 'r': buf[n++] = '\r'; break;
      case 't': buf[n++] = '\t'; break;
      case 'u': {
        int hi = json_hex4_(s + i);
        if (hi < 0) { p->pos += i + 1; json_fail_(p, "bad \\u escape"); free(buf); return NULL; }
        i += 4;
        uint32_t cp = (uint32_t)hi;
        if (hi >= 0xD800 && hi <= 0xDBFF) {
          int lo = (s[i] == '\\' && s[i + 1] == 'u') ? json_hex4_(s + i + 2) : -1;
          if (lo < 0xDC00 || lo > 0xDFFF) { p->pos += i + 1; json_fail_(p, "lone surrogate"); free(buf); return NULL; }
          cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
          i += 6;
        } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
          p->pos += i + 1; json_fail_(p, "lone surrogate"); free(buf); return NULL;
        }
        n += json_utf8_(cp, buf + n);
        break;
      }
      default: p->pos += i; json_fail_(p, "bad escape"); free(buf); return NULL;
    }
  }
  buf[n] = '\0';
  p->pos += i + 2;
  return buf;
}

static bool json_parse_number_(json_parser_ *p, json_value *out) {
  const char *start = p->text + p->pos;
  const char *c = start;
  if (*c == '-') c++;
  if (*c == '0') c++;
  else if (*c >= '1' && *c <= '9') while (*c >= '0' && *c <= '9') c++;
  else { json_fail_(p, "bad number"); return false; }
  if (*c == '.') {
    c++;
    if (!(*c >= '0' && *c <= '9')) { json_fail_(p, "bad fraction"); return false; }
    while (*c >= '0' && *c <= '9') c++;
  }
  if (*c == 'e' || *c == 'E') {
    c++;
    if (*c == '+' || *c == '-') c++;
    if (!(*c >= '0' && *c <= '9')) { json_fail_(p, "bad exponent"); return false; }
    while (*c >= '0' && *c <= '9') c++;
  }
  out->type = JSON_NUMBER;
  out->number = strtod(start, NULL);
  p->pos += (size_t)(c - start);
  return true;
}

static void json_free_value_(json_value *v);

/* Arrays and objects: `close` is ']' or '}'. */
static bool json_parse_container_(json_parser_ *p, json_value *out, char close) {
  bool object = close == '}';
  out->type = object ? JSON_OBJECT : JSON_ARRAY;
  if (++p->depth > JSON_MAX_DEPTH) { json_fail_(p, "nested too deeply"); return false; }
  p->pos++;
  size_t cap = 0;
  json_skip_ws_(p);
  if (p->text[p->pos] == close) { p->pos++; p->depth--; return true; }
  for (;;) {
    if (out->count == cap) {
      cap = cap ? cap * 2 : 4;
      json_value *items = realloc(out->items, cap * sizeof *items);
      if (items == NULL) { json_fail_(p, "out of memory"); return false; }
      out->items = items;
      if (object) {
        char **keys = realloc(out->keys, cap * sizeof *keys);
        if (keys == NULL) { json_fail_(p, "out of memory"); return false; }
        out->keys = keys;
      }
    }
    json_value *item = &out->items[out->count];
    memset(item, 0, sizeof *item);
    json_skip_ws_(p);
    if (object) {
      if (p->text[p->pos] != '"') { json_fail_(p, "expected a key"); return false; }
      char *key = json_parse_string_(p);
      if (key == NULL) return false;
      out->keys[out->count] = key;
      json_skip_ws_(p);
      if (p->text[p->pos] != ':') { out->count++; json_fail_(p, "expected ':'"); return false; }
      p->pos++;
    }
    out->count++;
    if (!json_parse_value_(p, item)) return false;
    json_skip_ws_(p);
    if (p->text[p->pos] == ',') { p->pos++; continue; }
    if (p->text[p->pos] == close) { p->pos++; p->depth--; return true; }
    json_fail_(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    return false;
  }
}

static bool json_parse_value_(json_parser_ *p, json_value *out) {
  json_skip_ws_(p);
  const char *at = p->text + p->pos;
  switch (*at) {
    case '{': return json_parse_container_(p, out, '}');
    case '[': return json_parse_container_(p, out, ']');
    case '"':
      out->type = JSON_STRING;
      out->string = json_parse_string_(p);
      return out->string != NULL;
    case 't':
      if (strncmp(at, "true", 4) == 0) { out->type = JSON_BOOL; out->boolean = true; p->pos += 4; return true; }
      break;
    case 'f':
      if (strncmp(at, "false", 5) == 0) { out->type = JSON_BOOL; p->pos += 5; return true; }
      break;
    case 'n':
      if (strncmp(at, "null", 4) == 0) { out->type = JSON_NULL; p->pos += 4; return true; }
      break;
    default:
      if (*at == '-' || (*at >= '0' && *at <= '9')) return json_parse_number_(p, out);
  }
  json_fail_(p, "unexpected character");
  return false;
}

static void json_free_value_(json_value *v) {
  if (v == NULL) return;
  free(v->string);
  for (size_t i = 0; i < v->count; i++) {
    json_free_value_(&v->items[i]);
    if (v->keys != NULL) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
}

/* Frees a tree from json_parse. NULL does nothing. */
static inline void json_free(json_value *v) {
  json_free_value_(v);
  free(v);
}

/* Parses `text`; NULL on error, with the reason in `error`. */
static inline json_value *json_parse(const char *text, char *error, size_t error_len) {
  json_parser_ p = {.text = text};
  json_value *root = calloc(1, sizeof *root);
  if (root == NULL) { snprintf(error, error_len, "out of memory"); return NULL; }
  bool ok = json_parse_value_(&p, root);
  if (ok) {
    json_skip_ws_(&p);
    if (p.text[p.pos] != '\0') { json_fail_(&p, "trailing characters"); ok = false; }
  }
  if (!ok) {
    snprintf(error, error_len, "%s", p.error);
    json_free(root);
    return NULL;
  }
  return root;
}

/* The member `key` of an object, or NULL (also when `obj` is no object). */
static inline const json_value *json_get(const json_value *obj, const char *key) {
  if (obj == NULL || obj->type != JSON_OBJECT) return NULL;
  for (size_t i = 0; i < obj->count; i++)
    if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}

static inline const char *json_get_string(const json_value *obj, const char *key, const char *fallback) {
  const json_value *v = json_get(obj, key);
  return v != NULL && v->type == JSON_STRING ? v->string : fallback;
}

static inline long long json_get_int(const json_value *obj, const char *key, long long fallback) {
  const json_value *v = json_get(obj, key);
  return v != NULL && v->type == JSON_NUMBER ? (long long)v->number : fallback;
}

static inline bool json_get_bool(const json_value *obj, const char *key, bool fallback) {
  const json_value *v = json_get(obj, key);
  return v != NULL && v->type == JSON_BOOL ? v->boolean : fallback;
}

#endif /* WDPOOL_CONFORMANCE_JSON_H */
