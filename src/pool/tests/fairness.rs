//! Fairness: a checkout that waits is not starved by threads that keep
//! taking and giving back the producers in a tight loop.

use super::*;

/// `threads` threads loop `with` on the pool until told to stop; a checkout
/// from another thread must still get a producer within its timeout.
fn waiter_gets_a_turn(size: usize, threads: usize, keyed: bool) {
    let pool = new_pool(size);
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..threads).map(|_| AtomicUsize::new(0)).collect());
    let loops: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, stop, counts) = (pool.clone(), Arc::clone(&stop), Arc::clone(&counts));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    if keyed {
                        drop(pool.checkout_as(Owner::Key(t as u64 + 1), Some(LONG)).unwrap());
                    } else {
                        pool.with(Some(LONG), |_| ()).unwrap();
                    }
                    counts[t].fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    // The waiter comes only once every looping thread is looping (each has
    // been through the pool a few times), so that it competes with all.
    wait_until("every looping thread to loop", || counts.iter().all(|c| c.load(SeqCst) >= 3));
    for round in 0..20 {
        let (result, _) = try_elsewhere(&pool, Some(Duration::from_secs(5)));
        assert!(result.is_ok(), "round {round}: a waiting checkout was starved: {:?}", result.err());
    }
    stop.store(true, SeqCst);
    for l in loops {
        l.join().expect("a looping thread panicked");
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

/// Waiters that give up (short timeouts) among waiters that do not: the
/// patient ones always get a producer, and the pool is whole after.
#[test]
fn waiters_giving_up_never_strand_a_slot() {
    const THREADS: usize = 6;
    let pool = new_pool(2);
    hammer(&pool, THREADS, |t, pool| {
        for i in 0..400u64 {
            let owner = if t % 2 == 0 { Owner::Thread } else { Owner::Key(t as u64 + 1) };
            let impatient = (i + t as u64) % 3 == 0;
            let timeout = if impatient { Duration::from_micros(500 + 500 * (i % 5)) } else { LONG };
            match pool.checkout_as(owner, Some(timeout)) {
                Ok(lease) => {
                    for _ in 0..(i % 4) {
                        thread::yield_now();
                    }
                    drop(lease);
                }
                Err(e) if impatient => assert!(matches!(e, CheckoutError::Timeout { .. }), "{e:?}"),
                Err(e) => panic!("a patient checkout failed: {e:?}"),
            }
        }
    });
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    let a = pool.try_checkout_as(Owner::Key(100)).unwrap().expect("a slot was stranded");
    let b = pool.try_checkout_as(Owner::Key(101)).unwrap().expect("a slot was stranded");
    assert_ne!(a.index(), b.index());
}

/// Threads that hold each slot for a while (a produce backing off on a full
/// queue) and take it again at once: a waiter, woken at every return, finds
/// the slot retaken before it runs. It must still get one well within its
/// timeout: once it has waited a while, returned slots are left to it.
#[test]
fn a_waiter_is_not_starved_by_holders_that_take_again_at_once() {
    let pool = pool_with(2, LONG);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2u64)
        .map(|t| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let lease = pool.checkout_as(Owner::Key(t + 1), Some(LONG)).unwrap();
                    // Busy for 300 µs with the slot held.
                    let until = Instant::now() + Duration::from_micros(300);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    drop(lease);
                }
            })
        })
        .collect();
    wait_until("both holders to hold", || pool.stats().in_use == 2);
    let timeout = Duration::from_secs(4);
    for round in 0..5 {
        let (result, took) = try_elsewhere(&pool, Some(timeout));
        assert!(result.is_ok(), "round {round}: starved for {took:?}: {:?}", result.err());
        assert!(took < timeout / 2 + Duration::from_millis(500), "round {round}: waited {took:?}");
    }
    stop.store(true, SeqCst);
    for l in loops {
        l.join().expect("a holder panicked");
    }
}

/// The Go binding's pattern: more callers than slots, each a fresh owner
/// checking out and in again at once, none parked on its own slot. A
/// sleeper woken at each checkin finds the slot taken again by a caller
/// that was running; without starving waiters first, one of them has
/// waited out a whole timeout now and then. No checkout may time out.
#[test]
fn fresh_owners_looping_never_starve_one_of_them() {
    const THREADS: usize = 4;
    let pool = pool_with(2, LONG);
    let timeouts = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(800);
    let counter = Arc::new(AtomicU64::new(1));
    let (timeouts2, worst2, counter2) = (Arc::clone(&timeouts), Arc::clone(&worst), Arc::clone(&counter));
    hammer(&pool, THREADS, move |_, pool| {
        while Instant::now() < deadline {
            for _ in 0..1000 {
                let key = counter2.fetch_add(1, SeqCst);
                let started = Instant::now();
                match pool.checkout_as(Owner::Key(key), Some(Duration::from_millis(500))) {
                    Ok(lease) => drop(lease),
                    Err(CheckoutError::Timeout { .. }) => {
                        timeouts2.fetch_add(1, SeqCst);
                    }
                    Err(e) => panic!("{e:?}"),
                }
                worst2.fetch_max(started.elapsed().as_micros() as u64, SeqCst);
            }
        }
    });
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert_eq!(
        timeouts.load(SeqCst),
        0,
        "checkouts timed out after 500 ms; worst wait {} µs, {} checkouts",
        worst.load(SeqCst),
        counter.load(SeqCst)
    );
}

/// Once a waiter has waited a quarter of its timeout (here 100 ms of 400),
/// a slot given back is its own: a caller arriving at that moment does not
/// take it first, even a caller that never waits.
#[test]
fn a_starving_waiter_gets_the_next_slot_before_any_newcomer() {
    let pool = new_pool(1);
    let held = pool.checkout_as(Owner::Key(1), None).unwrap();
    let (tx, rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let got = p.checkout_as(Owner::Key(2), Some(Duration::from_millis(400)));
        let _ = tx.send(got.as_ref().map(|l| l.index()).map_err(|e| e.to_string()));
        // Held until the newcomer has tried.
        let _ = release_rx.recv_timeout(LONG);
        drop(got);
    });
    wait_for_waiters(&pool, 1);
    // Its first quarter, then a wake that gives it nothing: it turns
    // starving (a waiter checks when something wakes it).
    let since = Instant::now();
    while since.elapsed() < Duration::from_millis(110) {
        thread::park_timeout(Duration::from_millis(110) - since.elapsed().min(Duration::from_millis(110)));
    }
    {
        let inner = &pool.inner;
        let mut state = inner.lock();
        inner.changed(&mut state);
        drop(state);
        inner.wake(&inner.freed, true);
    }
    wait_until("the waiter to turn starving", || pool.inner.lock().starving == 1);
    drop(held);
    // At once, before the woken waiter runs (or after: either way not
    // this caller's).
    let newcomer = pool.try_checkout_as(Owner::Key(3)).unwrap();
    assert!(newcomer.is_none(), "a newcomer took the slot a starving waiter waited for");
    let got = rx.recv_timeout(LONG).expect("the waiter did not finish");
    assert_eq!(got, Ok(0), "the starving waiter got the slot");
    release_tx.send(()).unwrap();
    waiter.join().unwrap();
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting, s.checkout_timeouts), (0, 0, 0), "{s:?}");
    assert_eq!(pool.inner.lock().starving, 0);
}
