/*
 * wdpool_fast: WdPool::ConnectionPool#with's quick path in C.
 *
 * Why C: a `with` must never lose the producer it checked out, whatever
 * asynchronous interrupt (Thread#raise, Timeout, Thread#kill) arrives.
 * Ruby delivers those at its interrupt checks, which Ruby code passes at
 * almost every step, so the pure-Ruby path masks them with two
 * Thread.handle_interrupt calls (each allocates its mask in Ruby 3.1:
 * about 0.6 us apiece, most of an empty `with`). C code between two Ruby
 * calls is never interrupted: here the checkout happens inside the body
 * of an rb_ensure whose ensure function checks the producer in, and no
 * Ruby code runs between the checkout and rb_yield. An interrupt raised in
 * the block (or at its start) unwinds through rb_ensure, which checks in.
 *
 * Only the case that needs no waiting is done here: a producer free right
 * now (wdpool_pool_try_checkout). Otherwise nothing was checked out and
 * the call goes to the pure-Ruby `with` (`__with_masked`), which waits
 * with the GVL released and raises the pool's errors; so does any `with`
 * given a `timeout:` other than nil.
 *
 * The library's functions come as addresses from the ffi binding
 * (WdPool::FastWith.install), so this extension links to no libwdpool and
 * the library found by WdPool::Native is the only one used.
 */
#include <ruby.h>
#include <stdbool.h>
#include <stdint.h>

/* The C ABI's signatures (include/wdpool.h, ABI version 1). Handles are
 * opaque pointers; results are enum wdpool_result, 0 being WDPOOL_OK. */
typedef int (*try_pool_fn)(const void *pool, uint64_t owner, void **producer_out, void **err);
typedef int (*try_global_fn)(uint64_t owner, void **producer_out, void **err);
typedef int (*checkin_fn)(void *producer, void **err);
typedef void (*error_free_fn)(void *err);

static try_pool_fn try_pool;
static try_global_fn try_global;
static checkin_fn checkin;
static error_free_fn error_free;

static VALUE c_pool;     /* WdPool::ConnectionPool */
static VALUE c_producer; /* WdPool::Producer */
static VALUE m_events;   /* WdPool::Events */
static VALUE pending;    /* WdPool::Events::PENDING, [count of deferred errors] */
static ID id_timeout, id_ctx_key, id_handle_addr, id_token, id_pool, id_with_masked, id_fiber_context,
    id_raise_deferred, id_checkin_failed;

struct with_state {
    VALUE self;
    VALUE ctx;          /* the fiber's context: [owner, error slot, depth, ...] */
    long depth;
    uint64_t owner;
    uintptr_t pool;     /* the pool handle; 0: the global pool */
    void *producer;     /* checked out and not yet in: the ensure checks it in */
    bool fallback;      /* nothing checked out: take the pure-Ruby path */
    bool returned;      /* the block returned normally */
};

static VALUE with_body(VALUE arg)
{
    struct with_state *w = (struct with_state *)arg;
    void *err = NULL;
    void *producer = NULL;
    int rc;

    rb_ary_store(w->ctx, 2, LONG2FIX(w->depth + 1));
    rc = w->pool ? try_pool((const void *)w->pool, w->owner, &producer, &err)
                 : try_global(w->owner, &producer, &err);
    if (rc != 0) {
        /* The pure-Ruby path repeats the call and raises its error. */
        if (err) error_free(err);
        w->fallback = true;
        return Qnil;
    }
    if (!producer) {
        w->fallback = true;
        return Qnil;
    }
    w->producer = producer;
    /* Producer.allocate.__lease(token, pool), without calling Ruby code. */
    VALUE p = rb_obj_alloc(c_producer);
    rb_ivar_set(p, id_token, ULL2NUM((unsigned long long)(uintptr_t)producer));
    rb_ivar_set(p, id_pool, w->self);
    VALUE result = rb_yield(p);
    w->returned = true;
    return result;
}

static VALUE with_ensure(VALUE arg)
{
    struct with_state *w = (struct with_state *)arg;

    rb_ary_store(w->ctx, 2, LONG2FIX(w->depth));
    if (w->producer) {
        void *producer = w->producer;
        void *err = NULL;
        w->producer = NULL;
        /* The checkin's error is raised only when the block returned
         * normally (an exception in flight wins, as in the Ruby path). */
        int rc = checkin(producer, w->returned ? &err : NULL);
        if (rc != 0 && w->returned)
            rb_funcall(c_pool, id_checkin_failed, 2, INT2FIX(rc),
                       ULL2NUM((unsigned long long)(uintptr_t)err));
    }
    /* An event subscriber's error deferred by a callback from the checkin. */
    if (RARRAY_LEN(pending) > 0 && rb_ary_entry(pending, 0) != INT2FIX(0))
        rb_funcall(m_events, id_raise_deferred, 0);
    return Qnil;
}

