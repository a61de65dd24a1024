//! wdpool against a SECURED real Kafka broker (`scripts/kafka.sh start
//! --secure`): TLS with a CA the client trusts, SASL/SCRAM-SHA-512 users,
//! ACLs enforced by KRaft's StandardAuthorizer. `WDPOOL_KAFKA_SECURE_DIR`
//! is the broker's run dir (`KAFKA_CLIENT_CONFIG_DIR` of the script): its
//! `bootstrap`, `client-<user>.properties` and `tls/untrusted-ca.crt`.
//!
//! - The right credentials over TLS: produce, transactions, read back.
//! - A wrong password, an unknown user, a CA that did not sign the broker's
//!   certificate, a plaintext client on the TLS port: each fails within the
//!   produce or checkout timeout with an error that names the cause, and
//!   the pool's other slot keeps working meanwhile and afterwards.
//! - ACLs: no Write on the topic gives TOPIC_AUTHORIZATION_FAILED (29) and
//!   writes nothing; no permission on the transactional.id fails the first
//!   transaction with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), while an
//!   authorized user's transaction beside it commits.
//! - No secret leaks: every error message, event (errors, statistics
//!   JSON), librdkafka log line (debug "security,broker"), the C ABI's
//!   `wdpool_producer_get_info` and the configs' `Debug` output are captured
//!   and searched for every password of the broker; each test checks what
//!   was captured so far when it ends.
//!
//! `make test-real` starts the broker and sets the variable; by hand:
//!
//!     eval "$(scripts/kafka.sh start --secure --name secure)"
//!     WDPOOL_KAFKA_SECURE_DIR=$KAFKA_CLIENT_CONFIG_DIR cargo test --test real_security
//!     scripts/kafka.sh stop --name secure

mod common;
mod real_common;

use std::ffi::{c_int, CString};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::types::RDKafkaErrorCode;

use real_common::*;
use wdpool::error::{Error, ErrorKind};
use wdpool::ffi::*;
use wdpool::kafka::{Completion, Message};
use wdpool::pool::{Options, Owner};
use wdpool::producer_pool::{ProducerLease, ProducerPool};

const SECURE_DIR_ENV: &str = "WDPOOL_KAFKA_SECURE_DIR";
/// librdkafka's `message.timeout.ms` for the pools here: the produce bound.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(6);
/// The pools' checkout timeout (it covers creating a producer).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(8);
/// What a bound may be exceeded by on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(4);
const READ_BACK: Duration = Duration::from_secs(60);

struct Broker {
    dir: PathBuf,
    bootstrap: String,
    /// Every password the broker knows, for the leak checks.
    secrets: Vec<String>,
}

/// The secured broker, and the capture of everything the suite shows
/// (installed once per process).
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let dir = match std::env::var(SECURE_DIR_ENV) {
            Ok(d) if !d.trim().is_empty() => PathBuf::from(d),
            _ => panic!(
                "{SECURE_DIR_ENV} is not set: these tests need the secured broker. Run `make test-real`, or \
                 `eval \"$(scripts/kafka.sh start --secure --name secure)\"; \
                 {SECURE_DIR_ENV}=$KAFKA_CLIENT_CONFIG_DIR cargo test --test real_security`"
            ),
        };
        let bootstrap = std::fs::read_to_string(dir.join("bootstrap"))
            .unwrap_or_else(|e| panic!("{}/bootstrap: {e} (is the secured broker running?)", dir.display()))
            .trim()
            .to_owned();
        let secrets: Vec<String> = load_properties(&dir.join("secrets.env")).into_iter().map(|(_, v)| v).collect();
        assert!(secrets.len() >= 4 && secrets.iter().all(|s| s.len() >= 16), "secrets.env looks wrong");
        capture::install();
        use_client_properties(user("alice", &dir));
        Broker { dir, bootstrap, secrets }
    })
}

/// librdkafka properties, in order.
type Props = Vec<(String, String)>;

/// The librdkafka properties of `user` (client-<user>.properties).
fn user(user: &str, dir: &std::path::Path) -> Props {
    load_properties(&dir.join(format!("client-{user}.properties")))
}

fn props_of(name: &str) -> Vec<(String, String)> {
    user(name, &broker().dir)
}

/// `props` with `key` set to `value` (or removed, for None).
fn with_prop(mut props: Vec<(String, String)>, key: &str, value: Option<&str>) -> Vec<(String, String)> {
    props.retain(|(k, _)| k != key);
    if let Some(v) = value {
        props.push((key.to_owned(), v.to_owned()));
    }
    props
}

