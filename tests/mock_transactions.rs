//! Transactions through the pool against librdkafka's mock cluster.
//!
//! The mock cluster writes no transaction markers and reports no aborted
//! transactions to fetchers (its Fetch handler sends LastStableOffset = end
//! and an empty aborted list), so a read_committed consumer sees every record
//! that reached the mock's log, committed or not. "Aborted, so nothing is
//! visible" is therefore checked here with messages that are still queued in
//! the producer when the transaction aborts (a long `linger.ms`): librdkafka's
//! abort purges them, so nothing reaches the broker. Invisibility of aborted
//! records that did reach a broker can only be checked against a real one.

mod common;

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};

use common::{consume_all, new_pool, new_pool_with, sorted_payloads, topic_name, EventLog};
use wdpool::error::{kafka_flags, Error, ErrorKind};
use wdpool::events::EventKind;
use wdpool::kafka::{Completion, Message};
use wdpool::producer_pool::ProducerPool;

const DEADLINE: Duration = Duration::from_secs(15);

type Cluster = MockCluster<'static, DefaultProducerContext>;

fn cluster_with_topic(test: &str) -> (Cluster, String, String) {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = topic_name(test);
    cluster.create_topic(&topic, 2, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    (cluster, topic, bootstrap)
}

/// A transactional pool: slot i gets `transactional.id` tx-{i}.
fn tx_pool(bootstrap: &str, size: usize, extra: &[(&str, &str)]) -> ProducerPool {
    let mut props = vec![("transaction.timeout.ms", "10000"), ("retry.backoff.ms", "20")];
    props.extend_from_slice(extra);
    new_pool_with(bootstrap, size, &props, |c, index| c.set_kafka("transactional.id", &format!("tx-{index}")))
}

fn msg<'a>(topic: &'a str, payload: &'a str) -> Message<'a> {
    Message::new(topic, Some(payload.as_bytes()))
}

fn strings(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn committed_transaction_is_visible_to_read_committed() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("commit");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 2, &[]);

    let (index, id) = pool
        .with(None, |p| Ok((p.index(), p.config().kafka("transactional.id").map(str::to_owned))))
        .unwrap();
    assert_eq!((index, id.as_deref()), (0, Some("tx-0")));

    let done = pool
        .transaction(None, |p| {
            assert!(p.in_transaction());
            p.produce_sync(&[msg(&topic, "c-1")])?;
            p.produce_async(&[msg(&topic, "c-2")])?;
            Ok(Completion::Commit)
        })
        .expect("commit");
    assert_eq!(done, Completion::Commit);
    assert_eq!(pool.stats().in_use, 0);

    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["c-1", "c-2"]));

    let kinds = log.kinds(pool.id());
    assert_eq!(
        kinds.iter().filter(|k| matches!(k, EventKind::TransactionStarted | EventKind::TransactionCommitted)).count(),
        2,
        "{kinds:?}"
    );
}

