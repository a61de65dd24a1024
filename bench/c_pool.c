/*
 * c_pool: the baseline of the empty-`with` rows. A plain pool written in C
 * the way one would by hand: one mutex, one condition variable, a LIFO
 * stack of "producers" (here just integers), no owners, no re-entrancy, no
 * handles, no timeouts.
 *
 *   c_pool --threads 1|2 --ops N
 *
 * `with` = checkout (wait while the stack is empty), call the callback
 * through a function pointer the compiler cannot see through, checkin
 * (signal only when someone waits). Prints one RESULT line, with the time
 * per operation as one thread sees it (wall time x threads / operations),
 * like wdpool_bench with.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "common.h"

enum { MAX_THREADS = 64 };

typedef struct pool {
  pthread_mutex_t lock;
  pthread_cond_t available;
  int waiting;
  int top;
  int items[MAX_THREADS];
} pool;

typedef int (*callback)(void *user_data, int item);

static int pool_checkout(pool *p) {
  pthread_mutex_lock(&p->lock);
  while (p->top == 0) {
    p->waiting++;
    pthread_cond_wait(&p->available, &p->lock);
    p->waiting--;
  }
  int item = p->items[--p->top];
  pthread_mutex_unlock(&p->lock);
  return item;
}

static void pool_checkin(pool *p, int item) {
  pthread_mutex_lock(&p->lock);
  p->items[p->top++] = item;
  int wake = p->waiting > 0;
  pthread_mutex_unlock(&p->lock);
  if (wake) pthread_cond_signal(&p->available);
}

static int pool_with(pool *p, callback cb, void *user_data) {
  int item = pool_checkout(p);
  int rc = cb(user_data, item);
  pool_checkin(p, item);
  return rc;
}

static int empty(void *user_data, int item) {
  (void)user_data;
  (void)item;
  return 1;
}

/* volatile: the call stays an indirect call, as wdpool's is. */
static callback volatile the_callback = empty;

typedef struct worker {
  pool *p;
  long ops;
  pthread_barrier_t *start;
  pthread_t thread;
} worker;

static void run_ops(worker *w, long ops) {
  for (long i = 0; i < ops; i++)
    if (pool_with(w->p, the_callback, NULL) != 1) die("callback failed");
}

static void *run(void *arg) {
  worker *w = arg;
  run_ops(w, w->ops / 10 + 1000); /* warm-up */
  pthread_barrier_wait(w->start);
  run_ops(w, w->ops);
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  long threads = arg_long(argc, argv, "--threads", 1);
  long ops = arg_long(argc, argv, "--ops", 1000000);
  if (threads < 1 || threads > MAX_THREADS || ops < 1) die("c_pool: --threads 1..%d, --ops >= 1", MAX_THREADS);
  pool p = {.top = 0};
  pthread_mutex_init(&p.lock, NULL);
  pthread_cond_init(&p.available, NULL);
  for (long i = 0; i < threads; i++) p.items[p.top++] = (int)i; /* one producer per thread */
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  worker workers[MAX_THREADS];
  for (long i = 0; i < threads; i++) {
    workers[i] = (worker){.p = &p, .ops = ops, .start = &start};
    pthread_create(&workers[i].thread, NULL, run, &workers[i]);
  }
  pthread_barrier_wait(&start);
  uint64_t t0 = now_ns();
  for (long i = 0; i < threads; i++) pthread_join(workers[i].thread, NULL);
  uint64_t t1 = now_ns();
  if (p.top != threads) die("c_pool: %d of %ld items back", p.top, threads);
  printf("RESULT bench=with impl=c_pool mode=with threads=%ld pool=%ld ops=%ld ns_per_op=%.2f elapsed_s=%.6f\n",
         threads, threads, ops * threads, (double)(t1 - t0) / (double)ops, (double)(t1 - t0) / 1e9);
  return 0;
}
