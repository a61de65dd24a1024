//! wdpool against a REAL Apache Kafka broker (scripts/kafka.sh), through the
//! C ABI and the Rust API. Everything produced is verified by reading it back
//! with a plain rdkafka consumer (read_committed for transactions).
//!
//! Needs WDPOOL_KAFKA_BOOTSTRAP (every test panics without it):
//!
//!     eval "$(scripts/kafka.sh start)"
//!     WDPOOL_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo test --test real_broker
//!     scripts/kafka.sh stop
//!
//! or `make test-real`.

mod common;
mod real_common;

use std::collections::HashMap;
use std::ffi::CStr;
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use real_common::*;
use wdpool::error::ErrorKind;
use wdpool::events::{self, Event, EventKind};
use wdpool::ffi::*;
use wdpool::kafka::{Batch, Completion, Message, Report};
use wdpool::pool::Options;
use wdpool::producer_pool::{self, ProducerPool};

/// Reading back: generous, the loops end as soon as everything is there.
const READ: Duration = Duration::from_secs(30);
/// Every producer's `max_wait_timeout` here: a hang fails instead of
/// waiting WaterDrop's 180 s.
const MAX_WAIT_MS: u64 = 30_000;

use wdpool_result::*;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Records every event of the process until dropped.
struct EventLog {
    id: u64,
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    fn subscribe() -> Self {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let sink = Arc::clone(&events);
        let id = events::subscribe(Box::new(move |e: &Event| sink.lock().unwrap().push(e.clone())));
        EventLog { id, events }
    }

    fn of_pool(&self, pool_id: u64) -> Vec<Event> {
        self.events.lock().unwrap().iter().filter(|e| e.pool_id == pool_id).cloned().collect()
    }

    fn count(&self, pool_id: u64, kind: EventKind) -> usize {
        self.of_pool(pool_id).iter().filter(|e| e.kind == kind).count()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        events::unsubscribe(self.id);
    }
}

/// `wdpool_producer_produce_sync`, asserting success; returns the report.
fn c_produce_sync(p: *mut wdpool_producer, m: &mut CMessage) -> wdpool_report {
    let raw = m.raw();
    let mut report = empty_report();
    ok("wdpool_producer_produce_sync", |err| unsafe { wdpool_producer_produce_sync(p, &raw, -1, &mut report, err) });
    assert_eq!(report.topic, raw.topic, "a sync report's topic is the caller's pointer");
    assert_eq!(report.error_code, 0, "delivery failed: {report:?}");
    assert!(report.offset >= 0 && report.partition >= 0, "{report:?}");
    report
}

fn assert_close_clean(pool: *mut wdpool_pool, expect_closed: usize) {
    let mut report = wdpool_close_report::default();
    ok("wdpool_pool_close", |err| unsafe { wdpool_pool_close(pool, false, &mut report, err) });
    assert_eq!(report.undelivered, 0, "graceful close lost messages: {report:?}");
    assert_eq!(report.in_use, 0, "{report:?}");
    assert_eq!(report.closed, expect_closed, "{report:?}");
    let (rc, _) = pool_with(pool, |_| WDPOOL_CB_OK);
    assert_eq!(rc, WDPOOL_CLOSED, "a closed pool must refuse checkouts");
    unsafe { wdpool_pool_free(pool) };
}

fn by_payload(records: &[Record]) -> HashMap<String, Record> {
    records.iter().map(|r| (r.payload_str().to_owned(), r.clone())).collect()
}

fn plain_pool(bootstrap: &str, size: usize, extra: &[(&str, &str)]) -> ProducerPool {
    ProducerPool::new(
        Options { size, timeout: Duration::from_secs(20) },
        |c, _| {
            c.set_kafka("bootstrap.servers", bootstrap)?;
            for (k, v) in extra {
                c.set_kafka(k, v)?;
            }
            c.max_wait_timeout = Duration::from_millis(MAX_WAIT_MS);
            Ok(())
        },
        false,
    )
    .expect("creating a pool")
}

// ---------------------------------------------------------------------------
// 1. The C ABI end to end.

