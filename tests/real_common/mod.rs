//! Helpers for the tests against a REAL Kafka broker (`tests/real_*.rs`):
//! the broker address, unique names, creating topics with the Admin API
//! (driven by a tiny hand-written `block_on`, since the crate has no async
//! runtime), reading topics back with a plain `BaseConsumer` (partitions
//! assigned explicitly, from the beginning), and small C-ABI conveniences
//! (trampolines that let a Rust closure be an `extern "C"` callback, owned C
//! messages, error text).
//!
//! Nothing here sleeps to wait: every wait is a poll loop with a deadline.

#![allow(dead_code)]

use std::any::Any;
use std::ffi::{c_int, c_void, CStr, CString};
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

use wdpool::ffi::*;

#[allow(unused_imports)] // not every test binary uses every one
pub use crate::common::{client_config, consumer, load_properties, payload_counts, read_until, use_client_properties, Isolation, Record};

pub const BOOTSTRAP_ENV: &str = "WDPOOL_KAFKA_BOOTSTRAP";

/// The real broker's bootstrap servers. Panics when the variable is unset:
/// these tests must never pass by silently skipping.
pub fn bootstrap() -> String {
    match std::env::var(BOOTSTRAP_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "{BOOTSTRAP_ENV} is not set: the real_* tests need a real Kafka broker. \
             Run `make test-real`, or `eval \"$(scripts/kafka.sh start)\"; \
             {BOOTSTRAP_ENV}=$KAFKA_BOOTSTRAP cargo test --test real_broker; scripts/kafka.sh stop`"
        ),
    }
}

/// Distinguishes this run from earlier ones on a broker that kept running
/// (a pid can come back).
fn run_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64) % 100_000_000
    })
}

/// A name unique to this process, this run and this call:
/// `wdpool-real-<what>-<pid>-<nonce>-<n>`.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("wdpool-real-{what}-{}-{}-{}", std::process::id(), run_nonce(), N.fetch_add(1, Ordering::Relaxed))
}

/// A `transactional.id` prefix unique to this run; producers append their
/// slot index: `wdpool-real-<pid>-<nonce>-<what>-<n>-<index>`.
pub fn txn_prefix(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("wdpool-real-{}-{}-{what}-{}", std::process::id(), run_nonce(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// A minimal executor for rdkafka's admin futures (they complete from the
// AdminClient's own polling thread).

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it is ready, parking in between. Gives
/// up (panics) after `deadline`.
pub fn block_on<F: Future>(fut: F, deadline: Duration) -> F::Output {
    let until = Instant::now() + deadline;
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        let left = until.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "an admin request did not complete within {deadline:?}");
        std::thread::park_timeout(left.min(Duration::from_millis(200)));
    }
}

/// Creates `topics` with `partitions` partitions each (replication 1) and
/// waits until the broker's metadata lists every partition with a leader.
pub fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().expect("creating the admin client");
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(20)))
        .request_timeout(Some(Duration::from_secs(25)));
    let results = block_on(admin.create_topics(&new, &opts), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("create_topics {topics:?} failed: {e}"));
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("creating topic {t} failed: {code:?}"),
        }
    }
    for t in topics {
        wait_for_topic(bootstrap, t, partitions, Duration::from_secs(30));
    }
}

/// Waits until metadata lists `topic` with `partitions` partitions, each with
/// a leader.
pub fn wait_for_topic(bootstrap: &str, topic: &str, partitions: i32, deadline: Duration) {
    let c = consumer(bootstrap, Isolation::ReadUncommitted);
    let until = Instant::now() + deadline;
    let mut last = String::new();
    while Instant::now() < until {
        match c.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    let ready = t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none());
                    if ready {
                        return;
                    }
                    last = format!("error {:?}, {} partitions", t.error(), t.partitions().len());
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    panic!("topic {topic} not ready with {partitions} partitions after {deadline:?}: {last}");
}