#[test]
fn failed_or_aborting_bodies_abort_and_nothing_is_visible() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("abort");
    let log = EventLog::subscribe();
    // Messages stay queued in the producer (linger) until commit flushes
    // them. librdkafka rejects every send (INVALID_ARG) when linger.ms is not
    // below message.timeout.ms, hence both.
    let pool = tx_pool(&bootstrap, 1, &[("message.timeout.ms", "9000"), ("linger.ms", "5000")]);

    // The body fails: aborted, the body's error comes back unchanged.
    let mut queued = None;
    let e = pool
        .transaction(None, |p| {
            queued = Some(p.produce_async(&[msg(&topic, "err-1"), msg(&topic, "err-2")])?);
            Err(Error::new(ErrorKind::CallbackFailed, "body failed"))
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::CallbackFailed);
    assert_eq!(e.message, "body failed");
    // The abort purged the queued messages; their reports say so.
    let batch = queued.unwrap();
    batch.wait(Duration::from_secs(5)).expect("purged messages are reported");
    let failure = batch.failure().expect("aborted messages are not delivered");
    assert_eq!(failure.kafka_code, RDKafkaErrorCode::PurgeQueue as i32, "{failure:?}");

    // The abort signal: aborted, and that is not an error.
    let done = pool
        .transaction(None, |p| {
            p.produce_async(&[msg(&topic, "abort-1")])?;
            Ok(Completion::Abort)
        })
        .expect("an abort signal is not an error");
    assert_eq!(done, Completion::Abort);

    // The same producer still commits.
    pool.transaction(None, |p| {
        p.produce_async(&[msg(&topic, "kept")])?;
        Ok(Completion::Commit)
    })
    .expect("commit after aborts");

    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["kept"]));
    let kinds: Vec<_> = log
        .for_pool(pool.id())
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::TransactionStarted | EventKind::TransactionCommitted | EventKind::TransactionAborted))
        .map(|e| (e.kind, e.slot))
        .collect();
    let (started, aborted, committed) =
        (EventKind::TransactionStarted, EventKind::TransactionAborted, EventKind::TransactionCommitted);
    assert_eq!(
        kinds,
        vec![
            (started, Some(0)),
            (aborted, Some(0)),
            (started, Some(0)),
            (aborted, Some(0)),
            (started, Some(0)),
            (committed, Some(0)),
        ]
    );
    assert_eq!(pool.stats().creations, 1);
}