// ---------------------------------------------------------------------------
// Capturing what the suite shows, and searching it for secrets.

mod capture {
    use super::*;

    static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn record(text: impl Into<String>) {
        CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).push(text.into());
    }

    pub fn snapshot() -> Vec<String> {
        CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// librdkafka's log lines (rdkafka forwards them to the `log` crate).
    struct Logger;

    impl log::Log for Logger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            record(format!("log {} {}: {}", r.level(), r.target(), r.args()));
        }
        fn flush(&self) {}
    }

    /// The logger (before any client exists: rdkafka picks librdkafka's
    /// log level from it), an event subscriber and a thread draining the
    /// event queue (errors and statistics are queued).
    pub fn install() {
        static LOGGER: Logger = Logger;
        log::set_logger(&LOGGER).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        wdpool::events::subscribe(Box::new(|e: &wdpool::events::Event| {
            record(format!("event {} {:?}", e.kind.name(), e));
        }));
        std::thread::spawn(|| loop {
            wdpool::events::drain(Duration::from_millis(200), 10_000);
        });
    }
}

/// No secret of the broker's in anything captured so far; and the capture
/// did see librdkafka's SASL log lines and statistics (so it works).
fn assert_no_secret_leaked() {
    let broker = broker();
    wdpool::events::drain(Duration::from_millis(0), usize::MAX);
    let captured = capture::snapshot();
    for secret in &broker.secrets {
        let leaks: Vec<&String> = captured.iter().filter(|c| c.contains(secret.as_str())).take(3).collect();
        assert!(leaks.is_empty(), "a password leaked into what wdpool showed: {leaks:#?}");
    }
    assert!(captured.iter().any(|c| c.starts_with("log ") && c.contains("SASL")), "no librdkafka SASL log line was captured");
}

// ---------------------------------------------------------------------------
// Pools.

/// A pool whose slot `i` gets `slot(i)`'s properties (bootstrap and
/// security included) and, when `txn` says so, that transactional.id.
fn pool(
    size: usize,
    slot: impl Fn(usize) -> Vec<(String, String)>,
    txn: impl Fn(usize) -> Option<String>,
) -> ProducerPool {
    ProducerPool::new(
        Options { size, timeout: CHECKOUT_TIMEOUT },
        move |c, i| {
            c.max_wait_timeout = Duration::from_secs(30);
            for (k, v) in slot(i) {
                c.set_kafka(&k, &v)?;
            }
            c.set_kafka("message.timeout.ms", &MESSAGE_TIMEOUT.as_millis().to_string())?;
            c.set_kafka("debug", "security,broker")?;
            c.set_kafka("statistics.interval.ms", "500")?;
            if let Some(id) = txn(i) {
                c.set_kafka("transactional.id", &id)?;
            }
            capture::record(format!("config {c:?}"));
            Ok(())
        },
        false,
    )
    .expect("creating the pool")
}

/// Records an error's text (for the leak check) and returns it.
fn seen(e: Error) -> Error {
    capture::record(format!("error {:?} {}: {}", e.kind, e.kafka_code, e.message));
    e
}

fn produce(lease: &ProducerLease, topic: &str, payload: &str) -> Result<(), Error> {
    lease.produce_sync(&[Message::new(topic, Some(payload.as_bytes()))]).map(drop).map_err(seen)
}

/// A unique topic on the secured broker (alice creates it).
fn topic(what: &str) -> String {
    let t = unique(what);
    create_topics(&broker().bootstrap, &[&t], 1);
    t
}

/// The pool is whole: nothing checked out, being created or waited for.
fn assert_whole(pool: &ProducerPool) {
    let s = pool.stats();
    assert!(!s.closed && s.in_use == 0 && s.waiting == 0, "the pool is not whole: {s:?}");
}

/// The committed payloads of `topic`, read with alice's credentials.
fn committed(topic: &str, expected: usize) -> Vec<String> {
    let records = consume_at_least(&broker().bootstrap, topic, Isolation::ReadCommitted, expected, READ_BACK);
    let mut p: Vec<String> = records.iter().map(|r| r.payload_str().to_owned()).collect();
    p.sort();
    p
}

// ---------------------------------------------------------------------------