#[test]
fn c_abi_sync_many_and_async_are_consumed_back_exactly() {
    let bootstrap = bootstrap();
    let topic = unique("cabi");
    create_topics(&bootstrap, &[&topic], 3);

    let mut indices = Vec::new();
    let pool = pool_new(3, 10_000, |cfg, index| {
        indices.push(index);
        set_kafka(cfg, "bootstrap.servers", &bootstrap);
        ok("set_max_wait_timeout", |err| unsafe { wdpool_config_set_max_wait_timeout(cfg, MAX_WAIT_MS, err) });
        WDPOOL_CB_OK
    });
    assert_eq!(indices, vec![0, 1, 2], "configure runs once per slot, zero-based, in order");
    let stats = pool_stats(pool);
    assert_eq!((stats.size, stats.created, stats.creations), (3, 0, 0), "producers are created lazily: {stats:?}");

    // Older than now, so it cannot be mistaken for the producer's clock.
    let ts = now_ms() - 3_600_000;
    let mut sync_msg = CMessage::new(&topic, "sync-keyed")
        .key("key-sync")
        .partition(2)
        .timestamp(ts)
        .header("dup", Some(b"v1"))
        .header("dup", Some(b"v2"))
        .header("null", None);
    let mut many: Vec<CMessage> =
        (0..50).map(|i| CMessage::new(&topic, &format!("many-{i}")).key(&format!("k-{i}"))).collect();
    let mut async_msg = CMessage::new(&topic, "async-1").key("key-async");

    let mut sync_report = empty_report();
    let mut many_reports = vec![empty_report(); 50];
    let mut delivery: *mut wdpool_delivery = std::ptr::null_mut();
    let (rc, text) = pool_with(pool, |p| {
        let info = producer_info(p);
        assert!(info.index < 3, "{info:?}");
        assert_eq!(info.pool_id, unsafe { wdpool_pool_id(pool) });
        assert!(!info.transactional && !info.in_transaction);

        sync_report = c_produce_sync(p, &mut sync_msg);

        let raws: Vec<wdpool_message> = many.iter_mut().map(CMessage::raw).collect();
        ok("produce_many_sync", |err| unsafe {
            wdpool_producer_produce_many_sync(p, raws.as_ptr(), raws.len(), -1, many_reports.as_mut_ptr(), err)
        });

        let raw = async_msg.raw();
        ok("produce_async", |err| unsafe { wdpool_producer_produce_async(p, &raw, &mut delivery, err) });
        assert!(!delivery.is_null());
        WDPOOL_CB_OK
    });
    assert_eq!(rc, WDPOOL_OK, "wdpool_pool_with: {text}");

    // The sync report.
    assert_eq!(sync_report.partition, 2, "explicit partition: {sync_report:?}");
    assert_eq!(sync_report.timestamp_ms, ts, "explicit timestamp in the report: {sync_report:?}");
    for (i, r) in many_reports.iter().enumerate() {
        assert_eq!(r.error_code, 0, "message {i}: {r:?}");
        assert!(r.partition >= 0 && r.partition < 3 && r.offset >= 0, "message {i}: {r:?}");
        assert_eq!(r.topic, many[i].topic.as_ptr(), "message {i}: topic pointer");
    }

    // The async delivery outlives the callback and is waited on afterwards.
    ok("wdpool_delivery_wait", |err| unsafe { wdpool_delivery_wait(delivery, 30_000, err) });
    assert_eq!(unsafe { wdpool_delivery_count(delivery) }, 1);
    assert_eq!(unsafe { wdpool_delivery_pending(delivery) }, 0);
    let mut async_report = empty_report();
    ok("wdpool_delivery_report", |err| unsafe { wdpool_delivery_report(delivery, 0, &mut async_report, err) });
    assert_eq!(async_report.error_code, 0, "{async_report:?}");
    assert_eq!(unsafe { CStr::from_ptr(async_report.topic) }.to_str().unwrap(), topic);
    let (rc, _) = call(|err| unsafe { wdpool_delivery_report(delivery, 1, &mut empty_report(), err) });
    assert_eq!(rc, WDPOOL_INVALID_ARGUMENT, "index out of range");
    unsafe { wdpool_delivery_free(delivery) };

    let stats = pool_stats(pool);
    assert_eq!((stats.creations, stats.in_use, stats.idle), (1, 0, 1), "{stats:?}");

    // Read everything back.
    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, 52, READ);
    let mut expected: Vec<String> = (0..50).map(|i| format!("many-{i}")).collect();
    expected.push("sync-keyed".into());
    expected.push("async-1".into());
    assert_exactly_once(&records, &expected, "C ABI topic");
    let got = by_payload(&records);

    let s = &got["sync-keyed"];
    assert_eq!(s.partition, 2);
    assert_eq!(s.offset, sync_report.offset, "report offset = consumed offset");
    assert_eq!(s.key.as_deref(), Some(&b"key-sync"[..]));
    assert_eq!(s.timestamp_ms, Some(ts), "explicit timestamp");
    assert_eq!(
        s.headers,
        vec![
            ("dup".to_owned(), Some(b"v1".to_vec())),
            ("dup".to_owned(), Some(b"v2".to_vec())),
            ("null".to_owned(), None),
        ],
        "headers: order, duplicate keys and a null value kept"
    );
    for (i, r) in many_reports.iter().enumerate() {
        let c = &got[&format!("many-{i}")];
        assert_eq!((c.partition, c.offset), (r.partition, r.offset), "many-{i}: report vs consumed");
        assert_eq!(c.key.as_deref(), Some(format!("k-{i}").as_bytes()));
        assert!(c.headers.is_empty());
    }
    let a = &got["async-1"];
    assert_eq!((a.partition, a.offset), (async_report.partition, async_report.offset), "async report vs consumed");
    assert_eq!(a.key.as_deref(), Some(&b"key-async"[..]));
    assert_eq!(a.timestamp_ms, Some(async_report.timestamp_ms), "async report timestamp");

    assert_close_clean(pool, 1);
}

