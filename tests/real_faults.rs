//! Faults the network and the broker throw, against real brokers: no
//! broker at all, a "broker" that accepts connections and never answers (a
//! socket of this test that reads nothing), a broker whose
//! `message.max.bytes` is below wdpool's `max_payload_size`, a topic that
//! does not exist on a broker that does not create topics, and a partition
//! leader stopped in the middle of a transaction.
//!
//! Each must give a clear error within a bound (the produce or checkout
//! timeout), lose nothing that was acknowledged (read back), and leave the
//! pool whole: nothing checked out or waiting, and the next `with` works.
//!
//! Brokers (`make test-real` starts them and sets the variables):
//! - `WDPOOL_KAFKA_STRICT_BOOTSTRAP`: one broker started with
//!   `WDPOOL_KAFKA_PROPS="auto.create.topics.enable=false message.max.bytes=65536"`
//!   (`scripts/kafka.sh start --name strict`);
//! - `WDPOOL_KAFKA_CLUSTER_BOOTSTRAP`: the three-broker cluster
//!   (`scripts/kafka.sh start --nodes 3 --name cluster`), whose node this
//!   test stops and starts again.

mod common;
mod real_common;

use std::io::ErrorKind as IoErrorKind;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

use real_common::*;
use wdpool::error::{Error, ErrorKind};
use wdpool::kafka::{Completion, Message};
use wdpool::pool::Options;
use wdpool::producer_pool::{ProducerLease, ProducerPool};

const STRICT_ENV: &str = "WDPOOL_KAFKA_STRICT_BOOTSTRAP";
/// The strict broker's `message.max.bytes` (see the module doc).
const STRICT_MESSAGE_MAX_BYTES: usize = 65_536;
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(6);
/// What a bound may be exceeded by on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(4);
const READ_BACK: Duration = Duration::from_secs(60);

fn strict_bootstrap() -> String {
    match std::env::var(STRICT_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "{STRICT_ENV} is not set: start the strict broker with WDPOOL_KAFKA_PROPS=\"auto.create.topics.enable=false \
             message.max.bytes={STRICT_MESSAGE_MAX_BYTES}\" scripts/kafka.sh start --name strict and export its bootstrap \
             (or run `make test-real`); these tests are never skipped"
        ),
    }
}

fn pool(bootstrap: &str, size: usize, txn: Option<&str>, props: &[(&str, &str)]) -> ProducerPool {
    let (bootstrap, txn) = (bootstrap.to_owned(), txn.map(str::to_owned));
    let props: Vec<(String, String)> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ProducerPool::new(
        Options { size, timeout: CHECKOUT_TIMEOUT },
        move |c, i| {
            c.max_wait_timeout = Duration::from_secs(60);
            c.set_kafka("bootstrap.servers", &bootstrap)?;
            c.set_kafka("message.timeout.ms", &MESSAGE_TIMEOUT.as_millis().to_string())?;
            for (k, v) in &props {
                c.set_kafka(k, v)?;
            }
            if let Some(t) = &txn {
                c.set_kafka("transactional.id", &format!("{t}-{i}"))?;
            }
            Ok(())
        },
        false,
    )
    .expect("creating the pool")
}

fn produce(p: &ProducerLease, topic: &str, payload: &[u8]) -> Result<(), Error> {
    p.produce_sync(&[Message::new(topic, Some(payload))]).map(drop)
}

/// Nothing checked out or waited for, and the next `with` runs.
fn assert_whole(pool: &ProducerPool) {
    let s = pool.stats();
    assert!(!s.closed && s.in_use == 0 && s.waiting == 0, "the pool is not whole: {s:?}");
}

fn assert_bounded(what: &str, started: Instant, bound: Duration) {
    let took = started.elapsed();
    assert!(took <= bound + SLACK, "{what} took {took:?}, more than {bound:?} + {SLACK:?}");
    eprintln!("{what}: {} ms", took.as_millis());
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().unwrap().port()
}

/// Accepts connections and never reads or answers; keeps them open until
/// dropped.
struct SilentBroker {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl SilentBroker {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding the silent broker");
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stopping.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(e) if e.kind() == IoErrorKind::WouldBlock => std::thread::park_timeout(Duration::from_millis(20)),
                    Err(e) => panic!("accept: {e}"),
                }
            }
            held.len()
        });
        SilentBroker { port, stop, thread: Some(thread) }
    }

    /// Stops accepting, closes the connections; how many there were.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().expect("the silent broker's thread")
    }
}