/* WdPool::ConnectionPool#with(timeout: nil) { |producer| ... } */
static VALUE fast_with(int argc, VALUE *argv, VALUE self)
{
    /* `timeout: nil` is no timeout given (the class-level `with` and
     * `transaction` pass it on as it came). */
    bool no_timeout = argc == 0 ||
        (argc == 1 && rb_keyword_given_p() && RB_TYPE_P(argv[0], T_HASH) && RHASH_SIZE(argv[0]) == 1 &&
         NIL_P(rb_hash_lookup2(argv[0], ID2SYM(id_timeout), Qundef)));
    if (!no_timeout || !rb_block_given_p())
        return rb_funcall_passing_block_kw(self, id_with_masked, argc, argv, RB_PASS_CALLED_KEYWORDS);

    /* Nothing is held yet: an interrupt raised by these calls loses nothing. */
    VALUE ctx = rb_thread_local_aref(rb_thread_current(), id_ctx_key);
    if (NIL_P(ctx))
        ctx = rb_funcall(c_pool, id_fiber_context, 0);
    VALUE addr = rb_ivar_get(self, id_handle_addr);
    if (!RB_TYPE_P(ctx, T_ARRAY) || RARRAY_LEN(ctx) < 3 || !FIXNUM_P(rb_ary_entry(ctx, 2)))
        return rb_funcall_passing_block_kw(self, id_with_masked, argc, argv, RB_PASS_CALLED_KEYWORDS);

    struct with_state w = {0};
    w.self = self;
    w.ctx = ctx;
    w.owner = NUM2ULL(rb_ary_entry(ctx, 0));
    w.depth = FIX2LONG(rb_ary_entry(ctx, 2));
    w.pool = NIL_P(addr) ? 0 : (uintptr_t)NUM2ULL(addr);

    VALUE result = rb_ensure(with_body, (VALUE)&w, with_ensure, (VALUE)&w);
    RB_GC_GUARD(ctx);
    if (w.fallback)
        return rb_funcall_passing_block_kw(self, id_with_masked, argc, argv, RB_PASS_CALLED_KEYWORDS);
    return result;
}

static void *fn_at(VALUE address)
{
    uintptr_t a = (uintptr_t)NUM2ULL(address);
    if (a == 0) rb_raise(rb_eArgError, "wdpool_fast: a function address is 0");
    return (void *)a;
}

/* WdPool::FastWith.install(try_pool, try_global, checkin, error_free):
 * the addresses of wdpool_pool_try_checkout, wdpool_try_checkout,
 * wdpool_producer_checkin and wdpool_error_free in the loaded library.
 * Defines WdPool::ConnectionPool#with (and #then) in C; the Ruby `with`
 * must already be aliased as `__with_masked`. */
static VALUE install(VALUE mod, VALUE a_try_pool, VALUE a_try_global, VALUE a_checkin, VALUE a_error_free)
{
    VALUE m_wdpool = rb_const_get(rb_cObject, rb_intern("WdPool"));
    try_pool = (try_pool_fn)fn_at(a_try_pool);
    try_global = (try_global_fn)fn_at(a_try_global);
    checkin = (checkin_fn)fn_at(a_checkin);
    error_free = (error_free_fn)fn_at(a_error_free);

    c_pool = rb_const_get(m_wdpool, rb_intern("ConnectionPool"));
    c_producer = rb_const_get(m_wdpool, rb_intern("Producer"));
    m_events = rb_const_get(m_wdpool, rb_intern("Events"));
    pending = rb_const_get(m_events, rb_intern("PENDING"));
    Check_Type(pending, T_ARRAY);
    rb_gc_register_mark_object(c_pool);
    rb_gc_register_mark_object(c_producer);
    rb_gc_register_mark_object(m_events);
    rb_gc_register_mark_object(pending);

    if (!rb_method_boundp(c_pool, id_with_masked, 0))
        rb_raise(rb_eRuntimeError, "wdpool_fast: ConnectionPool#__with_masked is not defined");
    rb_define_method(c_pool, "with", fast_with, -1);
    rb_define_method(c_pool, "then", fast_with, -1);
    return Qtrue;
}

void Init_wdpool_fast(void)
{
    VALUE m_wdpool = rb_define_module("WdPool");
    VALUE m_fast = rb_define_module_under(m_wdpool, "FastWith");
    id_timeout = rb_intern("timeout");
    id_ctx_key = rb_intern("__wdpool_ctx");
    id_handle_addr = rb_intern("@handle_addr");
    id_token = rb_intern("@token");
    id_pool = rb_intern("@pool");
    id_with_masked = rb_intern("__with_masked");
    id_fiber_context = rb_intern("fiber_context");
    id_raise_deferred = rb_intern("raise_deferred");
    id_checkin_failed = rb_intern("__checkin_failed");
    rb_define_module_function(m_fast, "install", install, 4);
}