#[test]
fn nested_transactions_run_inside_the_outer_one() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("nested");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[]);

    // Inner commits are part of the outer transaction.
    pool.transaction(None, |p| {
        p.produce_async(&[msg(&topic, "outer-1")])?;
        let inner = p.transaction(|| {
            p.produce_async(&[msg(&topic, "inner-1")])?;
            Ok(Completion::Commit)
        })?;
        assert_eq!(inner, Completion::Commit);
        assert!(p.in_transaction(), "the inner commit ended the outer transaction");
        // A nested pool.transaction on the same thread reuses this producer.
        pool.transaction(None, |q| {
            assert_eq!(q.index(), p.index());
            q.produce_async(&[msg(&topic, "inner-2")])?;
            Ok(Completion::Commit)
        })?;
        assert!(p.in_transaction());
        Ok(Completion::Commit)
    })
    .expect("nested commit");
    let started = log.count(pool.id(), EventKind::TransactionStarted);
    let committed = log.count(pool.id(), EventKind::TransactionCommitted);
    assert_eq!((started, committed), (1, 1), "nested transactions must not begin or commit on their own");

    // An abort requested at an inner level rolls the whole transaction back,
    // without an error (WaterDrop's AbortTransaction raised in a nested block).
    let done = pool
        .transaction(None, |p| {
            p.produce_async(&[msg(&topic, "doomed-outer")])?;
            let inner = p.transaction(|| {
                p.produce_async(&[msg(&topic, "doomed-inner")])?;
                Ok(Completion::Abort)
            })?;
            assert_eq!(inner, Completion::Abort);
            assert!(p.in_transaction());
            assert!(p.is_doomed(), "the outer transaction can only roll back now");
            Ok(Completion::Commit)
        })
        .expect("an abort request is no error");
    assert_eq!(done, Completion::Abort, "rolled back, not committed");

    // A failure at an inner level rolls it back and is reported, even when
    // the outer body carries on.
    let e = pool
        .transaction(None, |p| {
            let inner = p.transaction(|| Err(wdpool::error::Error::new(ErrorKind::CallbackFailed, "inner boom")));
            assert_eq!(inner.unwrap_err().message, "inner boom");
            p.produce_async(&[msg(&topic, "doomed-after-failure")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    assert!(e.message.contains("an inner transaction failed"), "{e}");

    // An early exit at an inner level rolls it back and is reported as such.
    let e = pool
        .transaction(None, |p| {
            p.begin_transaction()?;
            p.produce_async(&[msg(&topic, "doomed-exit")])?;
            assert_eq!(p.end_transaction(wdpool::kafka::Outcome::Exit)?, wdpool::kafka::Ended::LevelClosed);
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::EarlyExit, "{e:?}");

    // A transaction begun inside `with` and left open is aborted, and that is an error.
    let e = pool
        .with(None, |p| {
            p.begin_transaction()?;
            p.produce_async(&[msg(&topic, "left-open")])?;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    let open = pool.with(None, |p| Ok(p.in_transaction())).unwrap();
    assert!(!open, "the producer came back with a transaction open");

    let records = consume_all(&bootstrap, &topic, 3, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["inner-1", "inner-2", "outer-1"]));
}

#[test]
fn transaction_on_a_non_transactional_producer_is_an_error() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("nontx");
    let pool = new_pool(&bootstrap, 1, &[]);
    let mut ran = false;
    let e = pool
        .transaction(None, |p| {
            ran = true;
            p.produce_sync(&[msg(&topic, "never")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotTransactional, "{e:?}");
    assert!(!ran, "the body ran without a transaction");
    let e = pool.with(None, |p| p.begin_transaction()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotTransactional);
    assert_eq!(pool.stats().in_use, 0);
    pool.with(None, |p| p.produce_sync(&[msg(&topic, "plain")])).expect("plain produce");
    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["plain"]));
}

#[test]
fn produce_outside_a_transaction_gets_its_own_transaction() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("implicit");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[]);

    pool.with(None, |p| {
        assert!(!p.in_transaction());
        p.produce_sync(&[msg(&topic, "implicit-sync")])?;
        assert!(!p.in_transaction());
        // produce_async commits before returning, so it is delivered already.
        let batch = p.produce_async(&[msg(&topic, "implicit-async-1"), msg(&topic, "implicit-async-2")])?;
        assert_eq!(batch.pending(), 0, "a committed implicit transaction delivered everything");
        assert!(batch.failure().is_none());
        Ok(())
    })
    .expect("implicit transactions");

    // One transaction per call, the two-message call included.
    assert_eq!(log.count(pool.id(), EventKind::TransactionStarted), 2);
    assert_eq!(log.count(pool.id(), EventKind::TransactionCommitted), 2);

    // An invalid message: rejected, and the implicit transaction aborted.
    let e = pool.with(None, |p| p.produce_sync(&[msg(&topic, "x"), msg("a b", "y")])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidMessage);
    assert!(!pool.with(None, |p| Ok(p.in_transaction())).unwrap());

    let records = consume_all(&bootstrap, &topic, 3, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["implicit-async-1", "implicit-async-2", "implicit-sync"]));
}

/// EndTxn failing with COORDINATOR_LOAD_IN_PROGRESS: librdkafka retries the
/// request itself (without limit, with backoff) within the commit's
/// `max_wait_timeout`; a retriable error that comes back sooner is retried by
/// wdpool, which resumes the commit. Either way the transaction commits.
#[test]
fn retriable_errors_on_commit_still_commit() {
    let (cluster, topic, bootstrap) = cluster_with_topic("retriable");
    let pool = new_pool_with(
        &bootstrap,
        1,
        &[("transaction.timeout.ms", "10000"), ("retry.backoff.ms", "100"), ("retry.backoff.max.ms", "400")],
        |c, i| {
            // The second phase below needs about a second of librdkafka's
            // own retries, within the one budget of a commit.
            c.max_wait_timeout = Duration::from_millis(2500);
            c.set_kafka("transactional.id", &format!("tx-{i}"))
        },
    );
    pool.with(None, |_| Ok(())).expect("create the producer (init_transactions)");

    // Absorbed by librdkafka's own retries within one commit call.
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS],
    );
    pool.transaction(None, |p| {
        p.produce_sync(&[msg(&topic, "r-1")])?;
        Ok(Completion::Commit)
    })
    .expect("commit after one retriable EndTxn error");

    // Longer than one commit call: needs wdpool's retry of the call.
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
        ],
    );
    let started = Instant::now();
    pool.transaction(None, |p| {
        p.produce_sync(&[msg(&topic, "r-2")])?;
        Ok(Completion::Commit)
    })
    .expect("commit after four retriable EndTxn errors");
    let took = started.elapsed();
    assert!(took > Duration::from_millis(400), "the injected errors were not hit ({took:?})");
    assert_eq!(pool.stats().creations, 1, "a retriable error replaced the producer");

    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["r-1", "r-2"]));
}