// ---------------------------------------------------------------------------
// Reading back.

/// Reads `topic` (all its partitions, from the beginning) until `done(records,
/// every partition is at its end)` says so; panics after `deadline` with what
/// was read. Returns the records in consumption order.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    deadline: Duration,
    done: impl FnMut(&[Record], bool) -> bool,
) -> Vec<Record> {
    let (records, finished) = read_until(bootstrap, topic, isolation, deadline, done);
    if !finished {
        let mut payloads: Vec<&str> = records.iter().map(Record::payload_str).collect();
        payloads.sort_unstable();
        payloads.truncate(20);
        panic!(
            "reading {topic} ({isolation:?}) did not finish within {deadline:?}: {} records, first payloads {payloads:?}",
            records.len()
        );
    }
    records
}

/// Reads until every partition is at its end and at least `expected`
/// records were read. Waiting for the end after the count means duplicates
/// already in the log are read too.
pub fn consume_at_least(bootstrap: &str, topic: &str, isolation: Isolation, expected: usize, deadline: Duration) -> Vec<Record> {
    consume(bootstrap, topic, isolation, deadline, |r, at_end| at_end && r.len() >= expected)
}

/// Reads until a record with payload `marker` was read and every partition
/// is at its end.
pub fn consume_until_marker(bootstrap: &str, topic: &str, isolation: Isolation, marker: &str, deadline: Duration) -> Vec<Record> {
    consume(bootstrap, topic, isolation, deadline, |r, at_end| {
        at_end && r.iter().any(|m| m.payload.as_deref() == Some(marker.as_bytes()))
    })
}

/// Asserts that `records` are exactly `expected` payloads, each once.
pub fn assert_exactly_once(records: &[Record], expected: &[String], what: &str) {
    let counts = payload_counts(records);
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "{what}: duplicates {dups:?}");
    let missing: Vec<_> = expected.iter().filter(|p| !counts.contains_key(*p)).take(20).collect();
    assert!(missing.is_empty(), "{what}: missing (first 20) {missing:?}");
    assert_eq!(records.len(), expected.len(), "{what}: unexpected extra records");
}

// ---------------------------------------------------------------------------
// C-ABI conveniences.

/// Reads and frees a `wdpool_error`; "" for NULL.
pub fn take_error(err: *mut wdpool_error) -> String {
    if err.is_null() {
        return String::new();
    }
    // SAFETY: a live error from a wdpool call, freed once here.
    let (text, code, kafka) = unsafe {
        let text = CStr::from_ptr(wdpool_error_message(err)).to_string_lossy().into_owned();
        let (code, kafka) = (wdpool_error_code(err), wdpool_error_kafka_code(err));
        wdpool_error_free(err);
        (text, code, kafka)
    };
    format!("{code:?} (kafka code {kafka}): {text}")
}

/// Runs a C call that takes an error out-parameter; returns its result and
/// the error's text.
pub fn call(f: impl FnOnce(*mut *mut wdpool_error) -> wdpool_result) -> (wdpool_result, String) {
    let (rc, _, text) = call_with_code(f);
    (rc, text)
}

/// Like [`call`], also returning the error's librdkafka code (0 if none).
pub fn call_with_code(f: impl FnOnce(*mut *mut wdpool_error) -> wdpool_result) -> (wdpool_result, i32, String) {
    let mut err: *mut wdpool_error = std::ptr::null_mut();
    let rc = f(&mut err);
    // SAFETY: NULL or a live error from the call above.
    let kafka_code = if err.is_null() { 0 } else { unsafe { wdpool_error_kafka_code(err) } };
    let text = take_error(err);
    if rc == wdpool_result::WDPOOL_OK {
        assert!(text.is_empty(), "WDPOOL_OK came with an error: {text}");
    } else {
        assert!(!text.is_empty(), "{rc:?} came without an error");
    }
    (rc, kafka_code, text)
}

