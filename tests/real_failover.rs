//! Failures a real Kafka deployment has, against real brokers started by
//! scripts/kafka.sh: the broker going away and coming back (the single
//! broker, `WDPOOL_KAFKA_BOOTSTRAP`), a partition leader killed while
//! producers are busy (the three-broker cluster,
//! `WDPOOL_KAFKA_CLUSTER_BOOTSTRAP`), and a forced close whose report must
//! match what is missing when reading back.
//!
//! These tests stop and start brokers, so they run one at a time (a lock)
//! and in their own test binary (cargo runs binaries one after another).
//! `make test-real` starts both clusters, sets both variables and stops
//! everything afterwards.

mod common;
mod real_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};


use rdkafka::types::RDKafkaErrorCode;

use real_common::*;
use wdpool::error::ErrorKind;
use wdpool::kafka::Message;
use wdpool::pool::Options;
use wdpool::producer_pool::ProducerPool;

const READ_BACK: Duration = Duration::from_secs(60);

/// One test at a time: they take brokers down.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool(bootstrap: &str, size: usize, props: &[(&str, &str)]) -> ProducerPool {
    let props: Vec<(String, String)> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let bootstrap = bootstrap.to_owned();
    ProducerPool::new(
        Options { size, timeout: Duration::from_secs(30) },
        move |c, _| {
            c.max_wait_timeout = Duration::from_secs(90);
            c.set_kafka("bootstrap.servers", &bootstrap)?;
            for (k, v) in &props {
                c.set_kafka(k, v)?;
            }
            Ok(())
        },
        false,
    )
    .expect("creating the pool")
}

fn produce_one(pool: &ProducerPool, topic: &str, payload: &str) -> wdpool::error::Result<()> {
    pool.with(None, |p| p.produce_sync(&[Message::new(topic, Some(payload.as_bytes()))]).map(drop))
}

/// The broker goes away: produce_sync fails within `message.timeout.ms`,
/// the pool keeps working (producers go back, `with` runs), and once the
/// broker is back messages flow again.
#[test]
fn broker_gone_and_back() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let topic = unique("gone");
    create_topics(&bootstrap, &[&topic], 1);
    let pool = pool(&bootstrap, 2, &[("message.timeout.ms", "4000"), ("reconnect.backoff.max.ms", "500")]);
    produce_one(&pool, &topic, "before").expect("producing while the broker is up");

    kafka_sh(&["stop-node", "1", "--name", "single"]);
    let started = Instant::now();
    let e = produce_one(&pool, &topic, "while-gone").expect_err("no broker, no delivery");
    let took = started.elapsed();
    assert_eq!(e.kind, ErrorKind::Kafka, "{e:?}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageTimedOut as i32, "{e:?}");
    // Bounded by message.timeout.ms (4 s), not by max_wait_timeout (90 s).
    assert!(took < Duration::from_secs(30), "the delivery error took {took:?}");
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.replaced), (0, 0), "{stats:?}");
    let ran = pool.with(None, |p| Ok(p.index())).expect("with keeps working while the broker is gone");
    assert!(ran < 2);

    kafka_sh(&["start-node", "1", "--name", "single"]);
    // The producers reconnect by themselves; produce until one is delivered.
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        match produce_one(&pool, &topic, &format!("after-{n}")) {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < until, "no delivery a minute after the broker came back: {e:?}"),
        }
    }
    let records = consume(&bootstrap, &topic, Isolation::ReadUncommitted, READ_BACK, |r, at_end| {
        at_end && r.iter().any(|m| m.payload_str() == format!("after-{n}"))
    });
    let payloads: Vec<&str> = records.iter().map(Record::payload_str).collect();
    assert!(payloads.contains(&"before"), "{payloads:?}");
    assert!(!payloads.contains(&"while-gone"), "a timed-out message must not appear: {payloads:?}");
    assert_eq!(pool.close(false).undelivered, 0);
}