/// A delivery failure inside a transaction makes it abortable: the commit
/// fails with txn_requires_abort, wdpool aborts and reports TransactionAborted.
///
/// Each step uses its own partition: after a message failed permanently on a
/// partition, the transactional producer's next message to that partition is
/// refused with OUT_OF_ORDER_SEQUENCE_NUMBER (librdkafka counted the failed
/// message's sequence number; the broker did not), which makes that next
/// transaction abortable too, until an epoch bump resets the sequences. The
/// UNKNOWN_PRODUCER_ID step bumps the epoch, so afterwards every partition
/// works again.
#[test]
fn abortable_errors_abort_and_the_pool_stays_usable() {
    let (cluster, topic, bootstrap) = cluster_with_topic("abortable");
    cluster.create_topic(&format!("{topic}-4"), 4, 1).expect("create topic");
    let topic = format!("{topic}-4");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[("linger.ms", "0")]);
    pool.with(None, |_| Ok(())).expect("create the producer (init_transactions)");
    let to = |partition: i32, payload: &'static str| {
        let mut m = msg(&topic, payload);
        m.partition = partition;
        m
    };

    // Produce fails permanently; the body does not wait, so the commit sees it.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    let e = pool
        .transaction(None, |p| {
            p.produce_async(&[to(0, "abortable-1")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageSizeTooLarge as i32, "{e:?}");
    // librdkafka's rd_kafka_error_t of the commit: abortable, nothing else.
    assert_eq!(e.kafka_flags, kafka_flags::TXN_REQUIRES_ABORT, "{e:?}");
    assert_eq!(pool.stats().in_use, 0);

    // The same with produce_sync in the body: the body sees the delivery
    // error and fails with it (returned as is); the transaction is aborted.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    let e = pool
        .transaction(None, |p| {
            p.produce_sync(&[to(1, "abortable-2")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Kafka, "{e:?}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageSizeTooLarge as i32, "{e:?}");
    // A delivery report's code alone: no flags (librdkafka retried already).
    assert_eq!(e.kafka_flags, 0, "{e:?}");

    // AddPartitionsToTxn refused: abortable; the message is never sent.
    cluster.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let e = pool
        .transaction(None, |p| {
            p.produce_async(&[to(3, "abortable-4")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::TopicAuthorizationFailed as i32, "{e:?}");
    assert_eq!(e.kafka_flags, kafka_flags::TXN_REQUIRES_ABORT, "{e:?}");

    // EndTxn failing with an error librdkafka treats as abortable (and that
    // needs an epoch bump, done by the abort).
    cluster.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID]);
    let e = pool
        .transaction(None, |p| {
            p.produce_sync(&[to(2, "abortable-3")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    assert_ne!(e.kafka_code, 0, "{e:?}");
    assert_ne!(e.kafka_flags & kafka_flags::TXN_REQUIRES_ABORT, 0, "{e:?}");
    assert_eq!(e.kafka_flags & kafka_flags::FATAL, 0, "{e:?}");

    // Still usable, on every partition. The two producers whose message the
    // broker refused (abortable-1, abortable-2) were replaced when checked
    // in (see `a_refused_message_costs_no_later_message`); the third one
    // lived through the AddPartitionsToTxn and EndTxn errors.
    pool.transaction(None, |p| {
        p.produce_sync(&[to(0, "after-0"), to(1, "after-1"), to(2, "after-2"), to(3, "after-3")])?;
        Ok(Completion::Commit)
    })
    .expect("commit after abortable errors");
    let stats = pool.stats();
    assert_eq!((stats.creations, stats.replaced, stats.in_use), (3, 2, 0), "{stats:?}");
    assert_eq!(log.count(pool.id(), EventKind::TransactionAborted), 4);
    assert_eq!(log.count(pool.id(), EventKind::TransactionCommitted), 1);

    // abortable-3 reached the mock's log before its EndTxn failed, and the
    // mock cannot hide aborted records; the others never got there.
    let records = consume_all(&bootstrap, &topic, 5, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["abortable-3", "after-0", "after-1", "after-2", "after-3"]));
}

/// A message the broker refuses for good (MSG_SIZE_TOO_LARGE) inside a
/// transaction: librdkafka 2.12 aborts without bumping the producer epoch,
/// so that partition's sequence numbers keep a gap and the next message to
/// it would be purged (PURGE_QUEUE) with its whole transaction. wdpool
/// replaces such a producer when it is checked in: the next transactions,
/// on the same slot, lose nothing. Inside the lease that saw the refusal,
/// the old producer is still in use: there the next transaction to that
/// partition fails, with a message that says why.
#[test]
fn a_refused_message_costs_no_later_message() {
    let (cluster, topic, bootstrap) = cluster_with_topic("refused-in-txn");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[("linger.ms", "0")]);
    pool.with(None, |_| Ok(())).expect("create the producer (init_transactions)");
    let to = |payload: &'static str| {
        let mut m = msg(&topic, payload);
        m.partition = 0;
        m
    };
    let refuse = || cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    let commit = |payload: &'static str| {
        pool.transaction(None, |p| {
            p.produce_sync(&[to(payload)])?;
            Ok(Completion::Commit)
        })
    };

    // Fire-and-forget in the body: the commit sees the refusal.
    refuse();
    let e = pool
        .transaction(None, |p| {
            p.produce_async(&[to("refused-1")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!((e.kind, e.kafka_code), (ErrorKind::TransactionAborted, RDKafkaErrorCode::MessageSizeTooLarge as i32), "{e:?}");
    let stats = pool.stats();
    assert_eq!((stats.creations, stats.replaced, stats.in_use), (1, 1, 0), "{stats:?}");
    assert_eq!(commit("after-1"), Ok(Completion::Commit), "the first message after the abort");
    assert_eq!(commit("after-2"), Ok(Completion::Commit));

    // produce_sync in the body: the body fails with the delivery error.
    refuse();
    let e = commit("refused-2").unwrap_err();
    assert_eq!((e.kind, e.kafka_code), (ErrorKind::Kafka, RDKafkaErrorCode::MessageSizeTooLarge as i32), "{e:?}");
    assert_eq!(commit("after-3"), Ok(Completion::Commit), "the first message after the second abort");

    // A produce outside a transaction gets one of its own: the same.
    refuse();
    let e = pool.with(None, |p| p.produce_sync(&[to("refused-3")])).unwrap_err();
    assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageSizeTooLarge as i32, "{e:?}");
    pool.with(None, |p| p.produce_sync(&[to("after-4")])).expect("the first message after the third abort");

    let stats = pool.stats();
    assert_eq!((stats.creations, stats.replaced, stats.in_use), (4, 3, 0), "{stats:?}");
    assert_eq!(pool.with(None, |p| Ok(p.index())), Ok(0), "the same slot");
    assert_eq!(log.count(pool.id(), EventKind::ProducerReplaced), 3);

    // Within the lease that saw the refusal, the producer is not replaced
    // yet: its next transaction to the partition fails (purged, as
    // librdkafka bumps the epoch then), saying why; the one after commits.
    refuse();
    pool.with(None, |p| {
        let e = p
            .transaction(|| {
                p.produce_async(&[to("refused-4")])?;
                Ok(Completion::Commit)
            })
            .unwrap_err();
        assert_eq!(e.kafka_code, RDKafkaErrorCode::MessageSizeTooLarge as i32, "{e:?}");
        let e = p
            .transaction(|| {
                p.produce_sync(&[to("purged")])?;
                Ok(Completion::Commit)
            })
            .unwrap_err();
        assert_eq!((e.kind, e.kafka_code), (ErrorKind::Kafka, RDKafkaErrorCode::PurgeQueue as i32), "{e:?}");
        assert!(e.message.contains("refused by the broker earlier") && e.message.contains("replaced when it is checked in"), "{e}");
        p.transaction(|| {
            p.produce_sync(&[to("after-5")])?;
            Ok(Completion::Commit)
        })
    })
    .expect("the transaction after the purged one");
    let stats = pool.stats();
    assert_eq!((stats.creations, stats.replaced, stats.in_use), (4, 4, 0), "{stats:?}");

    // The mock cannot hide aborted records, and none of the refused or
    // purged ones reached its log.
    let records = consume_all(&bootstrap, &topic, 5, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["after-1", "after-2", "after-3", "after-4", "after-5"]));
}

/// A fatal transactional error (INVALID_TXN_STATE on EndTxn) breaks the
/// producer: the call fails with Fatal, and the slot gets a fresh producer
/// (same index, same transactional.id) that works.
#[test]
fn fatal_errors_replace_the_producer() {
    let (cluster, topic, bootstrap) = cluster_with_topic("fatal");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[]);
    pool.with(None, |_| Ok(())).expect("create the producer (init_transactions)");

    cluster.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE]);
    let e = pool
        .transaction(None, |p| {
            p.produce_sync(&[msg(&topic, "fatal-1")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fatal, "{e:?}");
    assert_ne!(e.kafka_code, 0, "{e:?}");
    assert_ne!(e.kafka_flags & kafka_flags::FATAL, 0, "{e:?}");
    let stats = pool.stats();
    assert_eq!((stats.replaced, stats.in_use), (1, 0), "{stats:?}");
    let replaced: Vec<_> = log.for_pool(pool.id()).into_iter().filter(|e| e.kind == EventKind::ProducerReplaced).collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].slot, Some(0));

    let index = pool
        .transaction(None, |p| {
            p.produce_sync(&[msg(&topic, "fresh")])?;
            assert_eq!(p.config().kafka("transactional.id"), Some("tx-0"));
            Ok(Completion::Commit)
        })
        .map(|_| ())
        .and_then(|()| pool.with(None, |p| Ok(p.index())))
        .expect("a fresh producer commits");
    assert_eq!(index, 0);
    assert_eq!(pool.stats().creations, 2);
    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert!(sorted_payloads(&records).contains(&"fresh".to_owned()));
}

/// A transactional producer whose creation (init_transactions) cannot reach
/// a coordinator: the checkout fails, bounded, the slot stays empty, and a
/// later checkout creates a working producer.
///
/// The bound is wdpool's: init_transactions gets `max_wait_timeout` in all,
/// shared by its attempts (a retriable _TIMED_OUT is retried, at most
/// TXN_ATTEMPTS = 5 times).
#[test]
fn init_transactions_against_down_brokers_fails_and_the_slot_recovers() {
    let (cluster, topic, bootstrap) = cluster_with_topic("init-down");
    for id in [1, 2, 3] {
        cluster.broker_down(id).expect("broker_down");
    }
    let pool = new_pool_with(
        &bootstrap,
        1,
        &[("transaction.timeout.ms", "10000"), ("reconnect.backoff.max.ms", "200")],
        |c, i| {
            c.max_wait_timeout = Duration::from_millis(300);
            c.set_kafka("transactional.id", &format!("tx-{i}"))
        },
    );
    let started = Instant::now();
    let e = pool.with(None, |_| Ok(())).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind, ErrorKind::Kafka, "{e:?}");
    assert_eq!(e.kafka_code, RDKafkaErrorCode::OperationTimedOut as i32, "{e:?}");
    assert!(took < Duration::from_secs(5), "init_transactions against down brokers took {took:?}");
    let stats = pool.stats();
    assert_eq!((stats.created, stats.in_use, stats.creations), (0, 0, 0), "{stats:?}");

    for id in [1, 2, 3] {
        cluster.broker_up(id).expect("broker_up");
    }
    let until = Instant::now() + DEADLINE;
    loop {
        let r = pool.transaction(None, |p| {
            p.produce_sync(&[msg(&topic, "recovered")])?;
            Ok(Completion::Commit)
        });
        match r {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < until, "the slot never recovered: {e:?}"),
        }
    }
    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["recovered"]));
}

/// EndTxn keeps failing with a retriable error for longer than wdpool's
/// bounded retries of commit_transaction: that transaction fails. Once the
/// coordinator is healthy, the next transaction on the pool must work.
///
/// Today it does not: librdkafka keeps the commit "in progress" (only another
/// commit_transaction call can resume it), wdpool resets its depth and returns
/// the producer to the pool unbroken, and every later begin_transaction on it
/// fails with _CONFLICT ("Conflicting commit_transaction API call is already
/// in progress"), which librdkafka flags retriable, so wdpool retries it 5
/// times and returns ErrorKind::Kafka; the producer is never replaced.
#[test]
fn commit_with_retries_exhausted_does_not_wedge_the_slot() {
    let (cluster, topic, bootstrap) = cluster_with_topic("exhausted");
    let pool = new_pool_with(&bootstrap, 1, &[("transaction.timeout.ms", "10000")], |c, i| {
        // Enough for init_transactions, far too little for 40 EndTxn retries.
        c.max_wait_timeout = Duration::from_millis(1000);
        c.set_kafka("transactional.id", &format!("tx-{i}"))
    });
    pool.with(None, |_| Ok(())).expect("create the producer (init_transactions)");

    cluster.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 40]);
    let e = pool
        .transaction(None, |p| {
            p.produce_sync(&[msg(&topic, "unknown-outcome")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_eq!(e.kafka_code, RDKafkaErrorCode::OperationTimedOut as i32, "{e:?}");
    assert_eq!(e.kind, ErrorKind::Fatal, "a wedged producer is replaced: {e:?}");
    cluster.clear_request_errors(RDKafkaApiKey::EndTxn);

    pool.transaction(None, |p| {
        p.produce_sync(&[msg(&topic, "next")])?;
        Ok(Completion::Commit)
    })
    .expect("the next transaction after a commit that ran out of retries");
    assert_eq!(pool.stats().in_use, 0);
    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert!(sorted_payloads(&records).contains(&"next".to_owned()));
}

/// A message librdkafka refuses to enqueue (here: a partition the topic does
/// not have) inside a transaction must not let the transaction commit the
/// rest. WaterDrop's produce_async raises on such an error, so its
/// transaction block aborts.
///
#[test]
fn enqueue_failure_inside_a_transaction_does_not_commit_the_rest() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("enqueue-failure");
    let pool = tx_pool(&bootstrap, 1, &[("message.timeout.ms", "9000"), ("linger.ms", "5000")]);
    // Learn the topic's partitions first so the bad partition fails at once.
    pool.with(None, |p| p.produce_sync(&[msg(&topic, "warm")])).expect("warm-up");

    let mut bad = msg(&topic, "bad-partition");
    bad.partition = 99;
    let r = pool.transaction(None, |p| {
        p.produce_async(&[msg(&topic, "good"), bad.clone()])?;
        Ok(Completion::Commit)
    });
    assert!(r.is_err(), "a transaction with a refused message committed: {r:?}");
    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["warm"]));
}

/// Fencing cannot happen on the mock (it never fences an older producer with
/// the same transactional.id), but a Produce answered with
/// INVALID_PRODUCER_EPOCH is what a fenced transactional producer sees, and
/// librdkafka turns it into the fatal _FENCED error: the transaction fails,
/// the producer is replaced, the slot keeps its index and transactional.id.
#[test]
fn a_fenced_producer_is_replaced() {
    let (cluster, topic, bootstrap) = cluster_with_topic("fenced");
    let pool = tx_pool(&bootstrap, 1, &[]);
    pool.with(None, |p| p.produce_sync(&[msg(&topic, "before")])).expect("warm-up (implicit transaction)");

    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH]);
    let e = pool
        .transaction(None, |p| {
            p.produce_sync(&[msg(&topic, "fenced")])?;
            Ok(Completion::Commit)
        })
        .unwrap_err();
    assert_ne!(e.kafka_code, 0, "{e:?}");
    let stats = pool.stats();
    assert_eq!((stats.replaced, stats.in_use), (1, 0), "{stats:?}");

    let (index, id) = pool
        .with(None, |p| {
            p.produce_sync(&[msg(&topic, "after")])?;
            Ok((p.index(), p.config().kafka("transactional.id").map(str::to_owned)))
        })
        .expect("the replacement produces");
    assert_eq!((index, id.as_deref()), (0, Some("tx-0")));
    assert_eq!(pool.stats().creations, 2);
    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["after", "before"]));
}