// ---------------------------------------------------------------------------
// 2. Transactions through the C ABI.

#[test]
fn c_abi_transactions_commit_fail_and_abort_against_read_committed() {
    let bootstrap = bootstrap();
    let ta = unique("txn-a");
    let tb = unique("txn-b");
    create_topics(&bootstrap, &[&ta, &tb], 3);
    let prefix = txn_prefix("txn");
    let log = EventLog::subscribe();

    let mut ids = Vec::new();
    let pool = pool_new(2, 20_000, |cfg, index| {
        let id = format!("{prefix}-{index}");
        set_kafka(cfg, "bootstrap.servers", &bootstrap);
        set_kafka(cfg, "transactional.id", &id);
        set_kafka(cfg, "transaction.timeout.ms", "20000");
        ok("set_max_wait_timeout", |err| unsafe { wdpool_config_set_max_wait_timeout(cfg, MAX_WAIT_MS, err) });
        ids.push(id);
        WDPOOL_CB_OK
    });
    assert_eq!(ids, vec![format!("{prefix}-0"), format!("{prefix}-1")]);
    let pool_id = unsafe { wdpool_pool_id(pool) };

    // Committed: one message to each topic.
    let (rc, text) = pool_transaction(pool, |p| {
        let info = producer_info(p);
        assert!(info.transactional && info.in_transaction && info.index < 2, "{info:?}");
        c_produce_sync(p, &mut CMessage::new(&ta, "committed-a"));
        c_produce_sync(p, &mut CMessage::new(&tb, "committed-b"));
        WDPOOL_CB_OK
    });
    assert_eq!(rc, WDPOOL_OK, "committing: {text}");

    // A failing callback: aborted, reported as a callback failure. The
    // messages reach the log (produce_sync waits for the acks) on partition 0.
    let mut aborted = Vec::new();
    let (rc, text) = pool_transaction(pool, |p| {
        aborted.push(c_produce_sync(p, &mut CMessage::new(&ta, "aborted-a").partition(0)));
        aborted.push(c_produce_sync(p, &mut CMessage::new(&tb, "aborted-b").partition(0)));
        0
    });
    assert_eq!(rc, WDPOOL_CALLBACK_FAILED, "a failing callback: {text}");

    // WaterDrop's abort signal: rolled back, no error.
    let (rc, text) = pool_transaction(pool, |p| {
        aborted.push(c_produce_sync(p, &mut CMessage::new(&ta, "rolledback-a").partition(0)));
        aborted.push(c_produce_sync(p, &mut CMessage::new(&tb, "rolledback-b").partition(0)));
        WDPOOL_CB_ABORT
    });
    assert_eq!(rc, WDPOOL_OK, "WDPOOL_CB_ABORT returns OK: {text}");

    // Outside an explicit transaction a transactional producer wraps each
    // call in its own: produce_sync, produce_many_sync (one for all) and
    // produce_async (committed, so delivered, before it returns).
    let mut implicit_delivery: *mut wdpool_delivery = std::ptr::null_mut();
    let (rc, text) = pool_with(pool, |p| {
        assert!(!producer_info(p).in_transaction);
        c_produce_sync(p, &mut CMessage::new(&ta, "implicit-sync-a"));
        let mut many: Vec<CMessage> = (0..3).map(|i| CMessage::new(&tb, &format!("implicit-many-b-{i}"))).collect();
        let raws: Vec<wdpool_message> = many.iter_mut().map(CMessage::raw).collect();
        ok("produce_many_sync", |err| unsafe {
            wdpool_producer_produce_many_sync(p, raws.as_ptr(), raws.len(), -1, std::ptr::null_mut(), err)
        });
        let mut m = CMessage::new(&ta, "implicit-async-a");
        let raw = m.raw();
        ok("produce_async", |err| unsafe { wdpool_producer_produce_async(p, &raw, &mut implicit_delivery, err) });
        assert_eq!(
            unsafe { wdpool_delivery_pending(implicit_delivery) },
            0,
            "an implicit transaction commits (and so delivers) before produce_async returns"
        );
        assert!(!producer_info(p).in_transaction);
        WDPOOL_CB_OK
    });
    assert_eq!(rc, WDPOOL_OK, "implicit transactions: {text}");
    ok("wdpool_delivery_wait", |err| unsafe { wdpool_delivery_wait(implicit_delivery, 0, err) });
    unsafe { wdpool_delivery_free(implicit_delivery) };

    // The marker, committed after both aborts, on the same partitions: a
    // read_committed reader that has read it has passed the aborted records
    // (the LSO is past them, so their transactions are resolved).
    let mut markers = Vec::new();
    let (rc, text) = pool_transaction(pool, |p| {
        markers.push(c_produce_sync(p, &mut CMessage::new(&ta, "marker-a").partition(0)));
        markers.push(c_produce_sync(p, &mut CMessage::new(&tb, "marker-b").partition(0)));
        WDPOOL_CB_OK
    });
    assert_eq!(rc, WDPOOL_OK, "committing the marker: {text}");
    for (i, m) in markers.iter().enumerate() {
        for a in aborted.iter().skip(i).step_by(2) {
            assert!(m.offset > a.offset, "the marker must follow the aborted records: {m:?} vs {a:?}");
        }
    }

    for (topic, suffix) in [(&ta, "a"), (&tb, "b")] {
        let marker = format!("marker-{suffix}");
        let committed = consume_until_marker(&bootstrap, topic, Isolation::ReadCommitted, &marker, READ);
        let mut expected = vec![format!("committed-{suffix}"), marker.clone()];
        if suffix == "a" {
            expected.extend(["implicit-sync-a".to_owned(), "implicit-async-a".to_owned()]);
        } else {
            expected.extend((0..3).map(|i| format!("implicit-many-b-{i}")));
        }
        assert_exactly_once(&committed, &expected, &format!("{topic} read_committed"));
        // The aborted records did reach the broker: read_uncommitted sees them.
        let all = consume_until_marker(&bootstrap, topic, Isolation::ReadUncommitted, &marker, READ);
        let counts = payload_counts(&all);
        for p in [format!("aborted-{suffix}"), format!("rolledback-{suffix}")] {
            assert_eq!(counts.get(&p), Some(&1), "{p} should be in the log (read_uncommitted): {counts:?}");
        }
    }

    assert_eq!(log.count(pool_id, EventKind::TransactionStarted), 7);
    assert_eq!(log.count(pool_id, EventKind::TransactionCommitted), 5);
    assert_eq!(log.count(pool_id, EventKind::TransactionAborted), 2);
    let stats = pool_stats(pool);
    assert_eq!(stats.replaced, 0, "no producer broke: {stats:?}");
    let created = stats.created;
    assert_close_clean(pool, created);
}

