//! Concurrency.

use super::*;

#[test]
fn concurrent_checkouts_are_exclusive() {
    const SIZE: usize = 4;
    const THREADS: usize = 16;
    const ITERS: usize = 500;
    let pool = new_pool(SIZE);
    // Make sure every slot gets created, deterministically: SIZE threads each
    // hold a lease until all SIZE are out.
    let warm = Latch::new(SIZE);
    let in_use: Arc<Vec<AtomicBool>> = Arc::new((0..SIZE).map(|_| AtomicBool::new(false)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let (flags, bad, warm2) = (Arc::clone(&in_use), Arc::clone(&violations), Arc::clone(&warm));
    hammer(&pool, THREADS, move |t, pool| {
        for i in 0..ITERS {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            let index = lease.index();
            if index >= SIZE || lease.conn().index != index || lease.closed.load(SeqCst) {
                bad.fetch_add(1, SeqCst);
                continue;
            }
            if flags[index].swap(true, SeqCst) {
                bad.fetch_add(1, SeqCst); // somebody else holds this slot
            }
            if i == 0 && t < SIZE && !warm2.arrive_and_wait(LONG) {
                bad.fetch_add(1, SeqCst);
            }
            if i % 7 == 0 {
                let nested = pool.checkout(Some(ZERO)).expect("nested checkout");
                if nested.index() != index || !Arc::ptr_eq(nested.conn(), lease.conn()) {
                    bad.fetch_add(1, SeqCst);
                }
            }
            thread::yield_now();
            if !flags[index].swap(false, SeqCst) {
                bad.fetch_add(1, SeqCst);
            }
            drop(lease);
        }
    });
    assert_eq!(violations.load(SeqCst), 0);
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiting, s.checkout_timeouts, s.replaced), (0, 0, 0, 0), "{s:?}");
    assert!(s.idle <= SIZE);
    assert_eq!(s.idle, SIZE);
    assert_eq!((s.creations, s.created), (SIZE as u64, SIZE));
    assert!(pool.manager().closes().is_empty());
}

#[test]
fn concurrent_checkouts_with_broken_conns_never_hand_out_a_closed_one() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let bad = Arc::new(AtomicUsize::new(0));
    let broke = Arc::new(AtomicUsize::new(0));
    let (b, k) = (Arc::clone(&bad), Arc::clone(&broke));
    hammer(&pool, 8, move |t, pool| {
        for i in 0..300 {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            if lease.closed.load(SeqCst) || lease.broken.load(SeqCst) {
                b.fetch_add(1, SeqCst);
            }
            if (i + t) % 37 == 0 {
                lease.broken.store(true, SeqCst);
                k.fetch_add(1, SeqCst);
            }
            thread::yield_now();
        }
    });
    assert_eq!(bad.load(SeqCst), 0, "a closed or broken connection was handed out");
    let m = pool.manager();
    let s = pool.stats();
    let closes = m.closes();
    assert_eq!(s.replaced, broke.load(SeqCst) as u64);
    assert_eq!(closes.len(), broke.load(SeqCst));
    assert!(closes.iter().all(|r| r.force));
    assert_eq!(m.double_closes.load(SeqCst), 0);
    assert_eq!(s.creations, s.replaced + s.created as u64, "every conn is either in the pool or closed");
    assert_eq!(s.in_use, 0);
}

#[test]
fn concurrent_checkouts_and_reloads_close_every_conn_exactly_once() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let bad = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (b, d) = (Arc::clone(&bad), Arc::clone(&done));
    let p = pool.clone();
    let reloader = thread::spawn(move || {
        let mut reloads = 0;
        while d.load(SeqCst) < 6 {
            p.reload();
            reloads += 1;
            thread::yield_now();
        }
        reloads
    });
    let d = Arc::clone(&done);
    hammer(&pool, 6, move |_, pool| {
        for _ in 0..300 {
            let lease = pool.checkout(Some(LONG)).expect("checkout under load");
            if lease.closed.load(SeqCst) {
                b.fetch_add(1, SeqCst);
            }
            thread::yield_now();
        }
        d.fetch_add(1, SeqCst);
    });
    let reloads = reloader.join().unwrap();
    assert!(reloads > 0);
    assert_eq!(bad.load(SeqCst), 0, "a closed connection was handed out");
    let m = pool.manager();
    assert_eq!(m.double_closes.load(SeqCst), 0);
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
    assert_eq!(s.creations, (m.closes().len() + s.created) as u64);
    assert!(m.closes().iter().all(|r| !r.force));
    let serials: HashSet<_> = m.closes().iter().map(|r| r.serial).collect();
    assert_eq!(serials.len(), m.closes().len());

    pool.reload();
    let s = pool.stats();
    assert_eq!(s.created, 0);
    assert_eq!(s.creations, m.closes().len() as u64);
}

#[test]
fn concurrent_checkouts_and_close_close_every_conn_exactly_once() {
    const SIZE: usize = 3;
    let pool = new_pool(SIZE);
    let progress = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let (pr, b) = (Arc::clone(&progress), Arc::clone(&bad));
    let p = pool.clone();
    let workers = thread::spawn(move || {
        hammer(&p, 6, move |_, pool| loop {
            match pool.checkout(Some(LONG)) {
                Ok(lease) => {
                    if lease.closed.load(SeqCst) {
                        b.fetch_add(1, SeqCst);
                    }
                    pr.fetch_add(1, SeqCst);
                    thread::yield_now();
                }
                Err(CheckoutError::Closed) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        })
    });
    wait_until("some progress", || progress.load(SeqCst) >= 200);
    let report = pool.close(false);
    workers.join().expect("the workers failed");
    assert_eq!(bad.load(SeqCst), 0);
    let m = pool.manager();
    let s = pool.stats();
    assert_eq!((s.in_use, s.created, s.idle, s.waiting), (0, 0, 0, 0), "{s:?}");
    assert_eq!(m.closes().len() as u64, s.creations, "every conn was closed");
    assert_eq!(m.double_closes.load(SeqCst), 0);
    assert!(report.closed + report.in_use <= SIZE);
    assert_eq!(report.closed + report.in_use, s.creations as usize);
}