/// The explicit calls on a leased producer, and a body that panics.
#[test]
fn explicit_begin_commit_abort_and_a_panicking_body() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("explicit");
    let pool = tx_pool(&bootstrap, 1, &[("message.timeout.ms", "9000"), ("linger.ms", "5000")]);

    pool.with(None, |p| {
        let e = p.commit_transaction().unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "commit without begin: {e:?}");
        p.begin_transaction()?;
        p.produce_async(&[msg(&topic, "explicit-commit")])?;
        p.commit_transaction()?;
        assert!(!p.in_transaction());
        p.begin_transaction()?;
        p.produce_async(&[msg(&topic, "explicit-abort")])?;
        p.abort_transaction()?;
        assert!(!p.in_transaction());
        Ok(())
    })
    .expect("explicit calls");

    // A panic inside the body: the transaction is aborted, the producer goes
    // back to the pool, and the panic reaches the caller.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = pool.transaction(None, |p| {
            p.produce_async(&[msg(&topic, "panicked")])?;
            panic!("body panics");
        });
    }));
    assert!(panicked.is_err());
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.idle, stats.replaced), (0, 1, 0), "{stats:?}");
    assert!(!pool.with(None, |p| Ok(p.in_transaction())).unwrap(), "the panic left a transaction open");

    pool.transaction(None, |p| {
        p.produce_async(&[msg(&topic, "after-panic")])?;
        Ok(Completion::Commit)
    })
    .expect("commit after a panic");
    let records = consume_all(&bootstrap, &topic, 2, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["after-panic", "explicit-commit"]));
}