// ---------------------------------------------------------------------------
// 3. Fencing: only a real broker fences an older producer.

#[test]
fn fenced_producer_fails_and_its_slot_gets_a_fresh_one() {
    let bootstrap = bootstrap();
    let topic = unique("fence");
    create_topics(&bootstrap, &[&topic], 1);
    let txn_id = format!("{}-0", txn_prefix("fence"));
    let log = EventLog::subscribe();

    let make = || {
        ProducerPool::new(
            Options { size: 1, timeout: Duration::from_secs(20) },
            |c, index| {
                assert_eq!(index, 0);
                c.set_kafka("bootstrap.servers", &bootstrap)?;
                c.set_kafka("transactional.id", &txn_id)?;
                c.set_kafka("transaction.timeout.ms", "20000")?;
                c.max_wait_timeout = Duration::from_millis(MAX_WAIT_MS);
                Ok(())
            },
            false,
        )
        .expect("creating a transactional pool")
    };
    let send = |pool: &ProducerPool, payload: &str| {
        pool.transaction(None, |lease| {
            assert_eq!(lease.index(), 0);
            let mut m = Message::new(&topic, Some(payload.as_bytes()));
            m.partition = 0;
            lease.produce_sync(&[m])?;
            Ok(Completion::Commit)
        })
    };

    let a = make();
    let b = make();
    let first_a = a.with(None, |lease| Ok(Arc::clone(lease.conn()))).expect("creating A's producer");
    assert_eq!(send(&a, "a-1").expect("A commits"), Completion::Commit);
    assert_eq!(a.stats().creations, 1);

    // B's producer runs init_transactions with the same id: A is fenced.
    assert_eq!(send(&b, "b-1").expect("B commits"), Completion::Commit);

    let started = Instant::now();
    let err = send(&a, "a-2").expect_err("A was fenced by B: its transaction must fail");
    eprintln!("fenced producer's transaction failed after {:?}: {err:?}", started.elapsed());
    assert!(matches!(err.kind, ErrorKind::Fatal | ErrorKind::Kafka), "fenced: {err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "failing took {:?}", started.elapsed());
    assert!(first_a.is_broken(), "the fenced producer must count as broken ({err:?})");

    // The next checkout of A gets a fresh producer for slot 0, which works
    // (and fences B in turn).
    let second_a = a.with(None, |lease| Ok(Arc::clone(lease.conn()))).expect("checking out A again");
    assert!(!Arc::ptr_eq(&first_a, &second_a), "the broken producer was handed out again");
    assert!(!second_a.is_broken());
    assert_eq!(second_a.index(), 0);
    let s = a.stats();
    assert!(s.replaced >= 1, "{s:?}");
    assert_eq!(s.creations, 2, "{s:?}");
    assert!(
        log.of_pool(a.id()).iter().any(|e| e.kind == EventKind::ProducerReplaced && e.slot == Some(0)),
        "a producer_replaced event for slot 0"
    );
    drop((first_a, second_a));
    assert_eq!(send(&a, "a-3").expect("A's fresh producer commits"), Completion::Commit);

    let records = consume_until_marker(&bootstrap, &topic, Isolation::ReadCommitted, "a-3", READ);
    assert_exactly_once(&records, &["a-1".into(), "b-1".into(), "a-3".into()], "fencing topic");
    let order: Vec<&str> = records.iter().map(Record::payload_str).collect();
    assert_eq!(order, ["a-1", "b-1", "a-3"]);

    assert_eq!(a.close(false).undelivered, 0);
    assert_eq!(b.close(false).undelivered, 0);
}

// ---------------------------------------------------------------------------
// 4. The global pool, shared by more threads than producers.

#[test]
fn global_pool_with_eight_threads_delivers_everything_once() {
    let bootstrap = bootstrap();
    let topic = unique("global");
    create_topics(&bootstrap, &[&topic], 3);

    producer_pool::setup(Options { size: 4, timeout: Duration::from_secs(20) }, |c, index| {
        assert!(index < 4);
        c.set_kafka("bootstrap.servers", &bootstrap)?;
        c.max_wait_timeout = Duration::from_millis(MAX_WAIT_MS);
        Ok(())
    })
    .expect("setup");
    assert!(producer_pool::is_active());
    let pool = producer_pool::global().expect("the global pool");
    assert!(pool.is_global());

    let reports: Mutex<Vec<(String, usize, Report)>> = Mutex::default();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (topic, reports) = (&topic, &reports);
            s.spawn(move || {
                for i in 0..25 {
                    let payload = format!("t{t}-m{i}");
                    let (index, report) = producer_pool::global()
                        .expect("global")
                        .with(None, |lease| {
                            let batch = lease.produce_sync(&[Message::new(topic, Some(payload.as_bytes()))])?;
                            Ok((lease.index(), batch.report(0).expect("a report after produce_sync")))
                        })
                        .unwrap_or_else(|e| panic!("{payload}: {e}"));
                    reports.lock().unwrap().push((payload, index, report));
                }
            });
        }
    });
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.len(), 200);
    assert!(reports.iter().all(|(_, index, _)| *index < 4));
    let s = pool.stats();
    assert!(s.creations >= 1 && s.creations <= 4 && s.created <= 4, "{s:?}");
    assert_eq!((s.in_use, s.replaced), (0, 0), "{s:?}");

    let report = producer_pool::close_global(false);
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert_eq!(report.closed, s.created, "every idle producer closed: {report:?}");
    assert!(!producer_pool::is_active());
    assert_eq!(producer_pool::global().err().map(|e| e.kind), Some(ErrorKind::Closed));
    assert_eq!(producer_pool::close_global(false), report, "closing twice is harmless and reports the first close");
    drop(pool);

    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, 200, READ);
    let expected: Vec<String> = reports.iter().map(|(p, _, _)| p.clone()).collect();
    assert_exactly_once(&records, &expected, "global pool topic");
    let got = by_payload(&records);
    for (payload, _, r) in &reports {
        assert!(r.error.is_none(), "{payload}: {r:?}");
        let c = &got[payload];
        assert_eq!((c.partition, c.offset), (r.partition, r.offset), "{payload}: report vs consumed");
    }
}