/// alice over TLS + SCRAM: plain produce, a committed and an aborted
/// transaction; exactly the committed messages are read back.
#[test]
fn right_credentials_produce_transact_and_read_back() {
    let topic = topic("sec-ok");
    let prefix = format!("alice-{}", unique("ok"));
    let plain = pool(2, |_| props_of("alice"), |_| None);
    plain.with(None, |p| produce(p, &topic, "plain-1")).expect("produce over TLS + SCRAM");
    let txn = pool(2, |_| props_of("alice"), |i| Some(format!("{prefix}-{i}")));
    txn.transaction(None, |p| {
        produce(p, &topic, "txn-1")?;
        produce(p, &topic, "txn-2")?;
        Ok(Completion::Commit)
    })
    .map_err(seen)
    .expect("a committed transaction");
    txn.transaction(None, |p| {
        produce(p, &topic, "aborted")?;
        Ok(Completion::Abort)
    })
    .map_err(seen)
    .expect("an aborted transaction");
    assert_eq!(committed(&topic, 3), ["plain-1", "txn-1", "txn-2"]);
    assert_whole(&plain);
    assert_whole(&txn);
    plain.close(false);
    txn.close(false);
    assert_no_secret_leaked();
}

/// One bad slot beside a good one, for each way a client can be refused.
/// The bad slot's produce fails within `message.timeout.ms` (+ slack) with
/// an error naming the cause; the good slot produces while it waits and
/// afterwards; the pool ends whole.
#[test]
fn refused_clients_fail_in_bounded_time_with_the_cause_and_other_slots_work() {
    let dir = broker().dir.clone();
    let untrusted = dir.join("tls/untrusted-ca.crt").display().to_string();
    // (what, the bad slot's properties, what its error must name)
    let cases: Vec<(&str, Props, &str)> = vec![
        ("wrong password", with_prop(props_of("alice"), "sasl.password", Some("not-the-password")), "Authentication failed"),
        ("unknown user", with_prop(props_of("alice"), "sasl.username", Some("mallory")), "Authentication failed"),
        ("untrusted certificate", with_prop(props_of("alice"), "ssl.ca.location", Some(&untrusted)), "certificate verify failed"),
        (
            "plaintext client on the TLS port",
            props_of("alice").into_iter().filter(|(k, _)| k == "bootstrap.servers").collect(),
            "security.protocol",
        ),
    ];
    let topic = topic("sec-refused");
    let delivered = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (name, bad, cause) in &cases {
            let (topic, delivered) = (&topic, &delivered);
            s.spawn(move || {
                let pool = pool(2, |i| if i == 1 { bad.clone() } else { props_of("alice") }, |_| None);
                let a = pool.checkout_as(Owner::Key(1), None).expect("checkout of slot 0");
                let b = pool.checkout_as(Owner::Key(2), None).expect("checkout of slot 1");
                let (good, bad) = if a.index() == 0 { (a, b) } else { (b, a) };
                assert_eq!(bad.index(), 1);
                let started = Instant::now();
                let failed = std::thread::scope(|s| {
                    let waiting = s.spawn(|| produce(&bad, topic, &format!("{name}: never")));
                    // The good slot works while the bad one waits.
                    let ok = format!("{name}: good while bad waits");
                    produce(&good, topic, &ok).unwrap_or_else(|e| panic!("{name}: the good slot failed: {e}"));
                    delivered.lock().unwrap().push(ok);
                    waiting.join().unwrap()
                });
                let took = started.elapsed();
                let e = failed.expect_err(&format!("{name}: produce on the refused slot succeeded"));
                eprintln!("{name}: failed after {} ms: {e}", took.as_millis());
                assert!(took <= MESSAGE_TIMEOUT + SLACK, "{name}: failing took {took:?}");
                assert_eq!(e.kind, ErrorKind::Kafka, "{name}: {e}");
                assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageTimedOut as i32, "{name}: {e}");
                assert!(e.message.contains(cause), "{name}: the error does not say why ({cause:?}): {e}");
                drop((good, bad));
                assert_whole(&pool);
                // Afterwards: both slots check out again, the good one produces.
                let a = pool.checkout_as(Owner::Key(3), None).expect("checkout again");
                let b = pool.checkout_as(Owner::Key(4), None).expect("checkout again");
                let good = if a.index() == 0 { &a } else { &b };
                let ok = format!("{name}: good afterwards");
                produce(good, topic, &ok).expect("the good slot afterwards");
                delivered.lock().unwrap().push(ok);
                drop((a, b));
                assert_whole(&pool);
                let report = pool.close(false);
                assert_eq!(report.in_use, 0);
            });
        }
    });
    let mut expected = delivered.into_inner().unwrap();
    expected.sort();
    assert_eq!(committed(&topic, expected.len()), expected, "exactly the good slots' messages");
    assert_no_secret_leaked();
}

