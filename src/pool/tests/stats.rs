//! Stats.

use super::*;

#[test]
fn stats_track_the_pool() {
    let pool = new_pool(3);
    assert_eq!(pool.stats(), Stats { size: 3, ..Stats::default() });

    let a = checkout_elsewhere(&pool);
    let b = checkout_elsewhere(&pool);
    drop(a);
    let s = pool.stats();
    assert_eq!(
        s,
        Stats { size: 3, created: 2, idle: 1, in_use: 1, creations: 2, ..Stats::default() },
        "{s:?}"
    );

    // Two waiters on a full pool.
    let c = checkout_elsewhere(&pool);
    let d = checkout_elsewhere(&pool);
    assert_eq!(pool.stats().in_use, 3);
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (p, tx) = (pool.clone(), tx.clone());
            thread::spawn(move || {
                let _ = tx.send(p.checkout(Some(WAIT_FOREVER)).map(|l| l.index()).map_err(|e| e.to_string()));
            })
        })
        .collect();
    wait_for_waiters(&pool, 2);
    assert_eq!(pool.stats().waiting, 2);
    drop(b);
    drop(c);
    for _ in 0..2 {
        rx.recv_timeout(LONG).expect("a waiter was not woken").expect("checkout");
    }
    for w in waiters {
        w.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.waiting, s.in_use, s.idle, s.created, s.creations), (0, 1, 2, 3, 3), "{s:?}");
    assert!(s.total_wait > Duration::ZERO);

    d.broken.store(true, SeqCst);
    drop(d);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.created, s.creations, s.replaced), (0, 2, 2, 3, 1), "{s:?}");

    pool.close(false);
    let s = pool.stats();
    assert_eq!((s.closed, s.created, s.idle, s.in_use), (true, 0, 0, 0));
    assert_eq!((s.creations, s.replaced), (3, 1), "lifetime counters survive close");
}