/// Like [`call`], panicking unless it returned WDPOOL_OK.
pub fn ok(what: &str, f: impl FnOnce(*mut *mut wdpool_error) -> wdpool_result) {
    let (rc, text) = call(f);
    assert_eq!(rc, wdpool_result::WDPOOL_OK, "{what} failed: {text}");
}

/// A Rust closure behind an `extern "C"` callback's user data. A panic in it
/// is caught at the C boundary (the callback returns a failure) and resumed
/// once the C call has returned.
pub struct Trampoline<'a, F: ?Sized> {
    f: &'a mut F,
    panic: Option<Box<dyn Any + Send>>,
}

impl<'a, F: ?Sized> Trampoline<'a, F> {
    pub fn new(f: &'a mut F) -> Self {
        Trampoline { f, panic: None }
    }

    pub fn user_data(&mut self) -> *mut c_void {
        self as *mut Self as *mut c_void
    }

    /// Re-raises a panic caught inside the callback.
    pub fn finish(self) {
        if let Some(p) = self.panic {
            resume_unwind(p);
        }
    }
}

pub type ProducerFn<'a> = dyn FnMut(*mut wdpool_producer) -> c_int + 'a;
pub type ConfigureFn<'a> = dyn FnMut(*mut wdpool_config, usize) -> c_int + 'a;

/// The `wdpool_producer_cb` for a `Trampoline<ProducerFn>`.
pub unsafe extern "C" fn producer_trampoline(user: *mut c_void, producer: *mut wdpool_producer) -> c_int {
    let t = unsafe { &mut *(user as *mut Trampoline<'_, ProducerFn<'_>>) };
    match catch_unwind(AssertUnwindSafe(|| (t.f)(producer))) {
        Ok(rc) => rc,
        Err(p) => {
            t.panic.get_or_insert(p);
            -1
        }
    }
}

/// The `wdpool_configure_cb` for a `Trampoline<ConfigureFn>`.
pub unsafe extern "C" fn configure_trampoline(user: *mut c_void, config: *mut wdpool_config, index: usize) -> c_int {
    let t = unsafe { &mut *(user as *mut Trampoline<'_, ConfigureFn<'_>>) };
    match catch_unwind(AssertUnwindSafe(|| (t.f)(config, index))) {
        Ok(rc) => rc,
        Err(p) => {
            t.panic.get_or_insert(p);
            -1
        }
    }
}

/// `wdpool_pool_new` with a Rust closure as the configure callback.
pub fn pool_new(size: usize, timeout_ms: u64, mut configure: impl FnMut(*mut wdpool_config, usize) -> c_int) -> *mut wdpool_pool {
    let f: &mut ConfigureFn<'_> = &mut configure;
    let mut t = Trampoline::new(f);
    let options = wdpool_options { size, timeout_ms };
    let mut pool: *mut wdpool_pool = std::ptr::null_mut();
    let ud = t.user_data();
    let (rc, text) = call(|err| unsafe { wdpool_pool_new(&options, Some(configure_trampoline), ud, &mut pool, err) });
    t.finish();
    assert_eq!(rc, wdpool_result::WDPOOL_OK, "wdpool_pool_new failed: {text}");
    assert!(!pool.is_null());
    pool
}

/// `wdpool_pool_with` with a Rust closure; returns the result and error text.
pub fn pool_with(pool: *const wdpool_pool, mut f: impl FnMut(*mut wdpool_producer) -> c_int) -> (wdpool_result, String) {
    let f: &mut ProducerFn<'_> = &mut f;
    let mut t = Trampoline::new(f);
    let ud = t.user_data();
    let out = call(|err| unsafe { wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, Some(producer_trampoline), ud, err) });
    t.finish();
    out
}

/// `wdpool_pool_transaction` with a Rust closure.
pub fn pool_transaction(pool: *const wdpool_pool, f: impl FnMut(*mut wdpool_producer) -> c_int) -> (wdpool_result, String) {
    let (rc, _, text) = pool_transaction_with_code(pool, f);
    (rc, text)
}

