//! Timeouts.

use super::*;

#[test]
fn checkout_times_out_when_everything_is_in_use() {
    let pool = new_pool(1);
    let held = pool.checkout(None).unwrap();

    let (result, elapsed) = try_elsewhere(&pool, Some(Duration::from_millis(50)));
    let err = result.expect_err("the only connection is held");
    let (waited, available, size) = expect_timeout(&err);
    assert!(waited >= Duration::from_millis(50), "waited only {waited:?}");
    assert!(waited < LONG, "waited {waited:?}");
    assert_eq!((available, size), (0, 1));
    assert!(elapsed >= Duration::from_millis(50) && elapsed < LONG, "took {elapsed:?}");

    let msg = err.to_string();
    let ms = msg
        .strip_prefix("no producer available: waited ")
        .and_then(|rest| rest.strip_suffix(" ms, 0/1 available"))
        .unwrap_or_else(|| panic!("unexpected message {msg:?}"));
    assert!(ms.parse::<u64>().expect("a number of ms") >= 50, "{msg}");
    assert_eq!(ms, waited.as_millis().to_string());

    let s = pool.stats();
    assert_eq!(s.checkout_timeouts, 1);
    assert!(s.total_wait >= Duration::from_millis(50), "total_wait {:?}", s.total_wait);
    assert_eq!((s.waiting, s.in_use, s.idle), (0, 1, 0));
    assert_eq!(pool.manager().events(), vec![PoolEvent::CheckoutTimeout { waited, available: 0, size: 1 }]);
    drop(held);
    assert_eq!(pool.stats().idle, 1);
}

#[test]
fn per_call_timeout_overrides_the_pool_default() {
    // A long default, a short per-call timeout.
    let pool = pool_with(1, LONG);
    let _held = pool.checkout(None).unwrap();
    let (result, elapsed) = try_elsewhere(&pool, Some(Duration::from_millis(30)));
    let (waited, _, _) = expect_timeout(&result.expect_err("held"));
    assert!(waited >= Duration::from_millis(30));
    assert!(elapsed < Duration::from_secs(5), "the 10 s default was used: {elapsed:?}");

    // A short default is what `None` uses.
    let pool = pool_with(1, Duration::from_millis(40));
    let _held = pool.checkout(None).unwrap();
    let (result, elapsed) = try_elsewhere(&pool, None);
    let (waited, _, _) = expect_timeout(&result.expect_err("held"));
    assert!(waited >= Duration::from_millis(40));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(pool.stats().checkout_timeouts, 1);

    // A long per-call timeout outlives a short default.
    let pool = pool_with(1, Duration::from_millis(40));
    let held = pool.checkout(None).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()));
    });
    wait_for_waiters(&pool, 1);
    let since = Instant::now();
    // Not a sleep for a condition: the condition *is* that time passes while
    // the waiter keeps waiting.
    wait_until("200 ms to pass", || since.elapsed() >= Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "the waiter gave up at the pool default");
    assert_eq!(pool.stats().waiting, 1);
    assert_eq!(pool.stats().checkout_timeouts, 0);
    drop(held);
    assert_eq!(rx.recv_timeout(LONG).expect("woken").expect("checked out"), 0);
    waiter.join().unwrap();
}

#[test]
fn zero_timeout_fails_at_once_when_nothing_is_free() {
    let pool = new_pool(2);
    // A free (empty or idle) slot is handed out even with a zero timeout.
    let a = pool.checkout(Some(ZERO)).expect("an empty slot is free");
    let b = checkout_elsewhere(&pool);
    let (result, elapsed) = try_elsewhere(&pool, Some(ZERO));
    let err = result.expect_err("both held");
    let (waited, available, size) = expect_timeout(&err);
    assert_eq!((available, size), (0, 2));
    assert!(waited < Duration::from_millis(100), "{waited:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(err.to_string().ends_with(", 0/2 available"), "{err}");
    assert_eq!(pool.stats().checkout_timeouts, 1);
    assert_eq!(pool.manager().events().len(), 1);
    drop(b);
    drop(a);
    let idle = checkout_elsewhere(&pool);
    let parked = checkout_elsewhere(&pool);
    assert_eq!(
        (idle.index(), parked.index()),
        (1, 0),
        "idle slots are handed out with a zero timeout, another thread's parked one last"
    );
}