// ---------------------------------------------------------------------------
// 5. A graceful close delivers what is still in flight.

#[test]
fn graceful_close_delivers_a_thousand_async_messages_in_flight() {
    let bootstrap = bootstrap();
    let topic = unique("close");
    create_topics(&bootstrap, &[&topic], 3);
    // A long linger keeps the messages queued until close flushes them.
    let pool = plain_pool(&bootstrap, 2, &[("linger.ms", "1000")]);

    let barrier = Barrier::new(2);
    let batches: Mutex<Vec<(String, Arc<Batch>)>> = Mutex::default();
    let in_flight: Mutex<Vec<u64>> = Mutex::default();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (pool, topic, barrier, batches, in_flight) = (&pool, &topic, &barrier, &batches, &in_flight);
            s.spawn(move || {
                pool.with(None, |lease| {
                    // Both hold a producer: both producers get messages.
                    barrier.wait();
                    let mut mine = Vec::new();
                    for i in 0..500 {
                        let payload = format!("t{t}-m{i}");
                        let batch = lease.produce_async(&[Message::new(topic, Some(payload.as_bytes()))])?;
                        mine.push((payload, batch));
                    }
                    in_flight.lock().unwrap().push(lease.in_flight());
                    batches.lock().unwrap().extend(mine);
                    Ok(())
                })
                .expect("producing async");
            });
        }
    });
    let batches = batches.into_inner().unwrap();
    assert_eq!(batches.len(), 1000);
    let pending: usize = batches.iter().map(|(_, b)| b.pending()).sum();
    assert!(pending > 0, "nothing was in flight before close (in_flight {:?}); the test proves nothing", in_flight.lock().unwrap());

    let started = Instant::now();
    let report = pool.close(false);
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert_eq!(report.closed, 2, "{report:?}");
    assert!(pool.is_closed());
    eprintln!("graceful close with {pending} undelivered in flight took {:?}", started.elapsed());
    for (payload, b) in &batches {
        assert_eq!(b.pending(), 0, "{payload}: no report after a graceful close");
        assert!(b.failure().is_none(), "{payload}: {:?}", b.failure());
    }

    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, 1000, READ);
    let expected: Vec<String> = batches.iter().map(|(p, _)| p.clone()).collect();
    assert_exactly_once(&records, &expected, "close topic");
    let got = by_payload(&records);
    for (payload, b) in &batches {
        let r = b.report(0).unwrap();
        assert_eq!((got[payload].partition, got[payload].offset), (r.partition, r.offset), "{payload}");
    }
}

