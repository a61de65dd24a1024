//! The C ABI as a state machine: random calls in random order on live,
//! stale (freed, checked in, callback over), closed and wrong-kind handles,
//! NULL and arbitrary tokens, of every kind (pools, producers, configs,
//! deliveries, mock clusters), the global pool and the event functions.
//! Callbacks (`with`, `transaction`) run the next few calls of the sequence
//! inside themselves. Producers are `deliver = false`, or real librdkafka
//! producers against an in-process mock cluster; every wait is a few
//! milliseconds (timeouts of 0 to 5 ms, `max_wait_timeout` 200 ms).
//!
//! Oracle, beyond "no crash, no panic, no leak, no hang": a call with a
//! NULL handle returns WDPOOL_NULL_PARAMETER, with a handle of another kind
//! WDPOOL_INVALID_ARGUMENT, with a stale one WDPOOL_STALE_HANDLE; every
//! failure carries an error with that code and a message; each subscriber's
//! finalizer runs exactly once. Everything made in an iteration is checked
//! in, closed and freed at its end, and the thread count must come back.
#![no_main]

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wdpool::ffi::*;
use wdpool_fuzz::{call, call_maybe, thread_count, How, Outcome};

use wdpool_result::*;

const MAX_OPS: usize = 48;
const MAX_DEPTH: usize = 3;
const MAX_CLUSTERS: usize = 2;
const MAX_POOLS: usize = 6;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pick {
    /// The n-th handle of the right kind made so far (live or stale).
    Nth(u8),
    /// The n-th handle of another kind.
    Other(u8),
    Null,
    /// Any value at all: never dereferenced, it must be refused or mean a
    /// live handle.
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Timeout {
    Default,
    Zero,
    One,
    Five,
}

impl Timeout {
    fn ms(self) -> i64 {
        match self {
            Timeout::Default => WDPOOL_TIMEOUT_DEFAULT,
            Timeout::Zero => 0,
            Timeout::One => 1,
            Timeout::Five => 5,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Owner {
    Thread,
    Nobody,
    Key(u8),
}

impl Owner {
    fn value(self) -> wdpool_owner {
        match self {
            Owner::Thread => WDPOOL_OWNER_THREAD,
            Owner::Nobody => WDPOOL_OWNER_NONE,
            Owner::Key(k) => 1 + u64::from(k % 3),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Backend {
    /// `deliver = false`.
    Test,
    /// librdkafka producers against the n-th mock cluster (the shared one
    /// when there is none).
    Mock(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct PoolSpec {
    size: u8,
    timeout_ms: u8,
    backend: Backend,
    transactional: bool,
    configure_fails: bool,
}

/// `body` is how many of the following calls run inside the callback.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Body {
    len: u8,
    returns: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Produce {
    producer: Pick,
    how: How,
    count: u8,
    topic: u8,
    partition: i8,
    key: bool,
    partition_key: bool,
    timeout: Timeout,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    PoolNew(PoolSpec),
    PoolCheckout { pool: Pick, owner: Owner, timeout: Timeout },
    PoolWith { pool: Pick, timeout: Timeout, body: Body },
    PoolTransaction { pool: Pick, timeout: Timeout, body: Body },
    PoolClose { pool: Pick, force: bool },
    PoolReload { pool: Pick },
    PoolStats { pool: Pick },
    PoolId { pool: Pick },
    PoolFree { pool: Pick },
    Setup(PoolSpec),
    GlobalWith { timeout: Timeout, body: Body },
    GlobalTransaction { timeout: Timeout, body: Body },
    GlobalCheckout { owner: Owner, timeout: Timeout },
    GlobalClose { force: bool },
    GlobalReload,
    GlobalStats,
    Produce(Produce),
    Flush { producer: Pick, timeout: Timeout },
    ProducerTransaction { producer: Pick, body: Body },
    Begin { producer: Pick, timeout: Timeout },
    End { producer: Pick, outcome: i8, timeout: Timeout },
    Commit { producer: Pick, timeout: Timeout },
    Abort { producer: Pick, timeout: Timeout },
    Info { producer: Pick },
    Checkin { producer: Pick },
    DeliveryWait { delivery: Pick, timeout: Timeout },
    DeliveryCount { delivery: Pick },
    DeliveryReport { delivery: Pick, index: u8 },
    DeliveryFree { delivery: Pick },
    SlotsNew { count: u8 },
    ProduceInto { producer: Pick, slots: Pick, first: u8, count: u8, topic: u8 },
    /// `wdpool_pool_produce_async` (`wdpool_produce_async` when `global`).
    PoolProduce { pool: Pick, global: bool, owner: Owner, timeout: Timeout, no_wait: bool, topic: u8, tracked: bool },
    /// `wdpool_pool_produce_into` (`wdpool_produce_into` when `global`).
    PoolProduceInto {
        pool: Pick,
        global: bool,
        owner: Owner,
        timeout: Timeout,
        no_wait: bool,
        slots: Pick,
        first: u8,
        count: u8,
        topic: u8,
    },
    SlotsPoll { slots: Pick, index: u8 },
    SlotsWait { slots: Pick, index: u8, timeout: Timeout },
    /// Reads a live array's slots in place.
    SlotsRead { nth: u8 },
    SlotsFree { slots: Pick },
    MockNew { brokers: i8 },
    MockBootstrap { cluster: Pick },
    MockCreateTopic { cluster: Pick, topic: u8, partitions: i8 },
    MockBrokerUp { cluster: Pick, broker: i8, up: bool },
    MockRtt { cluster: Pick, broker: i8, rtt_ms: u8 },
    MockFree { cluster: Pick },
    ConfigSet { config: Pick, setter: u8 },
    Subscribe { finalizer: bool },
    Unsubscribe { nth: u8, raw: Option<u64> },
    Drain { max: u8 },
    EventsStats,
    SetLimits { events: u8, bytes: u16 },
    ResultName(i32),
    /// Pass NULL as the error out-parameter of the next call.
    NoErr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pool,
    Producer,
    Delivery,
    Cluster,
    Config,
    Slots,
}

const KINDS: [Kind; 6] = [Kind::Pool, Kind::Producer, Kind::Delivery, Kind::Cluster, Kind::Config, Kind::Slots];

/// A message to topic `fuzz-a` (`topic % 3 == 0`), or to an invalid topic.
fn fuzz_message(topic: u8) -> wdpool_message {
    let topics: [&'static CStr; 3] = [c"fuzz-a", c"bad topic", c""];
    let mut m = unsafe { std::mem::zeroed::<wdpool_message>() };
    // SAFETY: a writable message.
    unsafe { wdpool_message_init(&mut m) };
    m.topic = topics[usize::from(topic) % topics.len()].as_ptr();
    m.payload = wdpool_bytes { data: b"payload".as_ptr(), len: 7 };
    m
}

/// What a call given a picked handle must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Live,
    Stale,
    Null,
    WrongKind,
    /// A raw value: anything but a panic.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Handle {
    token: usize,
    live: bool,
    /// Producers: from a checkout (else lent to a callback).
    leased: bool,
}

/// Counts a subscriber's events; freed by its finalizer.
struct Subscriber {
    events: usize,
}

static FINALIZED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_event(user_data: *mut c_void, event: *const wdpool_event) {
    // SAFETY: the subscriber's own box, and an event valid for the call.
    let (sub, event) = unsafe { (&mut *user_data.cast::<Subscriber>(), &*event) };
    sub.events += 1;
    // SAFETY: the event's strings are NUL-terminated for the call.
    let (name, message) = unsafe { (CStr::from_ptr(event.name), CStr::from_ptr(event.message)) };
    assert!(!name.to_bytes().is_empty());
    assert_eq!(message.to_bytes().len(), event.message_len);
}

unsafe extern "C" fn finalize(user_data: *mut c_void) {
    // SAFETY: made by Box::into_raw in Op::Subscribe, finalized once.
    drop(unsafe { Box::from_raw(user_data.cast::<Subscriber>()) });
    FINALIZED.fetch_add(1, Ordering::Relaxed);
}

#[derive(Default)]
struct State {
    pools: Vec<Handle>,
    producers: Vec<Handle>,
    deliveries: Vec<Handle>,
    clusters: Vec<Handle>,
    configs: Vec<Handle>,
    /// Report slot arrays, with where their slots are and how many.
    slots: Vec<Handle>,
    arrays: Vec<(*const wdpool_report_slot, usize)>,
    /// (id, still subscribed, has a finalizer)
    subscriptions: Vec<(u64, bool, bool)>,
    global: bool,
    pools_made: usize,
    clusters_made: usize,
    no_err: bool,
}

/// What a configure callback needs.
struct Configure {
    spec: PoolSpec,
    bootstrap: CString,
    serial: u64,
    state: *mut State,
}

unsafe extern "C" fn configure(user_data: *mut c_void, config: *mut wdpool_config, index: usize) -> i32 {
    // SAFETY: `Configure` of the creating call, alive during it.
    let c = unsafe { &*user_data.cast::<Configure>() };
    // SAFETY: the State outlives the iteration's calls.
    unsafe { (*c.state).configs.push(Handle { token: config as usize, live: false, leased: false }) };
    let ok = |o: Outcome| o.ok();
    let tx_id = CString::new(format!("fuzz-{}-{index}", c.serial)).unwrap();
    // SAFETY: the callback's config; NUL-terminated strings.
    let fine = unsafe {
        ok(call(|e| wdpool_config_set_max_wait_timeout(config, 200, e)))
            && match c.spec.backend {
                Backend::Test => ok(call(|e| wdpool_config_set_deliver(config, false, e))),
                Backend::Mock(_) => {
                    ok(call(|e| wdpool_config_set_kafka(config, c"bootstrap.servers".as_ptr(), c.bootstrap.as_ptr(), e)))
                        && ok(call(|e| wdpool_config_set_kafka(config, c"message.timeout.ms".as_ptr(), c"200".as_ptr(), e)))
                        && ok(call(|e| wdpool_config_set_kafka(config, c"linger.ms".as_ptr(), c"0".as_ptr(), e)))
                }
            }
            && (!c.spec.transactional
                || ok(call(|e| wdpool_config_set_kafka(config, c"transactional.id".as_ptr(), tx_id.as_ptr(), e))))
    };
    if fine && !c.spec.configure_fails {
        WDPOOL_CB_OK
    } else {
        0
    }
}

/// What a producer callback needs: the calls to run inside it.
struct Inside<'a> {
    runner: *mut Runner<'a>,
    ops: &'a [Op],
    depth: usize,
    returns: i32,
    /// Where the lent handle went in `producers`.
    slot: Option<usize>,
}

unsafe extern "C" fn inside(user_data: *mut c_void, producer: *mut wdpool_producer) -> i32 {
    // SAFETY: the `Inside` of the calling op, alive during the call.
    let inside = unsafe { &mut *user_data.cast::<Inside<'_>>() };
    // SAFETY: the runner outlives the call that called back.
    let runner = unsafe { &mut *inside.runner };
    // wdpool_producer_transaction lends the caller's own handle: it stays
    // valid after the callback. The other calls lend one of the callback's.
    let token = producer as usize;
    if !runner.state.producers.iter().any(|h| h.live && h.token == token) {
        runner.state.producers.push(Handle { token, live: true, leased: false });
        inside.slot = Some(runner.state.producers.len() - 1);
    }
    runner.run(inside.ops, inside.depth + 1);
    inside.returns
}

/// The mock cluster pools use when the sequence made none: made once.
fn shared_cluster() -> &'static CString {
    static SHARED: OnceLock<CString> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut cluster = ptr::null_mut();
        // SAFETY: a valid out-parameter; the cluster lives for the process.
        assert!(call(|e| unsafe { wdpool_mock_cluster_new(1, &mut cluster, e) }).ok());
        // SAFETY: a live cluster.
        unsafe { CStr::from_ptr(wdpool_mock_cluster_bootstrap_servers(cluster)) }.to_owned()
    })
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

struct Runner<'a> {
    state: State,
    _ops: std::marker::PhantomData<&'a Op>,
}

impl<'a> Runner<'a> {
    fn list(&mut self, kind: Kind) -> &mut Vec<Handle> {
        match kind {
            Kind::Pool => &mut self.state.pools,
            Kind::Producer => &mut self.state.producers,
            Kind::Delivery => &mut self.state.deliveries,
            Kind::Cluster => &mut self.state.clusters,
            Kind::Config => &mut self.state.configs,
            Kind::Slots => &mut self.state.slots,
        }
    }

    /// The handle `pick` means for a call taking `kind`, what the call
    /// must do with it, and its place in its list.
    fn pick(&mut self, kind: Kind, pick: Pick) -> (usize, Expect, Option<usize>) {
        match pick {
            Pick::Null => (0, Expect::Null, None),
            Pick::Raw(v) => (v as usize, Expect::Unknown, None),
            Pick::Nth(n) => {
                let list = self.list(kind);
                if list.is_empty() {
                    return (0, Expect::Null, None);
                }
                let i = usize::from(n) % list.len();
                let h = list[i];
                (h.token, if h.live { Expect::Live } else { Expect::Stale }, Some(i))
            }
            Pick::Other(n) => {
                let others: Vec<Handle> = KINDS
                    .iter()
                    .filter(|k| **k != kind)
                    .flat_map(|k| self.list(*k).clone())
                    .collect();
                if others.is_empty() {
                    return (0, Expect::Null, None);
                }
                (others[usize::from(n) % others.len()].token, Expect::WrongKind, None)
            }
        }
    }

    fn with_err(&mut self) -> bool {
        !std::mem::take(&mut self.state.no_err)
    }

    /// Checks what a call returned against what its handle called for.
    fn expect(&self, out: &Outcome, expect: Expect, what: &str) {
        let want = match expect {
            Expect::Null => WDPOOL_NULL_PARAMETER,
            Expect::WrongKind => WDPOOL_INVALID_ARGUMENT,
            Expect::Stale => WDPOOL_STALE_HANDLE,
            Expect::Live | Expect::Unknown => return,
        };
        assert_eq!(out.rc, want, "{what} with a {expect:?} handle: {out:?}");
    }

    fn run(&mut self, ops: &'a [Op], depth: usize) {
        let mut i = 0;
        while i < ops.len() {
            let body_len = match ops[i] {
                Op::PoolWith { body, .. }
                | Op::PoolTransaction { body, .. }
                | Op::GlobalWith { body, .. }
                | Op::GlobalTransaction { body, .. }
                | Op::ProducerTransaction { body, .. } => usize::from(body.len % 4).min(ops.len() - i - 1),
                _ => 0,
            };
            let body = &ops[i + 1..i + 1 + body_len];
            self.step(ops[i], if depth < MAX_DEPTH { body } else { &[] }, depth);
            i += 1 + body_len;
        }
    }

    /// Calls `f` with a producer callback running `body`, then marks the
    /// handle it lent stale.
    fn with_callback(
        &mut self,
        body: &'a [Op],
        b: Body,
        depth: usize,
        f: impl FnOnce(wdpool_producer_cb, *mut c_void, *mut *mut wdpool_error) -> wdpool_result,
    ) -> Outcome {
        let returns = match b.returns % 4 {
            0 => WDPOOL_CB_OK,
            1 => WDPOOL_CB_ABORT,
            2 => 0,
            _ => -7,
        };
        let mut ctx = Inside { runner: self as *mut Runner<'a>, ops: body, depth, returns, slot: None };
        let with_err = self.with_err();
        let out = call_maybe(with_err, |e| f(Some(inside), (&mut ctx as *mut Inside<'_>).cast(), e));
        if let Some(slot) = ctx.slot {
            self.state.producers[slot].live = false;
        }
        out
    }

    fn new_pool(&mut self, spec: PoolSpec, global: bool) -> Outcome {
        let bootstrap = match spec.backend {
            Backend::Test => CString::default(),
            Backend::Mock(n) => {
                let live: Vec<usize> = self.state.clusters.iter().filter(|h| h.live).map(|h| h.token).collect();
                match live.get(usize::from(n) % live.len().max(1)) {
                    // SAFETY: a live cluster handle.
                    Some(c) => unsafe { CStr::from_ptr(wdpool_mock_cluster_bootstrap_servers(*c as *const _)) }.to_owned(),
                    None => shared_cluster().clone(),
                }
            }
        };
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed) as u64;
        let mut c = Configure { spec, bootstrap, serial, state: &mut self.state as *mut State };
        let options = wdpool_options { size: usize::from(spec.size % 3), timeout_ms: u64::from(spec.timeout_ms % 6) };
        let user_data = (&mut c as *mut Configure).cast::<c_void>();
        let with_err = self.with_err();
        if global {
            // SAFETY: valid options, callback and user data.
            let out = call_maybe(with_err, |e| unsafe { wdpool_setup(&options, Some(configure), user_data, e) });
            self.state.global |= out.ok();
            return out;
        }
        let mut pool = ptr::null_mut();
        // SAFETY: as above.
        let out = call_maybe(with_err, |e| unsafe { wdpool_pool_new(&options, Some(configure), user_data, &mut pool, e) });
        if out.ok() {
            self.state.pools.push(Handle { token: pool as usize, live: true, leased: false });
        }
        assert_eq!(out.ok(), !pool.is_null(), "{out:?}");
        out
    }

    fn produce(&mut self, p: Produce) {
        let (producer, expect, _) = self.pick(Kind::Producer, p.producer);
        let producer = producer as *mut wdpool_producer;
        let topics: [&CStr; 4] = [c"fuzz-a", c"fuzz-b", c"bad topic", c""];
        let topic = topics[usize::from(p.topic) % topics.len()];
        let mut m = unsafe { std::mem::zeroed::<wdpool_message>() };
        // SAFETY: a writable message.
        unsafe { wdpool_message_init(&mut m) };
        m.topic = topic.as_ptr();
        m.payload = wdpool_bytes { data: b"payload".as_ptr(), len: 7 };
        if p.key {
            m.key = wdpool_bytes { data: b"k".as_ptr(), len: 1 };
        }
        if p.partition_key {
            m.partition_key = wdpool_bytes { data: b"pk".as_ptr(), len: 2 };
        }
        m.partition = i32::from(p.partition % 4);
        let count = usize::from(p.count % 4);
        let messages = vec![m; count.max(1)];
        let mut reports = vec![unsafe { std::mem::zeroed::<wdpool_report>() }; messages.len()];
        let mut delivery = ptr::null_mut();
        let with_err = self.with_err();
        // SAFETY: valid messages and out-parameters; any handle.
        let out = call_maybe(with_err, |e| unsafe {
            match p.how {
                How::Sync => wdpool_producer_produce_sync(producer, &messages[0], p.timeout.ms(), &mut reports[0], e),
                How::Async => wdpool_producer_produce_async(producer, &messages[0], &mut delivery, e),
                How::ManySync => wdpool_producer_produce_many_sync(
                    producer,
                    messages.as_ptr(),
                    count,
                    p.timeout.ms(),
                    reports.as_mut_ptr(),
                    e,
                ),
                How::ManyAsync => wdpool_producer_produce_many_async(producer, messages.as_ptr(), count, &mut delivery, e),
            }
        });
        self.expect(&out, expect, "produce");
        if !delivery.is_null() {
            self.state.deliveries.push(Handle { token: delivery as usize, live: true, leased: false });
        }
    }

    fn step(&mut self, op: Op, body: &'a [Op], depth: usize) {
        macro_rules! on {
            ($kind:expr, $pick:expr, $what:expr, |$h:ident, $e:ident| $call:expr) => {{
                let (token, expect, _) = self.pick($kind, $pick);
                let with_err = self.with_err();
                #[allow(clippy::unnecessary_cast)]
                let $h = token as *mut _;
                // SAFETY: any token is fine (never dereferenced); the
                // out-parameters are valid.
                let out = call_maybe(with_err, |$e| unsafe { $call });
                self.expect(&out, expect, $what);
                (out, expect)
            }};
        }
        match op {
            Op::NoErr => self.state.no_err = true,
            Op::PoolNew(spec) => {
                if self.state.pools_made < MAX_POOLS {
                    self.state.pools_made += 1;
                    self.new_pool(spec, false);
                }
            }
            Op::Setup(spec) => {
                if self.state.pools_made < MAX_POOLS {
                    self.state.pools_made += 1;
                    self.new_pool(spec, true);
                }
            }
            Op::PoolCheckout { pool, owner, timeout } => {
                let mut producer = ptr::null_mut();
                let (out, _) = on!(Kind::Pool, pool, "checkout", |h, e| wdpool_pool_checkout(
                    h,
                    owner.value(),
                    timeout.ms(),
                    &mut producer,
                    e
                ));
                assert_eq!(out.ok(), !producer.is_null());
                if out.ok() {
                    self.state.producers.push(Handle { token: producer as usize, live: true, leased: true });
                }
            }
            Op::GlobalCheckout { owner, timeout } => {
                let mut producer = ptr::null_mut();
                let with_err = self.with_err();
                // SAFETY: a valid out-parameter.
                let out = call_maybe(with_err, |e| unsafe { wdpool_checkout(owner.value(), timeout.ms(), &mut producer, e) });
                if out.ok() {
                    self.state.producers.push(Handle { token: producer as usize, live: true, leased: true });
                }
            }
            Op::PoolWith { pool, timeout, body: b } | Op::PoolTransaction { pool, timeout, body: b } => {
                let (token, expect, _) = self.pick(Kind::Pool, pool);
                let txn = matches!(op, Op::PoolTransaction { .. });
                let out = self.with_callback(body, b, depth, |cb, ud, e| unsafe {
                    if txn {
                        wdpool_pool_transaction(token as *const _, timeout.ms(), cb, ud, e)
                    } else {
                        wdpool_pool_with(token as *const _, timeout.ms(), cb, ud, e)
                    }
                });
                self.expect(&out, expect, "pool with/transaction");
            }
            Op::GlobalWith { timeout, body: b } | Op::GlobalTransaction { timeout, body: b } => {
                let txn = matches!(op, Op::GlobalTransaction { .. });
                self.with_callback(body, b, depth, |cb, ud, e| unsafe {
                    if txn {
                        wdpool_transaction(timeout.ms(), cb, ud, e)
                    } else {
                        wdpool_with(timeout.ms(), cb, ud, e)
                    }
                });
            }
            Op::ProducerTransaction { producer, body: b } => {
                let (token, expect, _) = self.pick(Kind::Producer, producer);
                let out = self.with_callback(body, b, depth, |cb, ud, e| unsafe {
                    wdpool_producer_transaction(token as *mut _, cb, ud, e)
                });
                self.expect(&out, expect, "producer transaction");
            }
            Op::PoolClose { pool, force } => {
                let mut report = wdpool_close_report::default();
                on!(Kind::Pool, pool, "close", |h, e| wdpool_pool_close(h, force, &mut report, e));
            }
            Op::PoolReload { pool } => {
                on!(Kind::Pool, pool, "reload", |h, e| wdpool_pool_reload(h, e));
            }
            Op::PoolStats { pool } => {
                let mut stats = wdpool_statistics::default();
                let (out, expect) = on!(Kind::Pool, pool, "stats", |h, e| wdpool_pool_stats(h, &mut stats, e));
                if expect == Expect::Live {
                    assert!(out.ok(), "{out:?}");
                    assert!(stats.idle + stats.in_use <= stats.size, "{stats:?}");
                }
            }
            Op::PoolId { pool } => {
                let (token, expect, _) = self.pick(Kind::Pool, pool);
                // SAFETY: any token.
                let id = unsafe { wdpool_pool_id(token as *const _) };
                match expect {
                    Expect::Live => assert_ne!(id, 0),
                    Expect::Unknown => {}
                    _ => assert_eq!(id, 0, "{expect:?}"),
                }
            }
            Op::PoolFree { pool } => {
                let (token, _, index) = self.pick(Kind::Pool, pool);
                // SAFETY: any token.
                unsafe { wdpool_pool_free(token as *mut _) };
                if let Some(i) = index {
                    self.state.pools[i].live = false;
                }
            }
            Op::GlobalClose { force } => {
                let with_err = self.with_err();
                // SAFETY: NULL report is allowed.
                call_maybe(with_err, |e| unsafe { wdpool_close(force, ptr::null_mut(), e) });
            }
            Op::GlobalReload => {
                let with_err = self.with_err();
                // SAFETY: no pointers.
                call_maybe(with_err, |e| unsafe { wdpool_reload(e) });
            }
            Op::GlobalStats => {
                let mut stats = wdpool_statistics::default();
                let with_err = self.with_err();
                // SAFETY: a valid out-parameter.
                let out = call_maybe(with_err, |e| unsafe { wdpool_stats(&mut stats, e) });
                let active = wdpool_active();
                assert!(out.ok() || !active || !with_err, "{out:?}");
            }
            Op::Produce(p) => self.produce(p),
            Op::Flush { producer, timeout } => {
                on!(Kind::Producer, producer, "flush", |h, e| wdpool_producer_flush(h, timeout.ms(), e));
            }
            Op::Begin { producer, timeout } => {
                on!(Kind::Producer, producer, "begin", |h, e| wdpool_producer_begin(h, timeout.ms(), e));
            }
            Op::End { producer, outcome, timeout } => {
                let outcome = i32::from(outcome % 6);
                let (token, expect, _) = self.pick(Kind::Producer, producer);
                let mut ended = 0;
                let with_err = self.with_err();
                // SAFETY: any token; a valid out-parameter.
                let out = call_maybe(with_err, |e| unsafe {
                    wdpool_producer_end(token as *mut _, outcome, timeout.ms(), &mut ended, e)
                });
                if (1..=4).contains(&outcome) {
                    self.expect(&out, expect, "end");
                } else {
                    // Two bad arguments: either may be the one reported.
                    assert!(matches!(out.rc, WDPOOL_INVALID_ARGUMENT | WDPOOL_NULL_PARAMETER | WDPOOL_STALE_HANDLE), "{out:?}");
                }
                if out.ok() {
                    assert!((1..=3).contains(&ended), "ended {ended}");
                }
            }
            Op::Commit { producer, timeout } => {
                on!(Kind::Producer, producer, "commit", |h, e| wdpool_producer_commit(h, timeout.ms(), e));
            }
            Op::Abort { producer, timeout } => {
                on!(Kind::Producer, producer, "abort", |h, e| wdpool_producer_abort(h, timeout.ms(), e));
            }
            Op::Info { producer } => {
                let mut info = wdpool_producer_info::default();
                let (out, expect) = on!(Kind::Producer, producer, "info", |h, e| wdpool_producer_get_info(h, &mut info, e));
                if expect == Expect::Live {
                    assert!(out.ok(), "{out:?}");
                }
            }
            Op::Checkin { producer } => {
                let (token, expect, index) = self.pick(Kind::Producer, producer);
                let leased = index.is_some_and(|i| self.state.producers[i].leased);
                let with_err = self.with_err();
                // SAFETY: any token.
                let out = call_maybe(with_err, |e| unsafe { wdpool_producer_checkin(token as *mut _, e) });
                self.expect(&out, expect, "checkin");
                if expect == Expect::Live && !leased {
                    assert_eq!(out.rc, WDPOOL_INVALID_ARGUMENT, "a lent handle was checked in: {out:?}");
                }
                if let (Some(i), true) = (index, leased) {
                    self.state.producers[i].live = false;
                }
            }
            Op::DeliveryWait { delivery, timeout } => {
                on!(Kind::Delivery, delivery, "delivery wait", |h, e| wdpool_delivery_wait(h, timeout.ms(), e));
            }
            Op::DeliveryCount { delivery } => {
                let (token, expect, _) = self.pick(Kind::Delivery, delivery);
                // SAFETY: any token.
                let (count, pending) =
                    unsafe { (wdpool_delivery_count(token as *const _), wdpool_delivery_pending(token as *const _)) };
                assert!(pending <= count || expect == Expect::Unknown, "{pending} > {count}");
                if !matches!(expect, Expect::Live | Expect::Unknown) {
                    assert_eq!((count, pending), (0, 0));
                }
            }
            Op::DeliveryReport { delivery, index } => {
                let mut report = unsafe { std::mem::zeroed::<wdpool_report>() };
                on!(Kind::Delivery, delivery, "delivery report", |h, e| wdpool_delivery_report(
                    h,
                    usize::from(index % 5),
                    &mut report,
                    e
                ));
            }
            Op::DeliveryFree { delivery } => {
                let (token, _, index) = self.pick(Kind::Delivery, delivery);
                // SAFETY: any token.
                unsafe { wdpool_delivery_free(token as *mut _) };
                if let Some(i) = index {
                    self.state.deliveries[i].live = false;
                }
            }
            Op::SlotsNew { count } => {
                let mut slots = ptr::null_mut();
                let with_err = self.with_err();
                // SAFETY: a valid out-parameter.
                let out = call_maybe(with_err, |e| unsafe { wdpool_report_slots_new(usize::from(count % 40), &mut slots, e) });
                assert_eq!(out.ok(), count % 40 != 0, "{out:?}");
                if out.ok() {
                    let (mut array, mut n) = (ptr::null(), 0);
                    // SAFETY: a live array; valid out-parameters.
                    assert!(call(|e| unsafe { wdpool_report_slots_array(slots, &mut array, &mut n, e) }).ok());
                    assert_eq!(n, usize::from(count % 40));
                    self.state.slots.push(Handle { token: slots as usize, live: true, leased: false });
                    self.state.arrays.push((array, n));
                }
            }
            Op::ProduceInto { producer, slots, first, count, topic } => {
                let (p, p_expect, _) = self.pick(Kind::Producer, producer);
                let (s, s_expect, _) = self.pick(Kind::Slots, slots);
                let messages = [fuzz_message(topic); 3];
                let with_err = self.with_err();
                // SAFETY: valid messages; any handles.
                let out = call_maybe(with_err, |e| unsafe {
                    wdpool_producer_produce_into(
                        p as *mut _,
                        messages.as_ptr(),
                        usize::from(count % 4),
                        s as *mut _,
                        usize::from(first % 42),
                        e,
                    )
                });
                // The producer is looked at first, then the slots.
                if p_expect != Expect::Live {
                    self.expect(&out, p_expect, "produce into (producer)");
                } else {
                    self.expect(&out, s_expect, "produce into (slots)");
                }
            }
            Op::PoolProduce { pool, global, owner, timeout, no_wait, topic, tracked } => {
                let (token, expect, _) = self.pick(Kind::Pool, pool);
                let m = fuzz_message(topic);
                let timeout_ms = if no_wait { WDPOOL_TIMEOUT_NO_WAIT } else { timeout.ms() };
                let (mut delivery, mut produced): (*mut wdpool_delivery, bool) = (ptr::null_mut(), false);
                let delivery_out = if tracked { &mut delivery as *mut _ } else { ptr::null_mut() };
                let with_err = self.with_err();
                // SAFETY: a valid message and out-parameters; any handle.
                let out = call_maybe(with_err, |e| unsafe {
                    if global {
                        wdpool_produce_async(owner.value(), timeout_ms, &m, delivery_out, &mut produced, e)
                    } else {
                        wdpool_pool_produce_async(token as *const _, owner.value(), timeout_ms, &m, delivery_out, &mut produced, e)
                    }
                });
                // The message is checked first, then the pool.
                if !global && topic % 3 == 0 {
                    self.expect(&out, expect, "pool produce");
                }
                assert!(!out.ok() || produced || no_wait, "produced on OK unless no wait: {out:?}");
                assert_eq!(!delivery.is_null(), out.ok() && produced && tracked, "{out:?}");
                if !delivery.is_null() {
                    self.state.deliveries.push(Handle { token: delivery as usize, live: true, leased: false });
                }
            }
            Op::PoolProduceInto { pool, global, owner, timeout, no_wait, slots, first, count, topic } => {
                let (token, p_expect, _) = self.pick(Kind::Pool, pool);
                let (s, s_expect, _) = self.pick(Kind::Slots, slots);
                let messages = [fuzz_message(topic); 3];
                let timeout_ms = if no_wait { WDPOOL_TIMEOUT_NO_WAIT } else { timeout.ms() };
                let (count, first) = (usize::from(count % 4), usize::from(first % 42));
                let mut produced = false;
                let with_err = self.with_err();
                // SAFETY: valid messages and out-parameters; any handles.
                let out = call_maybe(with_err, |e| unsafe {
                    if global {
                        wdpool_produce_into(owner.value(), timeout_ms, messages.as_ptr(), count, s as *mut _, first, &mut produced, e)
                    } else {
                        wdpool_pool_produce_into(
                            token as *const _,
                            owner.value(),
                            timeout_ms,
                            messages.as_ptr(),
                            count,
                            s as *mut _,
                            first,
                            &mut produced,
                            e,
                        )
                    }
                });
                // The slots are looked at first, then the count and the
                // message, then the pool.
                if s_expect != Expect::Live {
                    self.expect(&out, s_expect, "pool produce into (slots)");
                } else if count == 0 {
                    assert_eq!(out.rc, WDPOOL_INVALID_ARGUMENT, "{out:?}");
                } else if !global && topic % 3 == 0 {
                    self.expect(&out, p_expect, "pool produce into (pool)");
                }
                assert!(!out.ok() || produced || no_wait, "produced on OK unless no wait: {out:?}");
            }
            Op::SlotsPoll { slots, index } => {
                let mut report = unsafe { std::mem::zeroed::<wdpool_report>() };
                let (out, expect) =
                    on!(Kind::Slots, slots, "slots poll", |h, e| wdpool_report_slots_poll(h, usize::from(index % 42), &mut report, e));
                if expect == Expect::Live {
                    assert!(
                        matches!(out.rc, WDPOOL_OK | WDPOOL_KAFKA | WDPOOL_FATAL | WDPOOL_PENDING | WDPOOL_INVALID_ARGUMENT),
                        "{out:?}"
                    );
                }
            }
            Op::SlotsWait { slots, index, timeout } => {
                let mut report = unsafe { std::mem::zeroed::<wdpool_report>() };
                let (out, expect) = on!(Kind::Slots, slots, "slots wait", |h, e| wdpool_report_slots_wait(
                    h,
                    usize::from(index % 42),
                    timeout.ms(),
                    &mut report,
                    e
                ));
                if expect == Expect::Live {
                    assert!(
                        matches!(
                            out.rc,
                            WDPOOL_OK | WDPOOL_KAFKA | WDPOOL_FATAL | WDPOOL_DELIVERY_TIMEOUT | WDPOOL_INVALID_ARGUMENT
                        ),
                        "{out:?}"
                    );
                }
            }
            Op::SlotsRead { nth } => {
                let live: Vec<usize> = (0..self.state.slots.len()).filter(|i| self.state.slots[*i].live).collect();
                if let Some(&i) = live.get(usize::from(nth) % live.len().max(1)) {
                    let (array, n) = self.state.arrays[i];
                    for k in 0..n {
                        // SAFETY: a live array's slots, read as the header
                        // says (the state with acquire, then the report).
                        let (state, reserved) = unsafe {
                            let slot = array.add(k);
                            let state = (*(ptr::addr_of!((*slot).state) as *const std::sync::atomic::AtomicU32))
                                .load(Ordering::Acquire);
                            (state, ptr::read(ptr::addr_of!((*slot).reserved)))
                        };
                        assert!(state <= WDPOOL_SLOT_DONE, "slot {k} in state {state}");
                        assert_eq!(reserved, 0);
                    }
                }
            }
            Op::SlotsFree { slots } => {
                let (token, _, index) = self.pick(Kind::Slots, slots);
                // SAFETY: any token.
                unsafe { wdpool_report_slots_free(token as *mut _) };
                if let Some(i) = index {
                    self.state.slots[i].live = false;
                }
            }
            Op::MockNew { brokers } => {
                if self.state.clusters_made < MAX_CLUSTERS {
                    self.state.clusters_made += 1;
                    let mut cluster = ptr::null_mut();
                    let with_err = self.with_err();
                    let brokers = i32::from(brokers % 4);
                    // SAFETY: a valid out-parameter.
                    let out = call_maybe(with_err, |e| unsafe { wdpool_mock_cluster_new(brokers, &mut cluster, e) });
                    assert_eq!(out.ok(), brokers >= 1, "{brokers} brokers: {out:?}");
                    if out.ok() {
                        self.state.clusters.push(Handle { token: cluster as usize, live: true, leased: false });
                    }
                }
            }
            Op::MockBootstrap { cluster } => {
                let (token, expect, _) = self.pick(Kind::Cluster, cluster);
                // SAFETY: any token; the string lives while the cluster does.
                let servers = unsafe { CStr::from_ptr(wdpool_mock_cluster_bootstrap_servers(token as *const _)) };
                if !matches!(expect, Expect::Live | Expect::Unknown) {
                    assert!(servers.is_empty());
                }
            }
            Op::MockCreateTopic { cluster, topic, partitions } => {
                let topics: [&CStr; 3] = [c"fuzz-a", c"fuzz-b", c"bad topic"];
                let topic = topics[usize::from(topic) % topics.len()];
                on!(Kind::Cluster, cluster, "create topic", |h, e| wdpool_mock_cluster_create_topic(
                    h,
                    topic.as_ptr(),
                    i32::from(partitions % 5),
                    e
                ));
            }
            Op::MockBrokerUp { cluster, broker, up } => {
                on!(Kind::Cluster, cluster, "broker up", |h, e| wdpool_mock_cluster_set_broker_up(
                    h,
                    i32::from(broker % 4),
                    up,
                    e
                ));
            }
            Op::MockRtt { cluster, broker, rtt_ms } => {
                on!(Kind::Cluster, cluster, "rtt", |h, e| wdpool_mock_cluster_set_rtt(
                    h,
                    i32::from(broker % 4),
                    u32::from(rtt_ms % 4),
                    e
                ));
            }
            Op::MockFree { cluster } => {
                let (token, _, index) = self.pick(Kind::Cluster, cluster);
                // SAFETY: any token.
                unsafe { wdpool_mock_cluster_free(token as *mut _) };
                if let Some(i) = index {
                    self.state.clusters[i].live = false;
                }
            }
            Op::ConfigSet { config, setter } => {
                let (out, expect) = on!(Kind::Config, config, "config setter", |h, e| match setter % 5 {
                    0 => wdpool_config_set_kafka(h, c"acks".as_ptr(), c"1".as_ptr(), e),
                    1 => wdpool_config_set_deliver(h, false, e),
                    2 => wdpool_config_set_max_wait_timeout(h, 1, e),
                    3 => wdpool_config_set_max_payload_size(h, 1, e),
                    _ => wdpool_config_set_id(h, c"x".as_ptr(), e),
                });
                // Configs are only live inside their callback, never here.
                assert!(!out.ok() || expect == Expect::Unknown, "{out:?}");
            }
            Op::Subscribe { finalizer } => {
                let user_data = Box::into_raw(Box::new(Subscriber { events: 0 })).cast::<c_void>();
                let mut id = 0;
                let fin: wdpool_finalizer = if finalizer { Some(finalize) } else { None };
                // SAFETY: a callback usable from any thread, its box.
                let out = call(|e| unsafe { wdpool_subscribe(Some(on_event), user_data, fin, &mut id, e) });
                assert!(out.ok() && id != 0, "{out:?}");
                if !finalizer {
                    // Nobody frees it but the iteration's end.
                    LEAKED_BOXES.with(|b| b.borrow_mut().push(user_data as usize));
                }
                self.state.subscriptions.push((id, true, finalizer));
            }
            Op::Unsubscribe { nth, raw } => {
                let subs = &mut self.state.subscriptions;
                let (id, live) = match (raw, subs.is_empty()) {
                    (Some(id), _) => (id, None),
                    (None, true) => (0, Some(false)),
                    (None, false) => {
                        let i = usize::from(nth) % subs.len();
                        let live = subs[i].1;
                        subs[i].1 = false;
                        (subs[i].0, Some(live))
                    }
                };
                let with_err = self.with_err();
                // SAFETY: no pointers.
                let out = call_maybe(with_err, |e| unsafe { wdpool_unsubscribe(id, e) });
                match live {
                    Some(true) => assert!(out.ok(), "{out:?}"),
                    Some(false) => assert_eq!(out.rc, WDPOOL_INVALID_ARGUMENT, "{out:?}"),
                    None => {}
                }
            }
            Op::Drain { max } => {
                let mut count = 0;
                let with_err = self.with_err();
                // SAFETY: a valid out-parameter.
                let out = call_maybe(with_err, |e| unsafe { wdpool_events_drain(0, usize::from(max), &mut count, e) });
                assert!(out.ok() && count <= usize::from(max), "{out:?} {count}");
            }
            Op::EventsStats => {
                let mut stats = unsafe { std::mem::zeroed::<wdpool_events_statistics>() };
                // SAFETY: a valid out-parameter.
                assert!(call(|e| unsafe { wdpool_events_stats(&mut stats, e) }).ok());
                assert!(stats.queued <= stats.max_events, "{stats:?}");
            }
            Op::SetLimits { events, bytes } => {
                // SAFETY: no pointers.
                assert!(call(|e| unsafe { wdpool_events_set_limits(usize::from(events), usize::from(bytes), e) }).ok());
            }
            Op::ResultName(code) => {
                // SAFETY: a static string.
                let name = unsafe { CStr::from_ptr(wdpool_result_name(code)) };
                assert!(name.to_bytes().starts_with(b"WDPOOL_"));
            }
        }
    }

    /// Gives back, closes and frees everything the iteration made.
    fn finish(&mut self) {
        for h in self.state.producers.iter_mut().rev().filter(|h| h.live && h.leased) {
            // SAFETY: a live lease.
            let out = call(|e| unsafe { wdpool_producer_checkin(h.token as *mut _, e) });
            assert!(matches!(out.rc, WDPOOL_OK | WDPOOL_TRANSACTION_ABORTED), "{out:?}");
            h.live = false;
        }
        for h in self.state.pools.iter_mut().filter(|h| h.live) {
            // SAFETY: a live pool, closed and freed once.
            unsafe {
                let out = call(|e| wdpool_pool_close(h.token as *const _, true, ptr::null_mut(), e));
                assert!(out.ok(), "{out:?}");
                wdpool_pool_free(h.token as *mut _);
            }
            h.live = false;
        }
        // SAFETY: no pointers beyond a NULL report.
        unsafe {
            let out = call(|e| wdpool_close(true, ptr::null_mut(), e));
            assert!(matches!(out.rc, WDPOOL_OK | WDPOOL_NOT_SET_UP), "{out:?}");
            assert!(!wdpool_active());
        }
        for h in self.state.deliveries.iter_mut().filter(|h| h.live) {
            // SAFETY: a live delivery, freed once.
            unsafe { wdpool_delivery_free(h.token as *mut _) };
            h.live = false;
        }
        for h in self.state.slots.iter_mut().filter(|h| h.live) {
            // SAFETY: a live array, freed once (its messages are done:
            // every pool was closed by force above).
            unsafe { wdpool_report_slots_free(h.token as *mut _) };
            h.live = false;
        }
        for h in self.state.clusters.iter_mut().filter(|h| h.live) {
            // SAFETY: a live cluster, freed once.
            unsafe { wdpool_mock_cluster_free(h.token as *mut _) };
            h.live = false;
        }
        let finalizers = self.state.subscriptions.iter().filter(|s| s.2).count();
        for (id, live, _) in &mut self.state.subscriptions {
            if *live {
                // SAFETY: no pointers.
                assert!(call(|e| unsafe { wdpool_unsubscribe(*id, e) }).ok());
                *live = false;
            }
        }
        // Every finalizer ran, exactly once (a second run would double-free).
        assert_eq!(FINALIZED.swap(0, Ordering::Relaxed), finalizers, "finalizers run");
        LEAKED_BOXES.with(|b| {
            for p in b.borrow_mut().drain(..) {
                // SAFETY: boxes of subscriptions without a finalizer, now
                // unsubscribed: wdpool calls them no more.
                drop(unsafe { Box::from_raw(p as *mut Subscriber) });
            }
        });
        // SAFETY: no pointers beyond a valid out-parameter.
        unsafe {
            assert!(call(|e| wdpool_events_set_limits(WDPOOL_EVENTS_QUEUE_CAPACITY, WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES, e)).ok());
            let mut n = 0;
            assert!(call(|e| wdpool_events_drain(0, usize::MAX, &mut n, e)).ok());
        }
    }
}

thread_local! {
    static LEAKED_BOXES: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Threads when the fuzzer started (after the shared mock cluster).
fn baseline_threads() -> usize {
    static BASELINE: OnceLock<usize> = OnceLock::new();
    *BASELINE.get_or_init(|| {
        shared_cluster();
        thread_count()
    })
}

/// Waits until the threads an iteration started (librdkafka's, background
/// creations and closes, each bounded by max_wait_timeout) have ended: none
/// may pile up, and a thread still starting or ending when libFuzzer looks
/// for leaks can hide the pointers it holds from LeakSanitizer. wdpool and
/// librdkafka keep no thread of their own between iterations.
fn wait_for_threads() {
    let baseline = baseline_threads();
    let deadline = Instant::now() + Duration::from_secs(30);
    while thread_count() > baseline {
        if Instant::now() >= deadline {
            let names: Vec<String> = std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect();
            panic!("threads leak: {} 30 s after the iteration, {baseline} at start: {names:?}", names.len());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let ops = &ops[..ops.len().min(MAX_OPS)];
    let mut runner = Runner { state: State::default(), _ops: std::marker::PhantomData };
    runner.run(ops, 0);
    runner.finish();
    wait_for_threads();
});
