//! Fork.

use super::*;

/// Runs `child` in a forked child process and returns its exit code. The child
/// must stay simple: no new threads, no printing, no panicking (a code says
/// which check failed).
fn in_forked_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (simple operations on memory this
    // test owns) and leaves with `_exit`, running no destructors or atexit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(100);
        // SAFETY: leaves the child at once, as intended.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + LONG;
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "waitpid failed: {err}");
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child {pid} hung");
        }
        thread::park_timeout(Duration::from_millis(1));
    }
    assert!(libc::WIFEXITED(status), "the child died of signal {}", libc::WTERMSIG(status));
    libc::WEXITSTATUS(status)
}

const FORK_EVENTS: [PoolEvent; 2] = [PoolEvent::ForkReload { begin: true }, PoolEvent::ForkReload { begin: false }];

#[test]
fn a_forked_child_abandons_the_parents_conn_and_creates_a_fresh_one() {
    let pool = new_pool(1);
    let parent_serial = pool.checkout(None).unwrap().serial;
    let m = pool.manager();
    let generation = fork_generation();

    let code = in_forked_child(|| {
        if fork_generation() != generation + 1 {
            return 2;
        }
        let lease = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 3,
        };
        if lease.serial == parent_serial || lease.index() != 0 {
            return 4;
        }
        if !m.closes().is_empty() {
            return 5; // destroyed the parent's connection
        }
        if m.creations().len() != 2 {
            return 6;
        }
        if m.events() != FORK_EVENTS {
            return 7;
        }
        let serial = lease.serial;
        drop(lease);
        // The next checkout reuses the child's conn: one reload only.
        let again = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 8,
        };
        if again.serial != serial || m.creations().len() != 2 || m.events().len() != 2 {
            return 9;
        }
        drop(again);
        let s = pool.stats();
        if (s.created, s.idle, s.in_use, s.waiting) != (1, 1, 0, 0) {
            return 10;
        }
        if !m.closes().is_empty() {
            return 11;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");

    // The parent is untouched.
    let lease = pool.checkout(Some(ZERO)).unwrap();
    assert_eq!(lease.serial, parent_serial);
    assert_eq!(pool.manager().creations().len(), 1);
    assert!(pool.manager().events().is_empty());
    assert!(pool.manager().closes().is_empty());
    assert_eq!(fork_generation(), generation);
}

#[test]
fn a_forked_child_ignores_leases_inherited_from_the_parent() {
    let pool = new_pool(1);
    let held = RefCell::new(Some(pool.checkout(None).unwrap()));
    let parent_serial = held.borrow().as_ref().unwrap().serial;
    let m = pool.manager();

    let code = in_forked_child(|| {
        // The parent's lease holds the only slot, yet the child gets one at once.
        let fresh = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 2,
        };
        if fresh.serial == parent_serial || m.events() != FORK_EVENTS {
            return 3;
        }
        if pool.stats().in_use != 1 {
            return 4;
        }
        // Dropping the inherited lease neither closes nor frees anything.
        drop(held.borrow_mut().take());
        if !m.closes().is_empty() {
            return 5;
        }
        let s = pool.stats();
        if (s.in_use, s.idle) != (1, 0) {
            return 6;
        }
        drop(fresh);
        let s = pool.stats();
        if (s.in_use, s.idle, s.created) != (0, 1, 1) || !m.closes().is_empty() {
            return 7;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");

    // The parent's lease is still good.
    assert_eq!(pool.stats().in_use, 1);
    drop(held.borrow_mut().take());
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.creations), (0, 1, 1));
    assert!(pool.manager().closes().is_empty());
    assert!(pool.manager().events().is_empty());
}

#[test]
fn close_in_a_forked_child_does_not_close_the_parents_conns() {
    let pool = new_pool(2);
    drop(pool.checkout(None).unwrap());
    let m = pool.manager();
    let code = in_forked_child(|| {
        let report = pool.close(true);
        if !m.closes().is_empty() {
            return 2;
        }
        if report.closed != 0 {
            return 3;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    assert!(pool.manager().closes().is_empty());
    assert!(!pool.is_closed());
}

#[test]
fn reload_in_a_forked_child_does_not_close_the_parents_conns() {
    let pool = new_pool(2);
    drop(pool.checkout(None).unwrap());
    let m = pool.manager();
    let code = in_forked_child(|| {
        pool.reload();
        if !m.closes().is_empty() {
            return 2;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    assert!(pool.manager().closes().is_empty());
}

#[test]
fn dropping_an_inherited_stale_lease_in_a_forked_child_does_not_close_it() {
    let pool = new_pool(1);
    let held = RefCell::new(Some(pool.checkout(None).unwrap()));
    pool.reload(); // the leased conn is now stale: it is closed when returned
    let m = pool.manager();
    let code = in_forked_child(|| {
        drop(held.borrow_mut().take());
        if !m.closes().is_empty() {
            return 2;
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
    drop(held.borrow_mut().take());
    assert_eq!(pool.manager().closes().len(), 1, "in the parent it is closed as usual");
}

/// The generation is swapped before the state is reset, so between the two
/// another checkout (another thread; here, deterministically, the event
/// observer) sees "no fork" and is handed the parent's connection.
#[test]
fn no_checkout_in_a_forked_child_gets_the_parents_conn() {
    let pool = new_pool(1);
    let parent_serial = pool.checkout(None).unwrap().serial;
    let m = pool.manager();
    let code = in_forked_child(|| {
        let seen = Arc::new(AtomicU64::new(0));
        let (p, s) = (pool.clone(), Arc::clone(&seen));
        let once = AtomicBool::new(false);
        m.on_pool_event(move |event| {
            if *event == (PoolEvent::ForkReload { begin: true }) && !once.swap(true, SeqCst) {
                // Stands for a second thread checking out at this moment.
                let serial = p.checkout(Some(ZERO)).map(|l| l.serial).unwrap_or(u64::MAX);
                s.store(serial, SeqCst);
            }
        });
        let lease = match pool.checkout(Some(ZERO)) {
            Ok(lease) => lease,
            Err(_) => return 2,
        };
        if lease.serial == parent_serial {
            return 3;
        }
        drop(lease);
        if seen.load(SeqCst) == parent_serial {
            return 4; // the racing checkout got the parent's connection
        }
        0
    });
    assert_eq!(code, 0, "the child failed check {code}");
}