/// A producer checked out while the pool closes is closed gracefully when it
/// comes back: its in-flight messages are delivered, not dropped.
#[test]
fn close_with_a_checked_out_producer_delivers_its_messages_on_return() {
    let bootstrap = bootstrap();
    let topic = unique("close-out");
    create_topics(&bootstrap, &[&topic], 3);
    let pool = plain_pool(&bootstrap, 2, &[("linger.ms", "1000")]);

    let lease = pool.checkout(None).expect("checkout");
    let batches: Vec<(String, Arc<Batch>)> = (0..100)
        .map(|i| {
            let payload = format!("out-{i}");
            let b = lease.produce_async(&[Message::new(&topic, Some(payload.as_bytes()))]).expect("produce_async");
            (payload, b)
        })
        .collect();
    let report = pool.close(false);
    assert_eq!((report.closed, report.in_use, report.undelivered), (0, 1, 0), "{report:?}");
    // (From another thread: a nested checkout on this one is re-entrant.)
    std::thread::scope(|s| {
        let other = s.spawn(|| pool.checkout(None).err().map(|e| e.kind)).join().unwrap();
        assert_eq!(other, Some(ErrorKind::Closed), "a closed pool refuses checkouts");
    });
    // Still usable while checked out.
    let late = lease.produce_async(&[Message::new(&topic, Some(b"out-late"))]).expect("the lease still works");
    drop(lease);

    assert_eq!(pool.stats().created, 0, "the returned producer was closed");
    for (payload, b) in batches.iter().chain([("out-late".to_owned(), late.clone())].iter()) {
        assert_eq!(b.pending(), 0, "{payload}: no report after the returned producer was closed");
        assert!(b.failure().is_none(), "{payload}: {:?}", b.failure());
    }
    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, 101, READ);
    let mut expected: Vec<String> = batches.iter().map(|(p, _)| p.clone()).collect();
    expected.push("out-late".into());
    assert_exactly_once(&records, &expected, "close-out topic");
}

