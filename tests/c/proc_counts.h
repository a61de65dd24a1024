/*
 * What the process holds, read from /proc/self: threads (/proc/self/task),
 * librdkafka's own threads among them (librdkafka names its threads
 * "rdk:main", "rdk:broker<N>", ...; /proc/self/task/<tid>/comm), open file
 * descriptors (/proc/self/fd), sockets among them (links "socket:[inode]"),
 * and resident memory (VmRSS of /proc/self/status). Linux only.
 *
 * Shared by test_close_threads.c (make test-c) and soak.c (make soak,
 * make test-soak-short). Include after defining _POSIX_C_SOURCE.
 */
#ifndef WDPOOL_TESTS_PROC_COUNTS_H
#define WDPOOL_TESTS_PROC_COUNTS_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct proc_counts {
  long threads;     /* entries of /proc/self/task */
  long rdk_threads; /* of which named rdk:* (librdkafka's) */
  long fds;         /* entries of /proc/self/fd, the directory's own fd excluded */
  long sockets;     /* of which sockets */
  long rss_kib;     /* VmRSS */
} proc_counts;

/* The first line of `path` into buf (newline removed); false if unreadable. */
static inline bool proc_read_line_(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "re");
  if (f == NULL) return false;
  bool ok = fgets(buf, (int)cap, f) != NULL;
  fclose(f);
  if (ok) buf[strcspn(buf, "\n")] = '\0';
  return ok;
}

static inline long proc_vm_rss_kib_(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f == NULL) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  }
  fclose(f);
  return kib;
}

/* Fills *out; false (and -1 in the fields it could not read) on failure.
 * Threads that exit while the directory is read may or may not count. */
static inline bool proc_counts_read(proc_counts *out) {
  out->threads = out->rdk_threads = out->fds = out->sockets = -1;
  out->rss_kib = proc_vm_rss_kib_();
  bool ok = out->rss_kib >= 0;

  DIR *tasks = opendir("/proc/self/task");
  if (tasks != NULL) {
    out->threads = out->rdk_threads = 0;
    struct dirent *e;
    while ((e = readdir(tasks)) != NULL) {
      if (e->d_name[0] == '.') continue;
      out->threads++;
      char path[300], comm[64];
      snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
      if (proc_read_line_(path, comm, sizeof comm) && strncmp(comm, "rdk:", 4) == 0) out->rdk_threads++;
    }
    closedir(tasks);
  } else {
    ok = false;
  }

  DIR *fds = opendir("/proc/self/fd");
  if (fds != NULL) {
    out->fds = out->sockets = 0;
    int own = dirfd(fds);
    struct dirent *e;
    while ((e = readdir(fds)) != NULL) {
      if (e->d_name[0] == '.' || atoi(e->d_name) == own) continue;
      out->fds++;
      char path[300], target[128];
      snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
      ssize_t n = readlink(path, target, sizeof target - 1);
      if (n > 0) {
        target[n] = '\0';
        if (strncmp(target, "socket:", 7) == 0) out->sockets++;
      }
    }
    closedir(fds);
  } else {
    ok = false;
  }
  return ok;
}

#endif
