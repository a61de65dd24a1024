//! wdpool's events, against librdkafka's mock cluster.
//!
//! Events are process-wide and `drain` dispatches every queued event on the
//! calling thread, so this binary holds one test only: nothing else drains
//! (or produces events) while it checks which thread each event came on.

mod common;

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use common::{consume_all, new_pool, new_pool_with, sorted_payloads, topic_name, EventLog};
use wdpool::error::{Error, ErrorKind};
use wdpool::events::{self, EventKind};
use wdpool::kafka::{Completion, Message};
use wdpool::pool::Options;
use wdpool::producer_pool::ProducerPool;

#[test]
fn events_name_the_pool_and_slot_and_library_events_come_only_through_drain() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = topic_name("events");
    cluster.create_topic(&topic, 1, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let me = std::thread::current().id();
    let log = EventLog::subscribe();

    // created, with size and timeout, on this thread.
    let pool = ProducerPool::new(
        Options { size: 2, timeout: Duration::from_millis(1500) },
        |c, index| {
            c.set_kafka("bootstrap.servers", &bootstrap)?;
            c.set_kafka("transactional.id", &format!("tx-{index}"))?;
            c.max_wait_timeout = Duration::from_secs(10);
            Ok(())
        },
        false,
    )
    .expect("pool");
    let created = log.with_threads(pool.id());
    assert_eq!(created.len(), 1, "{created:?}");
    let (e, thread) = &created[0];
    assert_eq!(e.kind, EventKind::Created);
    assert_eq!((e.size, e.timeout_ms, e.global), (2, 1500, false));
    assert_eq!(*thread, me);

    // Transactions on slot 0 (this thread) ...
    pool.transaction(None, |p| {
        p.produce_sync(&[Message::new(&topic, Some(b"committed"))])?;
        Ok(Completion::Commit)
    })
    .expect("commit");
    let _ = pool.transaction(None, |_| Err::<Completion, _>(Error::new(ErrorKind::CallbackFailed, "no")));
    // ... and on slot 1, from another thread while slot 0 is held here.
    let other = pool
        .with(None, |held| {
            assert_eq!(held.index(), 0);
            std::thread::scope(|s| {
                s.spawn(|| {
                    pool.transaction(None, |p| {
                        assert_eq!(p.index(), 1);
                        Ok(Completion::Abort)
                    })
                    .expect("abort signal");
                    std::thread::current().id()
                })
                .join()
                .expect("other thread")
            });
            Ok(std::thread::current().id())
        })
        .expect("with");
    assert_eq!(other, me);
    let txn: Vec<_> = log
        .with_threads(pool.id())
        .into_iter()
        .filter(|(e, _)| matches!(e.kind, EventKind::TransactionStarted | EventKind::TransactionCommitted | EventKind::TransactionAborted))
        .map(|(e, t)| (e.kind, e.slot, e.producer_id.is_some(), t == me))
        .collect();
    assert_eq!(
        txn,
        vec![
            (EventKind::TransactionStarted, Some(0), true, true),
            (EventKind::TransactionCommitted, Some(0), true, true),
            (EventKind::TransactionStarted, Some(0), true, true),
            (EventKind::TransactionAborted, Some(0), true, true),
            (EventKind::TransactionStarted, Some(1), true, false),
            (EventKind::TransactionAborted, Some(1), true, false),
        ]
    );

    // A checkout timeout says how long and how many were free.
    let lease = pool.checkout(None).expect("checkout slot");
    std::thread::scope(|s| {
        s.spawn(|| {
            let _other = pool.checkout(None).expect("second slot");
            std::thread::scope(|s2| {
                s2.spawn(|| {
                    let e = pool.checkout(Some(Duration::from_millis(100))).err().expect("timeout");
                    assert_eq!(e.kind, ErrorKind::Timeout);
                    assert!(e.message.contains("0/2"), "{}", e.message);
                });
            });
        });
    });
    drop(lease);
    let timeouts: Vec<_> = log.for_pool(pool.id()).into_iter().filter(|e| e.kind == EventKind::CheckoutTimeout).collect();
    assert_eq!(timeouts.len(), 1, "{timeouts:?}");
    assert!(timeouts[0].waited_ms >= 100 && timeouts[0].available == 0, "{:?}", timeouts[0]);

    // reload, then reloaded; shutdown once, with what was not delivered.
    assert_eq!(pool.reload().expect("reload"), 0);
    pool.close(false);
    pool.close(false);
    let tail: Vec<_> = log
        .for_pool(pool.id())
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Reload | EventKind::Reloaded | EventKind::Shutdown))
        .map(|e| (e.kind, e.size, e.undelivered))
        .collect();
    assert_eq!(tail, vec![(EventKind::Reload, 2, 0), (EventKind::Reloaded, 2, 0), (EventKind::Shutdown, 2, 0)]);
    assert_eq!(sorted_payloads(&consume_all(&bootstrap, &topic, 1, Duration::from_secs(15))), vec!["committed".to_owned()]);

    // Statistics are born on librdkafka's threads: queued, never dispatched
    // there, and delivered on the thread that calls drain.
    let stats_pool = new_pool(&bootstrap, 1, &[("statistics.interval.ms", "100")]);
    stats_pool.with(None, |p| p.produce_sync(&[Message::new(&topic, Some(b"stats"))])).expect("produce");
    let until = Instant::now() + Duration::from_secs(10);
    while events::queue_stats().queued == 0 {
        assert!(Instant::now() < until, "no statistics queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log.count(stats_pool.id(), EventKind::Statistics), 0, "a statistics event was dispatched without drain");
    while log.count(stats_pool.id(), EventKind::Statistics) == 0 {
        assert!(Instant::now() < until, "drain never delivered statistics");
        events::drain(Duration::from_secs(5), 100);
    }
    for (e, thread) in log.with_threads(stats_pool.id()) {
        assert_eq!(thread, me, "{:?} dispatched on another thread", e.kind);
        if e.kind == EventKind::Statistics {
            assert_eq!(e.slot, Some(0));
            assert!(e.message.starts_with('{') && e.message.contains("\"type\""), "not librdkafka's JSON: {}", e.message);
        }
    }

    // Errors from librdkafka's threads (a broker that refuses connections)
    // take the same road.
    let error_pool = new_pool_with("127.0.0.1:1", 1, &[("message.timeout.ms", "1000")], |_, _| Ok(()));
    let batch = error_pool.with(None, |p| p.produce_async(&[Message::new(&topic, Some(b"nowhere"))])).expect("enqueue");
    let until = Instant::now() + Duration::from_secs(10);
    while log.count(error_pool.id(), EventKind::Error) == 0 {
        assert!(Instant::now() < until, "no error event drained");
        events::drain(Duration::from_millis(500), 100);
    }
    for (e, thread) in log.with_threads(error_pool.id()) {
        assert_eq!(thread, me, "{:?} dispatched on another thread", e.kind);
        if e.kind == EventKind::Error {
            assert_ne!(e.error_code, 0, "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
    batch.wait(Duration::from_secs(5)).expect("the unreachable message times out");
    assert!(batch.failure().is_some());
    error_pool.close(true);
    stats_pool.close(false);

    assert_eq!(log.count(stats_pool.id(), EventKind::Shutdown), 1);

    // Unsubscribing leaves nobody listening (this binary has no other subscriber).
    drop(log);
    assert!(!events::has_subscribers(), "the log did not unsubscribe");
}