/// A transaction belongs to its owner: another thread sharing a thread's
/// lease does not join it (it waits for it to end), and a transaction that
/// thread left open is rolled back when the lease ends.
#[test]
fn another_thread_sharing_a_lease_never_joins_its_transaction() {
    let (_cluster, topic, bootstrap) = cluster_with_topic("owners");
    let log = EventLog::subscribe();
    let pool = tx_pool(&bootstrap, 1, &[]);

    let e = pool
        .with(None, |p| {
            p.begin_transaction()?;
            p.produce_async(&[msg(&topic, "owner")])?;
            let (depth_there, ended_there) = std::thread::scope(|s| {
                s.spawn(|| {
                    // Not the owner: a nested level would be depth 2.
                    let depth = p.depth_of(p.owner().acting());
                    let ended = p.commit_transaction().map_err(|e| e.kind);
                    (depth, ended)
                })
                .join()
                .unwrap()
            });
            assert_eq!(depth_there, 0, "another thread sees no transaction of its own");
            assert_eq!(ended_there, Err(ErrorKind::InvalidArgument), "it cannot end the owner's transaction");
            p.commit_transaction()?;

            // Another thread's transaction, left open on the shared lease...
            std::thread::scope(|s| s.spawn(|| p.begin_transaction()).join().unwrap())?;
            assert!(p.in_transaction());
            assert_eq!(p.depth_of(p.owner().acting()), 0, "...is not the owner's");
            Ok(())
        })
        .unwrap_err();
    // ...and is rolled back when the lease ends.
    assert_eq!(e.kind, ErrorKind::TransactionAborted, "{e:?}");
    assert!(!pool.with(None, |p| Ok(p.in_transaction())).unwrap());
    assert_eq!(log.count(pool.id(), EventKind::TransactionCommitted), 1);
    let records = consume_all(&bootstrap, &topic, 1, DEADLINE);
    assert_eq!(sorted_payloads(&records), strings(&["owner"]));
}