/// The leader of a partition is killed (SIGKILL) while four threads produce
/// with `acks=all` and idempotence: every message acknowledged as delivered
/// is read back, and nothing is read twice.
#[test]
fn leader_killed_during_production_loses_and_duplicates_nothing() {
    let _serial = serial();
    let bootstrap = cluster_bootstrap();
    let topic = unique("failover");
    create_topic(&bootstrap, &topic, 3, 3);
    let victim = leader_of(&bootstrap, &topic, 0);

    let pool = Arc::new(pool(
        &bootstrap,
        4,
        &[("acks", "all"), ("enable.idempotence", "true"), ("message.timeout.ms", "60000"), ("linger.ms", "5")],
    ));
    const THREADS: usize = 4;
    const PER_THREAD: usize = 400;
    let sent = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, topic, sent, acked, failed) =
                (Arc::clone(&pool), topic.clone(), Arc::clone(&sent), Arc::clone(&acked), Arc::clone(&failed));
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let payload = format!("t{t}-{i}");
                    let key = format!("k{}", i % 12);
                    let result = pool.with(None, |p| {
                        let mut m = Message::new(&topic, Some(payload.as_bytes()));
                        m.key = Some(key.as_bytes());
                        p.produce_sync(&[m]).map(drop)
                    });
                    match result {
                        Ok(()) => acked.lock().unwrap().insert(payload),
                        Err(e) => {
                            failed.lock().unwrap().push(format!("{payload}: {e}"));
                            false
                        }
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Kill the leader once a quarter has gone out, while the rest is going.
    let until = Instant::now() + Duration::from_secs(120);
    while sent.load(Ordering::Relaxed) < THREADS * PER_THREAD / 4 {
        assert!(Instant::now() < until, "producers made no progress before the failover");
        std::thread::park_timeout(Duration::from_millis(20));
    }
    kafka_sh(&["kill-node", &victim.to_string(), "--name", "cluster"]);
    for w in workers {
        w.join().expect("a producer thread panicked");
    }
    kafka_sh(&["start-node", &victim.to_string(), "--name", "cluster"]);

    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    // With acks=all, min.insync.replicas=2 and two live brokers, writes go
    // on: nearly everything should be acknowledged.
    assert!(acked.len() >= THREADS * PER_THREAD * 9 / 10, "only {} acked; failures: {failed:?}", acked.len());
    let records = consume(&bootstrap, &topic, Isolation::ReadUncommitted, Duration::from_secs(120), |r, at_end| {
        at_end && r.len() >= acked.len()
    });
    let counts = payload_counts(&records);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates after the failover: {duplicates:?}");
    let missing: Vec<_> = acked.iter().filter(|p| !counts.contains_key(*p)).take(20).collect();
    assert!(missing.is_empty(), "acknowledged but not read back: {missing:?}");
    assert_eq!(pool.stats().in_use, 0);
    // Per key, one producer thread's messages keep their order.
    let mut last: HashMap<(String, String), usize> = HashMap::new();
    let by_partition: BTreeMap<(i32, i64), String> =
        records.iter().map(|r| ((r.partition, r.offset), r.payload_str().to_owned())).collect();
    for ((partition, _), payload) in &by_partition {
        let (thread, seq) = payload.split_once('-').expect("t<thread>-<seq>");
        let seq: usize = seq.parse().expect("sequence number");
        let k = (partition.to_string(), format!("{thread}/k{}", seq % 12));
        if let Some(prev) = last.insert(k.clone(), seq) {
            assert!(prev < seq, "{k:?}: {seq} after {prev}");
        }
    }
}

/// A forced close purges what is queued: the report's count is exactly what
/// is missing when reading back.
#[test]
fn forced_close_reports_exactly_what_is_missing() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let topic = unique("forced");
    create_topics(&bootstrap, &[&topic], 3);
    // linger.ms keeps the async messages queued until the close purges them.
    let pool = pool(&bootstrap, 1, &[("linger.ms", "20000"), ("message.timeout.ms", "60000")]);
    let delivered: Vec<String> = (0..50).map(|i| format!("sync-{i}")).collect();
    pool.with(None, |p| {
        for payload in &delivered {
            let mut m = Message::new(&topic, Some(payload.as_bytes()));
            m.partition = 0;
            // A flush after each keeps linger.ms out of the way for these.
            p.produce_async(&[m])?;
            p.flush()?;
        }
        Ok(())
    })
    .expect("the delivered part");
    let queued: Vec<String> = (0..300).map(|i| format!("async-{i}")).collect();
    let batch = pool
        .with(None, |p| {
            let msgs: Vec<Message<'_>> = queued.iter().map(|s| Message::new(&topic, Some(s.as_bytes()))).collect();
            p.produce_async(&msgs)
        })
        .expect("queueing");
    let report = pool.close(true);
    assert_eq!(report.closed, 1);
    let records = consume(&bootstrap, &topic, Isolation::ReadUncommitted, READ_BACK, |r, at_end| {
        at_end && r.len() >= delivered.len()
    });
    let total = (delivered.len() + queued.len()) as u64;
    assert_eq!(
        report.undelivered,
        total - records.len() as u64,
        "reported {} undelivered, but {} of {total} were read back",
        report.undelivered,
        records.len()
    );
    assert_eq!(report.undelivered, queued.len() as u64, "linger.ms held every async message");
    batch.wait(Duration::from_secs(10)).expect("every purged message has its report");
    assert!(batch.failure().is_some());
}