/// The same checks for "no broker" and "a broker that never answers": a
/// plain produce fails with MSG_TIMED_OUT within `message.timeout.ms`, a
/// transactional checkout with TIMEOUT within the checkout timeout; both
/// pools stay whole and close promptly.
fn unreachable_broker(bootstrap: &str, what: &str, cause: Option<&str>) {
    let topic = unique("unreachable");
    let plain = pool(bootstrap, 2, None, &[]);
    let started = Instant::now();
    let e = plain.with(None, |p| produce(p, &topic, b"never")).expect_err("nothing can be delivered");
    assert_bounded(&format!("{what}: produce_sync"), started, MESSAGE_TIMEOUT);
    eprintln!("{what}: {e}");
    assert_eq!((e.kind, e.kafka_code), (ErrorKind::Kafka, RDKafkaErrorCode::MessageTimedOut as i32), "{e}");
    if let Some(cause) = cause {
        assert!(e.message.contains(cause), "{what}: the error does not say {cause:?}: {e}");
    }
    assert_whole(&plain);
    plain.with(None, |_| Ok(())).expect("the next with");
    let started = Instant::now();
    let report = plain.close(false);
    assert_bounded(&format!("{what}: close"), started, Duration::from_secs(2));
    assert_eq!(report.undelivered, 0, "the failed message was reported to its caller, not left queued");

    let txn = pool(bootstrap, 1, Some(&unique("unreachable-txn")), &[]);
    let started = Instant::now();
    let e = txn
        .transaction(None, |p| produce(p, &topic, b"never").map(|_| Completion::Commit))
        .expect_err("init_transactions cannot finish");
    assert_bounded(&format!("{what}: transactional checkout"), started, CHECKOUT_TIMEOUT);
    eprintln!("{what}: {e}");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.message.contains("init_transactions did not finish"), "{e}");
    if let Some(cause) = cause {
        assert!(e.message.contains(cause), "{what}: the error does not say {cause:?}: {e}");
    }
    assert_whole(&txn);
    let started = Instant::now();
    txn.close(true);
    assert_bounded(&format!("{what}: close of the transactional pool"), started, Duration::from_secs(2));
}

#[test]
fn no_broker_reachable_at_setup() {
    let port = closed_port();
    unreachable_broker(&format!("127.0.0.1:{port}"), "no broker", Some("Connection refused"));
}

#[test]
fn broker_that_accepts_and_never_answers() {
    let silent = SilentBroker::start();
    unreachable_broker(&format!("127.0.0.1:{}", silent.port), "silent broker", Some("reported no error"));
    assert!(silent.stop() >= 1, "the producers never connected to the silent broker");
}