/// A transactional pool whose slot 1 has a wrong password: its checkout
/// (creating the producer runs init_transactions) fails within the checkout
/// timeout naming the cause, while slot 0's transaction, open meanwhile,
/// commits undisturbed.
#[test]
fn refused_transactional_slot_fails_the_checkout_and_the_open_transaction_commits() {
    let topic = topic("sec-txn-refused");
    let prefix = format!("alice-{}", unique("refused"));
    let pool = pool(
        2,
        |i| {
            let alice = props_of("alice");
            if i == 1 { with_prop(alice, "sasl.password", Some("not-the-password")) } else { alice }
        },
        |i| Some(format!("{prefix}-{i}")),
    );
    let good = pool.checkout_as(Owner::Key(1), None).expect("slot 0");
    assert_eq!(good.index(), 0, "a fresh pool hands out slot 0 first");
    good.begin_transaction().map_err(seen).expect("begin");
    produce(&good, &topic, "committed-1").expect("produce in the transaction");

    let started = Instant::now();
    let e = pool.checkout_as(Owner::Key(2), None).map(|l| l.index()).map_err(seen).expect_err("slot 1 cannot log in");
    let took = started.elapsed();
    assert!(took <= CHECKOUT_TIMEOUT + SLACK, "the checkout took {took:?}");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.message.contains("Authentication failed"), "the error does not say why: {e}");
    eprintln!("transactional slot with a wrong password: checkout failed after {} ms: {e}", took.as_millis());

    produce(&good, &topic, "committed-2").expect("produce after the other slot failed");
    good.commit_transaction().map_err(seen).expect("commit");
    drop(good);
    assert_eq!(committed(&topic, 2), ["committed-1", "committed-2"]);
    let s = pool.stats();
    assert!(s.in_use == 0 && s.idle == 1 && s.waiting == 0, "slot 0 is back, slot 1 empty or still trying: {s:?}");
    pool.with(None, |p| {
        assert_eq!(p.index(), 0);
        p.transaction(|| produce(p, &topic, "committed-3").map(|_| Completion::Commit))
    })
    .map_err(seen)
    .expect("the next transaction on slot 0");
    assert_eq!(committed(&topic, 3), ["committed-1", "committed-2", "committed-3"]);
    pool.close(true);
    assert_no_secret_leaked();
}

