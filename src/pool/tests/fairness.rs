//! Fairness: a checkout that waits is not starved by threads that keep
//! taking and giving back the producers in a tight loop.

use super::*;

/// `threads` threads loop `with` on the pool until told to stop; a checkout
/// from another thread must still get a producer within its timeout.
fn waiter_gets_a_turn(size: usize, threads: usize, keyed: bool) {
    let pool = new_pool(size);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Latch::new(threads + 1);
    let loops: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, stop, started) = (pool.clone(), Arc::clone(&stop), Arc::clone(&started));
            thread::spawn(move || {
                // Warm up: every looping thread has had a producer.
                pool.with(Some(LONG), |_| ()).unwrap();
                started.arrive_and_wait(LONG);
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    if keyed {
                        drop(pool.checkout_as(Owner::Key(t as u64 + 1), Some(LONG)).unwrap());
                    } else {
                        pool.with(Some(LONG), |_| ()).unwrap();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    started.arrive_and_wait(LONG);
    for round in 0..20 {
        let (result, _) = try_elsewhere(&pool, Some(Duration::from_secs(5)));
        assert!(result.is_ok(), "round {round}: a waiting checkout was starved: {:?}", result.err());
    }
    stop.store(true, SeqCst);
    for l in loops {
        assert!(l.join().unwrap() > 0);
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
}

#[test]
fn a_waiter_is_not_starved_by_a_thread_looping_with() {
    waiter_gets_a_turn(1, 1, false);
}

#[test]
fn a_waiter_is_not_starved_by_threads_looping_on_a_small_pool() {
    waiter_gets_a_turn(2, 4, false);
}

#[test]
fn a_waiter_is_not_starved_by_keyed_owners_looping() {
    waiter_gets_a_turn(2, 4, true);
}