/// `wdpool_pool_transaction` with a Rust closure; also the librdkafka code.
pub fn pool_transaction_with_code(
    pool: *const wdpool_pool,
    mut f: impl FnMut(*mut wdpool_producer) -> c_int,
) -> (wdpool_result, i32, String) {
    let f: &mut ProducerFn<'_> = &mut f;
    let mut t = Trampoline::new(f);
    let ud = t.user_data();
    let out = call_with_code(|err| unsafe {
        wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, Some(producer_trampoline), ud, err)
    });
    t.finish();
    out
}

/// Sets a librdkafka property from inside a configure callback.
pub fn set_kafka(config: *mut wdpool_config, key: &str, value: &str) {
    let k = CString::new(key).unwrap();
    let v = CString::new(value).unwrap();
    ok(&format!("wdpool_config_set_kafka({key}={value})"), |err| unsafe {
        wdpool_config_set_kafka(config, k.as_ptr(), v.as_ptr(), err)
    });
}

pub fn producer_info(producer: *mut wdpool_producer) -> wdpool_producer_info {
    let mut info = wdpool_producer_info::default();
    ok("wdpool_producer_get_info", |err| unsafe { wdpool_producer_get_info(producer, &mut info, err) });
    info
}

pub fn pool_stats(pool: *const wdpool_pool) -> wdpool_statistics {
    let mut s = wdpool_statistics::default();
    ok("wdpool_pool_stats", |err| unsafe { wdpool_pool_stats(pool, &mut s, err) });
    s
}

/// A message owned on the Rust side, handed to C as a `wdpool_message` whose
/// pointers point into it (valid while it lives, unchanged).
pub struct CMessage {
    pub topic: CString,
    pub payload: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    pub partition: i32,
    pub timestamp_ms: i64,
    header_keys: Vec<CString>,
    header_values: Vec<Option<Vec<u8>>>,
    headers: Vec<wdpool_header>,
}

fn bytes(b: &Option<Vec<u8>>) -> wdpool_bytes {
    match b {
        Some(v) => wdpool_bytes { data: v.as_ptr(), len: v.len() },
        None => wdpool_bytes { data: std::ptr::null(), len: 0 },
    }
}

impl CMessage {
    pub fn new(topic: &str, payload: &str) -> Self {
        CMessage {
            topic: CString::new(topic).unwrap(),
            payload: Some(payload.as_bytes().to_vec()),
            key: None,
            partition: WDPOOL_PARTITION_ANY,
            timestamp_ms: 0,
            header_keys: Vec::new(),
            header_values: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.as_bytes().to_vec());
        self
    }

    pub fn partition(mut self, p: i32) -> Self {
        self.partition = p;
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp_ms = ms;
        self
    }

    pub fn header(mut self, key: &str, value: Option<&[u8]>) -> Self {
        self.header_keys.push(CString::new(key).unwrap());
        self.header_values.push(value.map(<[u8]>::to_vec));
        self
    }

    /// The C view; starts from `wdpool_message_init` as the header says.
    pub fn raw(&mut self) -> wdpool_message {
        self.headers = self
            .header_keys
            .iter()
            .zip(&self.header_values)
            .map(|(k, v)| wdpool_header { key: k.as_ptr(), value: bytes(v) })
            .collect();
        let mut m = std::mem::MaybeUninit::<wdpool_message>::uninit();
        unsafe { wdpool_message_init(m.as_mut_ptr()) };
        let mut m = unsafe { m.assume_init() };
        assert_eq!(m.partition, WDPOOL_PARTITION_ANY, "wdpool_message_init must default to any partition");
        m.topic = self.topic.as_ptr();
        m.payload = bytes(&self.payload);
        m.key = bytes(&self.key);
        m.partition = self.partition;
        m.timestamp_ms = self.timestamp_ms;
        if !self.headers.is_empty() {
            m.headers = self.headers.as_ptr();
            m.headers_len = self.headers.len();
        }
        m
    }
}