/// reader may read but not write: TOPIC_AUTHORIZATION_FAILED (29) in the
/// error, fast, and nothing is written.
#[test]
fn acl_without_write_gets_topic_authorization_failed_and_writes_nothing() {
    let topic = topic("sec-acl-write");
    let pool = pool(1, |_| props_of("reader"), |_| None);
    let started = Instant::now();
    let e = pool.with(None, |p| produce(p, &topic, "forbidden")).expect_err("reader has no Write");
    assert!(started.elapsed() <= MESSAGE_TIMEOUT, "took {:?}", started.elapsed());
    assert_eq!(e.kind, ErrorKind::Kafka, "{e}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::TopicAuthorizationFailed as i32, "{e}");
    assert!(e.message.contains("TopicAuthorizationFailed"), "{e}");
    assert_whole(&pool);
    // Nothing was written: the partition is at its end with no record.
    let (records, done) = read_until(&broker().bootstrap, &topic, Isolation::ReadUncommitted, READ_BACK, |r, end| end && r.is_empty());
    assert!(done && records.is_empty(), "a refused write reached the topic: {records:?}");
    pool.close(false);
    assert_no_secret_leaked();
}

/// notxn may write the topic but has no permission on any transactional
/// id: its first transaction fails with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// (53) within the checkout timeout; alice's transaction, open meanwhile,
/// commits.
#[test]
fn acl_without_transactional_id_fails_the_first_transaction_alice_is_undisturbed() {
    let topic = topic("sec-acl-txn");
    let prefix = unique("acl");
    let alice = pool(1, |_| props_of("alice"), |i| Some(format!("alice-{prefix}-{i}")));
    let notxn = pool(1, |_| props_of("notxn"), |i| Some(format!("notxn-{prefix}-{i}")));
    alice
        .transaction(None, |p| {
            produce(p, &topic, "alice-1")?;
            let started = Instant::now();
            let e = notxn
                .transaction(None, |q| produce(q, &topic, "notxn").map(|_| Completion::Commit))
                .map_err(seen)
                .expect_err("notxn may not use a transactional id");
            assert!(started.elapsed() <= CHECKOUT_TIMEOUT + SLACK, "took {:?}", started.elapsed());
            assert_eq!(e.kafka_code, RDKafkaErrorCode::TransactionalIdAuthorizationFailed as i32, "{e}");
            assert!(e.message.contains("Transactional Id authorization failed"), "{e}");
            produce(p, &topic, "alice-2")?;
            Ok(Completion::Commit)
        })
        .map_err(seen)
        .expect("alice's transaction commits");
    assert_eq!(committed(&topic, 2), ["alice-1", "alice-2"]);
    assert_whole(&alice);
    assert_whole(&notxn);
    // Without a plain (non-transactional) write, notxn's pool stays usable.
    let plain = pool(1, |_| props_of("notxn"), |_| None);
    plain.with(None, |p| produce(p, &topic, "notxn-plain")).expect("notxn may write without a transaction");
    alice.close(false);
    notxn.close(false);
    plain.close(false);
    assert_no_secret_leaked();
}

// ---------------------------------------------------------------------------
// The C ABI: errors, get_info and stats, through the functions a binding
// calls, with a slot whose password is wrong.

fn c_set(config: *mut wdpool_config, key: &str, value: &str) -> c_int {
    let (k, v) = (CString::new(key).unwrap(), CString::new(value).unwrap());
    let (rc, text) = call(|err| unsafe { wdpool_config_set_kafka(config, k.as_ptr(), v.as_ptr(), err) });
    capture::record(format!("set_kafka {rc:?} {text}"));
    if rc == wdpool_result::WDPOOL_OK { WDPOOL_CB_OK } else { 0 }
}

#[test]
fn c_abi_errors_info_and_stats_show_no_secret() {
    let topic = topic("sec-c");
    let good = props_of("alice");
    let bad = with_prop(props_of("alice"), "sasl.password", Some("not-the-password"));
    let pool = pool_new(2, CHECKOUT_TIMEOUT.as_millis() as u64, |config, index| {
        let props = if index == 1 { &bad } else { &good };
        let mut rc = WDPOOL_CB_OK;
        for (k, v) in props.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([
            ("message.timeout.ms", "6000"),
            ("debug", "security"),
            ("statistics.interval.ms", "500"),
        ]) {
            if c_set(config, k, v) != WDPOOL_CB_OK {
                rc = 0;
            }
        }
        rc
    });
    let mut producers = [std::ptr::null_mut::<wdpool_producer>(); 2];
    for (i, p) in producers.iter_mut().enumerate() {
        let (rc, text) = call(|err| unsafe { wdpool_pool_checkout(pool, 100 + i as u64, WDPOOL_TIMEOUT_DEFAULT, p, err) });
        assert_eq!(rc, wdpool_result::WDPOOL_OK, "{text}");
    }
    for &p in &producers {
        let info = producer_info(p);
        capture::record(format!("get_info {info:?}"));
        let mut m = CMessage::new(&topic, &format!("c-slot-{}", info.index));
        let raw = m.raw();
        let mut report = empty_report();
        let (rc, code, text) =
            call_with_code(|err| unsafe { wdpool_producer_produce_sync(p, &raw, WDPOOL_TIMEOUT_DEFAULT, &mut report, err) });
        capture::record(format!("produce_sync {rc:?} {code} {text}"));
        if info.index == 0 {
            assert_eq!(rc, wdpool_result::WDPOOL_OK, "{text}");
        } else {
            assert_eq!(rc, wdpool_result::WDPOOL_KAFKA, "{text}");
            assert!(text.contains("Authentication failed"), "{text}");
        }
        capture::record(format!("stats {:?}", pool_stats(pool)));
    }
    for p in producers {
        ok("checkin", |err| unsafe { wdpool_producer_checkin(p, err) });
    }
    let s = pool_stats(pool);
    assert!(s.in_use == 0 && s.idle == 2, "{s:?}");
    let mut report = wdpool_close_report::default();
    ok("close", |err| unsafe { wdpool_pool_close(pool, false, &mut report, err) });
    unsafe { wdpool_pool_free(pool as *mut _) };
    assert_eq!(committed(&topic, 1), ["c-slot-0"]);
    assert_no_secret_leaked();
}
