//! Producing through the pool against librdkafka's in-process mock cluster;
//! every test reads back what it produced with a plain rdkafka consumer.

mod common;

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};

use common::{consume_all, new_pool, new_pool_with, payload_counts, sorted_payloads, topic_name};
use wdpool::error::ErrorKind;
use wdpool::kafka::{Completion, Header, Message};

const DEADLINE: Duration = Duration::from_secs(15);

fn cluster_with_topic(test: &str, partitions: i32) -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String, String) {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = topic_name(test);
    cluster.create_topic(&topic, partitions, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    (cluster, topic, bootstrap)
}

#[test]
fn produce_sync_round_trips_payload_key_headers_partition_and_timestamp() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("fields", 4);
    let pool = new_pool(&bootstrap, 2, &[]);

    let ts = 1_600_000_000_123_i64;
    let binary: &[u8] = &[0, 159, 146, 150, 255, 0];
    let mut m = Message::new(&topic, Some(b"hello"));
    m.key = Some(b"k1");
    m.partition = 2;
    m.timestamp_ms = Some(ts);
    m.headers = vec![
        Header { key: "a", value: Some(b"1") },
        Header { key: "dup", value: Some(b"first") },
        Header { key: "dup", value: Some(b"second") },
        Header { key: "bin", value: Some(binary) },
        Header { key: "null", value: None },
    ];
    let plain = Message::new(&topic, Some(b"plain"));

    let before = now_ms();
    let (r1, r2) = pool
        .with(None, |p| {
            let b1 = p.produce_sync(std::slice::from_ref(&m))?;
            let b2 = p.produce_sync(std::slice::from_ref(&plain))?;
            assert_eq!(b1.len(), 1);
            assert_eq!(b1.pending(), 0);
            Ok((b1.report(0).expect("report 1"), b2.report(0).expect("report 2")))
        })
        .expect("produce_sync");
    assert!(r1.error.is_none(), "{r1:?}");
    assert_eq!(r1.partition, 2);
    assert!(r1.offset >= 0, "{r1:?}");
    // Not checked: the report's timestamp. The mock broker answers every
    // Produce with LogAppendTime 1234, which librdkafka puts in the report.
    assert!(r2.error.is_none(), "{r2:?}");
    assert!(r2.partition >= 0 && r2.partition < 4, "{r2:?}");
    assert!(r2.offset >= 0, "{r2:?}");
    assert_eq!(pool.stats().in_use, 0);

    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(records.len(), 2, "{records:?}");
    let rec = records.iter().find(|r| r.payload.as_deref() == Some(b"hello")).expect("hello consumed");
    assert_eq!(rec.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(rec.partition, 2);
    assert_eq!(rec.offset, r1.offset);
    assert_eq!(rec.timestamp_ms, Some(ts));
    let expected_headers: Vec<(String, Option<Vec<u8>>)> = vec![
        ("a".into(), Some(b"1".to_vec())),
        ("dup".into(), Some(b"first".to_vec())),
        ("dup".into(), Some(b"second".to_vec())),
        ("bin".into(), Some(binary.to_vec())),
        ("null".into(), None),
    ];
    assert_eq!(rec.headers, expected_headers);

    let rec2 = records.iter().find(|r| r.payload.as_deref() == Some(b"plain")).expect("plain consumed");
    let ts2 = rec2.timestamp_ms.expect("a create time");
    assert!(ts2 >= before - 1000 && ts2 <= now_ms() + 1000, "producer clock timestamp {ts2}, test started at {before}");
    assert_eq!(rec2.key, None);
    assert!(rec2.headers.is_empty());
    assert_eq!((rec2.partition, rec2.offset), (r2.partition, r2.offset));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn produce_async_and_many_are_each_delivered_exactly_once() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("many", 3);
    let pool = new_pool(&bootstrap, 2, &[]);

    // One async message: the batch outlives the lease and reports later.
    let single = Message::new(&topic, Some(b"async-0"));
    let batch = pool.with(None, |p| p.produce_async(std::slice::from_ref(&single))).expect("produce_async");
    assert_eq!(pool.stats().in_use, 0);
    batch.wait(Duration::from_secs(10)).expect("wait");
    assert_eq!(batch.pending(), 0);
    let report = batch.report(0).expect("report");
    assert!(report.error.is_none(), "{report:?}");
    assert!(report.partition >= 0 && report.offset >= 0, "{report:?}");
    assert!(batch.failure().is_none());

    // 100 at once, synchronously, then 100 asynchronously.
    let sync_payloads: Vec<String> = (0..100).map(|i| format!("sync-{i}")).collect();
    let async_payloads: Vec<String> = (0..100).map(|i| format!("many-async-{i}")).collect();
    let sync_msgs: Vec<Message<'_>> = sync_payloads.iter().map(|p| Message::new(&topic, Some(p.as_bytes()))).collect();
    let async_msgs: Vec<Message<'_>> = async_payloads.iter().map(|p| Message::new(&topic, Some(p.as_bytes()))).collect();

    let (sync_batch, async_batch) = pool
        .with(None, |p| {
            let s = p.produce_sync(&sync_msgs)?;
            assert_eq!(s.pending(), 0, "produce_sync returned before every report");
            let a = p.produce_async(&async_msgs)?;
            Ok((s, a))
        })
        .expect("produce many");
    async_batch.wait(Duration::from_secs(10)).expect("async many wait");
    let mut expected: Vec<String> = sync_payloads.iter().chain(&async_payloads).cloned().collect();
    expected.push("async-0".into());
    for batch in [&sync_batch, &async_batch] {
        assert_eq!(batch.len(), 100);
        assert!(batch.failure().is_none(), "{:?}", batch.failure());
        let mut positions = std::collections::HashSet::new();
        for i in 0..100 {
            let r = batch.report(i).expect("report");
            assert!(r.error.is_none() && r.offset >= 0 && r.partition >= 0, "{r:?}");
            assert!(positions.insert((r.partition, r.offset)), "two reports at {:?}", (r.partition, r.offset));
        }
    }

    // flush delivers what produce_async queued behind a long linger.
    let lingering = new_pool(&bootstrap, 1, &[("linger.ms", "5000")]);
    let flushed = lingering
        .with(None, |p| {
            let b = p.produce_async(&[Message::new(&topic, Some(b"flushed"))])?;
            assert_eq!(b.pending(), 1);
            p.flush()?;
            Ok(b)
        })
        .expect("flush");
    assert_eq!(flushed.pending(), 0, "flush returned before the delivery report");
    assert!(flushed.failure().is_none());
    expected.push("flushed".into());
    expected.sort();

    let records = consume_all(&bootstrap, &topic, 202, DEADLINE);
    assert_eq!(records.len(), 202);
    let counts = payload_counts(&records);
    assert_eq!(sorted_payloads(&records), expected);
    assert!(counts.values().all(|&c| c == 1), "duplicates: {counts:?}");
}

#[test]
fn tombstones_partition_keys_and_explicit_partitions() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("partitioning", 6);
    let pool = new_pool(&bootstrap, 1, &[]);

    let keys: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
    let mut msgs = Vec::new();
    let mut tomb = Message::new(&topic, None);
    tomb.key = Some(b"gone");
    msgs.push(tomb);
    let mut p3 = Message::new(&topic, Some(b"to-3"));
    p3.partition = 3;
    msgs.push(p3);
    // An explicit partition wins over a partition key.
    let mut p3pk = Message::new(&topic, Some(b"to-3-despite-pk"));
    p3pk.partition = 3;
    p3pk.partition_key = Some(b"user-0");
    msgs.push(p3pk);
    let payloads: Vec<(String, String, String)> =
        keys.iter().map(|k| (format!("{k}/pk-a"), format!("{k}/pk-b"), format!("{k}/key"))).collect();
    for (k, (a, b, c)) in keys.iter().zip(&payloads) {
        for p in [a, b] {
            let mut m = Message::new(&topic, Some(p.as_bytes()));
            m.partition_key = Some(k.as_bytes());
            msgs.push(m);
        }
        // The same string as a real key: the partitioner must agree.
        let mut m = Message::new(&topic, Some(c.as_bytes()));
        m.key = Some(k.as_bytes());
        msgs.push(m);
    }
    let batch = pool.with(None, |p| p.produce_sync(&msgs)).expect("produce");
    assert!(batch.failure().is_none());
    assert_eq!(batch.report(1).unwrap().partition, 3);
    assert_eq!(batch.report(2).unwrap().partition, 3);

    let records = consume_all(&bootstrap, &topic, msgs.len(), DEADLINE);
    assert_eq!(records.len(), msgs.len());

    let tomb = records.iter().find(|r| r.key.as_deref() == Some(b"gone")).expect("tombstone consumed");
    assert_eq!(tomb.payload, None, "a tombstone has no payload");

    let by_payload = |p: &str| records.iter().find(|r| r.payload.as_deref() == Some(p.as_bytes())).unwrap_or_else(|| panic!("{p} not consumed"));
    assert_eq!(by_payload("to-3").partition, 3);
    assert_eq!(by_payload("to-3-despite-pk").partition, 3);

    let mut used = std::collections::BTreeSet::new();
    for (k, (a, b, c)) in keys.iter().zip(&payloads) {
        let (ra, rb, rc) = (by_payload(a), by_payload(b), by_payload(c));
        assert_eq!(ra.partition, rb.partition, "same partition_key {k}, different partitions");
        assert_eq!(ra.partition, rc.partition, "partition_key {k} and key {k} disagree");
        assert_eq!(ra.key, None, "partition_key must not become the message key");
        assert_eq!(rc.key.as_deref(), Some(k.as_bytes()));
        used.insert(ra.partition);
    }
    assert!(used.len() > 1, "12 partition keys all landed in one partition: {used:?}");
}