/// The broker's `message.max.bytes` (64 KiB) is below wdpool's
/// `max_payload_size` (1000012): a 200 KB message passes wdpool's and
/// librdkafka's checks and the broker refuses it with MSG_SIZE_TOO_LARGE
/// (10), at once. Alone, and inside a transaction (rolled back, nothing of
/// it visible, the producer replaced so the next transaction loses
/// nothing); the messages acknowledged around it are read back.
#[test]
fn broker_message_max_bytes_below_max_payload_size() {
    let bootstrap = strict_bootstrap();
    let topic = unique("toolarge");
    create_topics(&bootstrap, &[&topic], 1);
    let big = vec![b'x'; 200_000];
    assert!(big.len() > STRICT_MESSAGE_MAX_BYTES && big.len() < wdpool::kafka::config::DEFAULT_MAX_PAYLOAD_SIZE);

    let plain = pool(&bootstrap, 1, None, &[]);
    plain.with(None, |p| produce(p, &topic, b"before")).expect("a small message");
    let started = Instant::now();
    let e = plain.with(None, |p| produce(p, &topic, &big)).expect_err("the broker refuses it");
    assert_bounded("too large, plain", started, Duration::ZERO);
    eprintln!("too large: {e}");
    assert_eq!((e.kind, e.kafka_code), (ErrorKind::Kafka, RDKafkaErrorCode::MessageSizeTooLarge as i32), "{e}");
    plain.with(None, |p| produce(p, &topic, b"after")).expect("the next with");
    assert_whole(&plain);

    let txn = pool(&bootstrap, 1, Some(&unique("toolarge-txn")), &[]);
    let started = Instant::now();
    let e = txn
        .transaction(None, |p| {
            produce(p, &topic, b"in-rolled-back")?;
            produce(p, &topic, &big)?;
            Ok(Completion::Commit)
        })
        .expect_err("the transaction cannot commit");
    assert_bounded("too large, in a transaction", started, Duration::ZERO);
    eprintln!("too large in a transaction: {e}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageSizeTooLarge as i32, "{e}");
    // librdkafka (2.12) aborts without bumping the epoch, leaving a gap in
    // the partition's sequence numbers that would purge (PURGE_QUEUE) the
    // next message to it with its transaction: wdpool replaced the
    // producer when it came back, and the next transaction commits.
    assert_eq!((txn.stats().replaced, txn.stats().creations), (1, 1), "{:?}", txn.stats());
    let started = Instant::now();
    txn.transaction(None, |p| produce(p, &topic, b"committed").map(|_| Completion::Commit))
        .expect("the next transaction, on a fresh producer");
    eprintln!("too large: the next transaction (a fresh producer) in {} ms", started.elapsed().as_millis());
    assert_eq!((txn.stats().replaced, txn.stats().creations), (1, 2), "{:?}", txn.stats());
    assert_whole(&txn);

    let records = consume_until_marker(&bootstrap, &topic, Isolation::ReadCommitted, "committed", READ_BACK);
    let payloads: Vec<&str> = records.iter().map(|r| r.payload_str()).collect();
    assert_eq!(payloads, ["before", "after", "committed"], "exactly what was acknowledged");
    plain.close(false);
    txn.close(false);
}

/// A topic that does not exist, on a broker that does not create topics:
/// librdkafka waits for it to appear (`topic.metadata.propagation.max.ms`,
/// here below the message timeout) and fails the message with
/// UNKNOWN_TOPIC_OR_PART; nothing is created; the pool stays whole.
#[test]
fn missing_topic_with_auto_creation_off() {
    let bootstrap = strict_bootstrap();
    let missing = unique("missing");
    let known = unique("known");
    create_topics(&bootstrap, &[&known], 1);
    let plain = pool(&bootstrap, 1, None, &[("topic.metadata.propagation.max.ms", "2000")]);
    let started = Instant::now();
    let e = plain.with(None, |p| produce(p, &missing, b"lost")).expect_err("no such topic");
    assert_bounded("missing topic", started, MESSAGE_TIMEOUT);
    eprintln!("missing topic: {e}");
    assert_eq!(e.kind, ErrorKind::Kafka, "{e}");
    assert!(
        [RDKafkaErrorCode::UnknownTopicOrPartition as i32, RDKafkaErrorCode::UnknownTopic as i32].contains(&e.kafka_code),
        "{e}"
    );
    plain.with(None, |p| produce(p, &known, b"known")).expect("the next with");
    assert_whole(&plain);
    plain.close(false);
    let md = consumer(&bootstrap, Isolation::ReadUncommitted)
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert!(md.topics().iter().all(|t| t.name() != missing), "the broker created {missing}");
    let records = consume_until_marker(&bootstrap, &known, Isolation::ReadUncommitted, "known", READ_BACK);
    assert_eq!(records.len(), 1);
}

/// The leader of the partition a transaction writes to is stopped (a
/// controlled shutdown: leadership moves to another replica) while the
/// transaction produces. The transaction either commits with every message
/// or fails with a clear error and none of them is visible (read_committed)
/// — never part of it. The next transaction commits and is read back.
#[test]
fn partition_leader_change_during_a_transaction() {
    let bootstrap = cluster_bootstrap();
    let topic = unique("leaderchange");
    create_topic(&bootstrap, &topic, 1, 3);
    let victim = leader_of(&bootstrap, &topic, 0);
    let txn = pool(&bootstrap, 1, Some(&unique("leaderchange-txn")), &[("message.timeout.ms", "30000")]);
    let mut sent: Vec<String> = Vec::new();
    let started = Instant::now();
    let outcome = txn.transaction(None, |p| {
        for i in 0..5 {
            sent.push(format!("before-{i}"));
            produce(p, &topic, sent.last().unwrap().as_bytes())?;
        }
        let stopping = std::thread::spawn(move || kafka_sh(&["stop-node", &victim.to_string(), "--name", "cluster"]));
        let mut i = 0;
        while !stopping.is_finished() || i < 5 {
            sent.push(format!("during-{i}"));
            produce(p, &topic, sent.last().unwrap().as_bytes())?;
            i += 1;
        }
        stopping.join().expect("stopping the leader");
        Ok(Completion::Commit)
    });
    eprintln!("leader change: {} messages, {:?} after {} ms", sent.len(), outcome.as_ref().err().map(|e| e.to_string()), started.elapsed().as_millis());
    assert!(started.elapsed() <= Duration::from_secs(60) + SLACK, "took {:?}", started.elapsed());
    assert_whole(&txn);
    let after = txn.transaction(None, |p| produce(p, &topic, b"next").map(|_| Completion::Commit));
    kafka_sh(&["start-node", &victim.to_string(), "--name", "cluster"]);
    after.expect("the next transaction, on the new leader");
    assert_ne!(leader_of(&bootstrap, &topic, 0), -1);
    let records = consume_until_marker(&bootstrap, &topic, Isolation::ReadCommitted, "next", READ_BACK);
    let mut read: Vec<String> = records.iter().map(|r| r.payload_str().to_owned()).collect();
    assert_eq!(read.pop().as_deref(), Some("next"));
    match outcome {
        Ok(_) => assert_eq!(read, sent, "a committed transaction is read back whole, in order"),
        Err(e) => {
            assert!(read.is_empty(), "a failed transaction left {} of its messages visible: {e}", read.len());
            assert!(matches!(e.kind, ErrorKind::TransactionAborted | ErrorKind::Kafka | ErrorKind::Fatal), "{e}");
        }
    }
    txn.close(false);
}