// ---------------------------------------------------------------------------
// 6. Reload while threads produce.

#[test]
fn reload_under_load_loses_nothing_and_keeps_slot_indexes() {
    let bootstrap = bootstrap();
    let topic = unique("reload");
    create_topics(&bootstrap, &[&topic], 3);
    let pool = plain_pool(&bootstrap, 3, &[]);
    let log = EventLog::subscribe();

    let (tx, rx) = mpsc::channel::<()>();
    let sent: Mutex<Vec<(String, usize, String, Report)>> = Mutex::default();
    let produce = |payload: String| {
        let (index, id, report) = pool
            .with(None, |lease| {
                let batch = lease.produce_sync(&[Message::new(&topic, Some(payload.as_bytes()))])?;
                Ok((lease.index(), lease.id().to_owned(), batch.report(0).unwrap()))
            })
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        sent.lock().unwrap().push((payload, index, id, report));
    };
    let mut creations_at_reload = 0;
    std::thread::scope(|s| {
        for t in 0..3 {
            let (produce, tx) = (&produce, tx.clone());
            s.spawn(move || {
                for i in 0..40 {
                    produce(format!("before-t{t}-m{i}"));
                    let _ = tx.send(());
                }
            });
        }
        drop(tx);
        for n in 0..30 {
            rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("producer threads stalled after {n}: {e}"));
        }
        creations_at_reload = pool.stats().creations;
        let undelivered = pool.reload().expect("reload under load");
        assert_eq!(undelivered, 0, "reload closes idle producers gracefully");
    });
    for i in 0..30 {
        produce(format!("after-m{i}"));
    }

    let s = pool.stats();
    assert!(s.creations > creations_at_reload, "reloaded producers must be recreated: {s:?} (at reload {creations_at_reload})");
    assert!(s.created <= 3 && s.in_use == 0, "{s:?}");
    assert_eq!(log.count(pool.id(), EventKind::Reload), 1);
    assert_eq!(log.count(pool.id(), EventKind::Reloaded), 1);

    let sent = sent.into_inner().unwrap();
    assert_eq!(sent.len(), 150);
    for (payload, index, id, _) in &sent {
        assert!(*index < 3, "{payload}: slot {index}");
        assert_eq!(id, &format!("wdpool-{}-{index}", pool.id()), "{payload}: the id follows the slot");
    }

    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, 150, READ);
    let expected: Vec<String> = sent.iter().map(|(p, ..)| p.clone()).collect();
    assert_exactly_once(&records, &expected, "reload topic");
    let got = by_payload(&records);
    for (payload, _, _, r) in &sent {
        assert_eq!((got[payload].partition, got[payload].offset), (r.partition, r.offset), "{payload}");
    }
    assert_eq!(pool.close(false).undelivered, 0);
}

// ---------------------------------------------------------------------------
// 7. librdkafka's statistics and errors arrive as drained events.

#[test]
fn statistics_and_error_events_are_drained() {
    let bootstrap = bootstrap();
    let topic = unique("stats");
    create_topics(&bootstrap, &[&topic], 3);
    let log = EventLog::subscribe();

    let pool = plain_pool(&bootstrap, 1, &[("statistics.interval.ms", "200")]);
    let producer_id = pool
        .with(None, |lease| {
            lease.produce_sync(&[Message::new(&topic, Some(b"stats"))])?;
            Ok(lease.id().to_owned())
        })
        .expect("producing");

    // A producer whose broker refuses connections (a loopback port nobody
    // listens on): librdkafka reports errors.
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bad = plain_pool(&format!("127.0.0.1:{dead_port}"), 1, &[("message.timeout.ms", "20000")]);
    let stuck = bad
        .with(None, |lease| lease.produce_async(&[Message::new(&topic, Some(b"never"))]))
        .expect("queueing works without a broker");

    let until = Instant::now() + Duration::from_secs(20);
    let (mut stats, mut error) = (None, None);
    while (stats.is_none() || error.is_none()) && Instant::now() < until {
        events::drain(Duration::from_millis(250), 10_000);
        stats = stats.or_else(|| log.of_pool(pool.id()).into_iter().find(|e| e.kind == EventKind::Statistics));
        error = error.or_else(|| log.of_pool(bad.id()).into_iter().find(|e| e.kind == EventKind::Error));
    }

    let stats = stats.expect("no statistics event within 20 s with statistics.interval.ms=200");
    assert_eq!(stats.slot, Some(0));
    assert_eq!(stats.producer_id.as_deref(), Some(producer_id.as_str()));
    let json = stats.message.trim_start();
    assert!(json.starts_with('{') && json.contains("\"name\""), "statistics JSON: {}", &json[..json.len().min(200)]);
    assert!(
        json.replace(' ', "").contains(&format!("\"client_id\":\"{producer_id}\"")),
        "statistics of the wrong client: {}",
        &json[..json.len().min(300)]
    );
    assert_eq!(stats.kind.name(), "statistics.emitted");

    let error = error.expect("no error event within 20 s from a producer whose broker refuses connections");
    assert_eq!(error.slot, Some(0));
    assert_ne!(error.error_code, 0, "{error:?}");
    assert!(!error.message.is_empty(), "{error:?}");
    assert!(log.of_pool(pool.id()).iter().all(|e| e.kind != EventKind::Error), "the healthy pool reported errors");

    assert_eq!(pool.close(false).undelivered, 0);
    let report = bad.close(true);
    assert_eq!(report.undelivered, 1, "a forced close purges the stuck message: {report:?}");
    stuck.wait(Duration::from_secs(5)).expect("the purged message's report arrives");
    assert!(stuck.failure().is_some(), "a purged message is not delivered");
}