#[test]
fn invalid_messages_are_rejected_naming_the_field_and_nothing_is_sent() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("invalid", 2);
    let pool = new_pool(&bootstrap, 1, &[]);

    let e = pool.with(None, |p| p.produce_sync(&[Message::new("a b", Some(b"x"))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(e.message.contains("topic"), "{}", e.message);

    let mut empty_key = Message::new(&topic, Some(b"x"));
    empty_key.key = Some(b"");
    let e = pool.with(None, |p| p.produce_sync(std::slice::from_ref(&empty_key))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(e.message.contains("key"), "{}", e.message);

    let mut empty_pk = Message::new(&topic, Some(b"x"));
    empty_pk.partition_key = Some(b"");
    let e = pool.with(None, |p| p.produce_async(std::slice::from_ref(&empty_pk))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(e.message.contains("partition_key"), "{}", e.message);

    // One bad message among good ones: the whole call is rejected.
    let mut many = vec![Message::new(&topic, Some(b"good-0")), Message::new(&topic, Some(b"good-1"))];
    many.push(Message::new("a b", Some(b"bad")));
    many.push(Message::new(&topic, Some(b"good-3")));
    let e = pool.with(None, |p| p.produce_sync(&many)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(e.message.contains("topic"), "{}", e.message);
    assert!(e.message.contains('2'), "the error should say which message: {}", e.message);
    let e = pool.with(None, |p| p.produce_async(&many)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    let mut too_big = many.clone();
    too_big[2] = Message::new(&topic, Some(&[0u8; 2_000_000]));
    let e = pool.with(None, |p| p.produce_sync(&too_big)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(e.message.contains("payload"), "{}", e.message);

    assert_eq!(pool.stats().in_use, 0);
    // The pool still works; only this one message may be in the topic.
    pool.with(None, |p| p.produce_sync(&[Message::new(&topic, Some(b"after"))])).expect("valid produce");
    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), vec!["after".to_owned()], "rejected calls sent something");
}

#[test]
fn injected_delivery_errors_fail_the_call_and_the_pool_stays_usable() {
    let (cluster, topic, bootstrap) = cluster_with_topic("delivery-error", 1);
    let other = topic_name("delivery-error-other");
    cluster.create_topic(&other, 1, 1).expect("create topic");
    let pool = new_pool(&bootstrap, 1, &[("linger.ms", "0")]);
    let produce = |topic: &str, payload: &'static [u8]| pool.with(None, |p| p.produce_sync(&[Message::new(topic, Some(payload))]));
    let check = |e: wdpool::error::Error, code: RDKafkaErrorCode, started: Instant| {
        assert_eq!(e.kind, ErrorKind::Kafka, "{e:?}");
        assert_eq!(e.kafka_code, code as i32, "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "a permanent error took {:?}", started.elapsed());
        let stats = pool.stats();
        assert_eq!((stats.in_use, stats.replaced), (0, 0), "{stats:?}");
    };

    produce(&topic, b"before").expect("warm-up produce");

    // A permanent per-request error: this message fails, the next one is fine.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    let started = Instant::now();
    check(produce(&topic, b"too-large").unwrap_err(), RDKafkaErrorCode::MessageSizeTooLarge, started);
    produce(&topic, b"after").expect("produce after MSG_SIZE_TOO_LARGE");

    // Topic authorization failed: librdkafka also marks the topic as errored
    // in this producer (until a metadata refresh says otherwise), so later
    // sends to the topic fail at once; other topics keep working.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let started = Instant::now();
    check(produce(&topic, b"denied").unwrap_err(), RDKafkaErrorCode::TopicAuthorizationFailed, started);
    produce(&other, b"other-topic").expect("produce to another topic after TOPIC_AUTHORIZATION_FAILED");

    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(sorted_payloads(&records), vec!["after".to_owned(), "before".to_owned()]);
    let records = consume_all(&bootstrap, &other, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), vec!["other-topic".to_owned()]);
    assert_eq!(pool.stats().creations, 1, "a delivery error must not replace the producer");
}

/// A fatal idempotence error (the mock answers the head-of-line request with
/// OUT_OF_ORDER_SEQUENCE_NUMBER): the call fails, the producer is never handed
/// out again, and its slot gets a fresh one that works.
#[test]
fn a_fatal_error_replaces_the_producer() {
    let (cluster, topic, bootstrap) = cluster_with_topic("fatal-idempotent", 1);
    let log = common::EventLog::subscribe();
    let pool = new_pool(&bootstrap, 1, &[("enable.idempotence", "true")]);
    pool.with(None, |p| p.produce_sync(&[Message::new(&topic, Some(b"before"))])).expect("warm-up");

    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER]);
    let e = pool.with(None, |p| p.produce_sync(&[Message::new(&topic, Some(b"broken"))])).unwrap_err();
    assert_eq!(e.kafka_code, RDKafkaErrorCode::OutOfOrderSequenceNumber as i32, "{e:?}");
    let stats = pool.stats();
    assert_eq!((stats.replaced, stats.created, stats.in_use), (1, 0, 0), "{stats:?}");
    let replaced: Vec<_> =
        log.for_pool(pool.id()).into_iter().filter(|e| e.kind == wdpool::events::EventKind::ProducerReplaced).collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].slot, Some(0));

    let index = pool
        .with(None, |p| {
            p.produce_sync(&[Message::new(&topic, Some(b"after"))])?;
            Ok(p.index())
        })
        .expect("a fresh producer for the slot");
    assert_eq!(index, 0);
    assert_eq!(pool.stats().creations, 2);
    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    let payloads = sorted_payloads(&records);
    assert!(payloads.contains(&"before".to_owned()) && payloads.contains(&"after".to_owned()), "{payloads:?}");
}

/// A producer keeps a topic handle for each of its first 64 topics and
/// sends to any further topic by name: both ways deliver (read back).
#[test]
fn topics_past_the_kept_handles_go_by_name() {
    let (cluster, first, bootstrap) = cluster_with_topic("topics-0", 1);
    let topics: Vec<String> = std::iter::once(first).chain((1..66).map(|i| topic_name(&format!("topics-{i}")))).collect();
    for t in &topics[1..] {
        cluster.create_topic(t, 1, 1).expect("create topic");
    }
    let pool = new_pool(&bootstrap, 1, &[]);
    pool.with(None, |p| {
        for t in &topics {
            p.produce_sync(&[Message::new(t, Some(t.as_bytes()))])?;
        }
        Ok(())
    })
    .expect("every topic");
    for t in [&topics[0], &topics[63], &topics[64], &topics[65]] {
        assert_eq!(sorted_payloads(&consume_all(&bootstrap, t, 1, DEADLINE)), vec![t.clone()], "{t}");
    }
}

#[test]
fn deliver_false_acknowledges_without_a_broker() {
    // No broker at all.
    let pool = new_pool_with("127.0.0.1:1", 1, &[], |c, _| {
        c.deliver = false;
        Ok(())
    });
    let started = Instant::now();
    let mut m = Message::new("events", Some(b"x"));
    m.partition = 4;
    m.timestamp_ms = Some(42);
    let batch = pool
        .with(None, |p| p.produce_sync(&[m.clone(), Message::new("events", Some(b"y")), Message::new("events", None)]))
        .expect("produce_sync without a broker");
    let reports: Vec<_> = (0..3).map(|i| batch.report(i).expect("report")).collect();
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    assert_eq!(reports[0].partition, 4);
    assert_eq!(reports[0].timestamp_ms, 42);
    assert_eq!(reports[1].partition, 0);
    assert!(reports[0].offset < reports[1].offset && reports[1].offset < reports[2].offset, "{reports:?}");
    let batch = pool.with(None, |p| p.produce_async(&[Message::new("events", Some(b"z"))])).expect("produce_async");
    assert_eq!(batch.pending(), 0, "a synthetic report is immediate");
    assert!(batch.report(0).unwrap().offset > reports[2].offset);
    // Validation still applies.
    let e = pool.with(None, |p| p.produce_sync(&[Message::new("a b", Some(b"x"))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(started.elapsed() < Duration::from_secs(2), "deliver=false waited for something: {:?}", started.elapsed());
    let report = pool.close(false);
    assert_eq!(report.undelivered, 0);

    // Transactions work too (nothing to commit against).
    let pool = new_pool_with("127.0.0.1:1", 1, &[("transactional.id", "tx-nodeliver")], |c, _| {
        c.deliver = false;
        Ok(())
    });
    let done = pool
        .transaction(None, |p| {
            p.produce_sync(&[Message::new("events", Some(b"t"))])?;
            Ok(Completion::Commit)
        })
        .expect("transaction with deliver=false");
    assert_eq!(done, Completion::Commit);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Pointed at a real (mock) cluster, nothing reaches it.
    let (_cluster, topic, bootstrap) = cluster_with_topic("nodeliver", 2);
    let pool = new_pool_with(&bootstrap, 1, &[], |c, _| {
        c.deliver = false;
        Ok(())
    });
    let msgs: Vec<Message<'_>> = (0..5).map(|_| Message::new(&topic, Some(b"never"))).collect();
    pool.with(None, |p| p.produce_sync(&msgs)).expect("produce");
    pool.close(false);
    let records = consume_all(&bootstrap, &topic, 0, DEADLINE);
    assert!(records.is_empty(), "deliver=false sent {records:?}");
}