/// A report with no data yet, for out-parameters.
pub fn empty_report() -> wdpool_report {
    wdpool_report { topic: std::ptr::null(), partition: -2, offset: -2, timestamp_ms: -2, error_code: -2 }
}

// ---------------------------------------------------------------------------
// Tools outside the test binary.

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `kafka_read` example (tests/tools/kafka_read.rs): `WDPOOL_KAFKA_READ`
/// if set (relative to the repository), else next to the running test
/// executable (`<target>/<profile>/deps/x` → `<target>/<profile>/examples/
/// kafka_read`), else `$CARGO_TARGET_DIR` or `target` + `/debug/examples/`.
/// Panics when it is not there: `cargo build --example kafka_read` builds it
/// (a plain `cargo test` does too; `cargo test --test NAME` does not).
pub fn kafka_read_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("WDPOOL_KAFKA_READ").filter(|v| !v.is_empty()) {
        let path = repo_root().join(p);
        assert!(path.is_file(), "WDPOOL_KAFKA_READ={} does not exist", path.display());
        return path;
    }
    let mut candidates = Vec::new();
    if let Some(profile_dir) = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.to_path_buf())) {
        candidates.push(profile_dir.join("examples/kafka_read"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), |t| repo_root().join(t));
    candidates.push(target.join("debug/examples/kafka_read"));
    candidates.iter().find(|c| c.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "the kafka_read example is missing (looked at {candidates:?}): build it with \
             `cargo build --example kafka_read` (a plain `cargo test` builds it too; `cargo test --test NAME` does not)"
        )
    })
}

/// Runs a Kafka command-line tool class with the broker's jars
/// (`scripts/kafka.sh run-class CLASS ARGS...`, from the repository root);
/// returns its stdout, panicking with its output if it fails.
pub fn run_kafka_tool(class: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(repo_root().join("scripts/kafka.sh"))
        .current_dir(repo_root())
        .arg("run-class")
        .arg(class)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running scripts/kafka.sh run-class {class}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scripts/kafka.sh run-class {class} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------
// The three-broker cluster (tests/real_failover.rs, tests/real_faults.rs).

pub const CLUSTER_ENV: &str = "WDPOOL_KAFKA_CLUSTER_BOOTSTRAP";

/// The three-broker cluster's bootstrap servers; panics when unset.
pub fn cluster_bootstrap() -> String {
    match std::env::var(CLUSTER_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "{CLUSTER_ENV} is not set: start a three-broker cluster with \
             `scripts/kafka.sh start --nodes 3 --name cluster` and export its bootstrap \
             (or run `make test-real`); these tests are never skipped"
        ),
    }
}

/// Runs `scripts/kafka.sh ARGS` from the repository root; panics with its
/// output when it fails.
pub fn kafka_sh(args: &[&str]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/kafka.sh"))
        .args(args)
        .current_dir(root)
        .output()
        .expect("running scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `topic` with `partitions` partitions replicated `replication`
/// times; waits until every partition has a leader.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, replication: i32) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(35)));
    let new = [NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))];
    for r in block_on(admin.create_topics(&new, &opts), Duration::from_secs(40)).expect("create_topics") {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("creating {t} failed: {code:?}"),
        }
    }
    wait_for_topic(bootstrap, topic, partitions, Duration::from_secs(60));
}

/// The leader of `topic`'s `partition` (a topic replicated 3 times).
pub fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let c = consumer(bootstrap, Isolation::ReadUncommitted);
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == topic).expect("the topic");
    let p = t.partitions().iter().find(|p| p.id() == partition).expect("the partition");
    assert_eq!(p.replicas().len(), 3, "replication factor 3");
    p.leader()
}