/// librdkafka's `RD_KAFKA_RESP_ERR__FENCED`.
const RD_KAFKA_RESP_ERR__FENCED: i32 = -144;

/// The same through the C ABI, when the callback does not propagate the
/// failed produce: the commit reports the fencing as WDPOOL_FATAL, the slot
/// is emptied at once, and the next transaction runs on a fresh producer.
#[test]
fn c_abi_fenced_transaction_commit_reports_wdpool_fatal() {
    let bootstrap = bootstrap();
    let topic = unique("fence-c");
    create_topics(&bootstrap, &[&topic], 1);
    let txn_id = format!("{}-0", txn_prefix("fence-c"));
    let configure = |cfg: *mut wdpool_config, index: usize| {
        assert_eq!(index, 0);
        set_kafka(cfg, "bootstrap.servers", &bootstrap);
        set_kafka(cfg, "transactional.id", &txn_id);
        set_kafka(cfg, "transaction.timeout.ms", "20000");
        ok("set_max_wait_timeout", |err| unsafe { wdpool_config_set_max_wait_timeout(cfg, MAX_WAIT_MS, err) });
        WDPOOL_CB_OK
    };
    let a = pool_new(1, 20_000, configure);
    let b = pool_new(1, 20_000, configure);
    let commit = |pool: *mut wdpool_pool, payload: &str| {
        let (rc, text) = pool_transaction(pool, |p| {
            c_produce_sync(p, &mut CMessage::new(&topic, payload).partition(0));
            WDPOOL_CB_OK
        });
        assert_eq!(rc, WDPOOL_OK, "{payload}: {text}");
    };
    commit(a, "a-1");
    commit(b, "b-1"); // fences A

    let mut produce_rc = None;
    let (rc, code, text) = pool_transaction_with_code(a, |p| {
        let mut m = CMessage::new(&topic, "a-2").partition(0);
        let raw = m.raw();
        let (rc, text) = call(|err| unsafe { wdpool_producer_produce_sync(p, &raw, -1, std::ptr::null_mut(), err) });
        produce_rc = Some((rc, text));
        WDPOOL_CB_OK // ignore the failure: the commit must still refuse
    });
    let (produce_rc, produce_text) = produce_rc.expect("the callback ran");
    assert!(matches!(produce_rc, WDPOOL_KAFKA | WDPOOL_FATAL), "producing on a fenced producer: {produce_rc:?} {produce_text}");
    assert_eq!(rc, WDPOOL_FATAL, "committing on a fenced producer: {text}");
    assert_eq!(code, RD_KAFKA_RESP_ERR__FENCED, "{text}");
    let stats = pool_stats(a);
    assert_eq!((stats.replaced, stats.created, stats.creations), (1, 0, 1), "discarded when it came back: {stats:?}");

    commit(a, "a-3"); // a fresh producer, which fences B in turn
    let stats = pool_stats(a);
    assert_eq!((stats.replaced, stats.created, stats.creations), (1, 1, 2), "{stats:?}");

    let records = consume_until_marker(&bootstrap, &topic, Isolation::ReadCommitted, "a-3", READ);
    let order: Vec<&str> = records.iter().map(Record::payload_str).collect();
    assert_eq!(order, ["a-1", "b-1", "a-3"], "read_committed");

    assert_close_clean(a, 1);
    let created_b = pool_stats(b).created;
    assert_close_clean(b, created_b);
}
