//! librdkafka topic handles, one per topic a producer sends to.
//!
//! Producing by topic *name* (what the rdkafka crate's `send` does) costs,
//! per message, a `CString` (an allocation and a free) and librdkafka's
//! look-up of the name under its topic lock, with a topic handle made and
//! destroyed around it. Producing through a handle kept here costs a walk
//! of this list. The list only grows, up to [`MAX_TOPICS`]; a producer that
//! sends to more topics than that sends the others by name, as before.

use std::ffi::CString;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use rdkafka::bindings as rdsys;

/// Topics kept per producer; beyond them, messages go by name.
pub(crate) const MAX_TOPICS: usize = 64;

struct Node {
    name: Box<str>,
    rkt: *mut rdsys::rd_kafka_topic_t,
    next: *mut Node,
}

/// The topic handles of one librdkafka producer. Nodes are added at the
/// head (under `adding`) and freed only when the list drops, so readers walk
/// it without a lock.
pub(crate) struct Topics {
    head: AtomicPtr<Node>,
    /// Serializes additions; holds how many nodes there are.
    adding: Mutex<usize>,
}

// SAFETY: the nodes are immutable once published and freed only by `drop`
// (no reader then); librdkafka's topic handles may be used from any thread.
unsafe impl Send for Topics {}
// SAFETY: as above.
unsafe impl Sync for Topics {}

impl Topics {
    pub(crate) const fn new() -> Self {
        Topics { head: AtomicPtr::new(ptr::null_mut()), adding: Mutex::new(0) }
    }

    /// The handle of `topic` on `rk`, made on first use; `None` when the
    /// list is full or librdkafka refused to make one (send by name then).
    #[inline]
    pub(crate) fn get(&self, rk: *mut rdsys::rd_kafka_t, topic: &str) -> Option<*mut rdsys::rd_kafka_topic_t> {
        self.find(topic).or_else(|| self.add(rk, topic))
    }

    #[inline]
    fn find(&self, topic: &str) -> Option<*mut rdsys::rd_kafka_topic_t> {
        let mut node = self.head.load(Ordering::Acquire);
        while !node.is_null() {
            // SAFETY: published nodes live until `drop`.
            let n = unsafe { &*node };
            if *n.name == *topic {
                return Some(n.rkt);
            }
            node = n.next;
        }
        None
    }

    #[cold]
    fn add(&self, rk: *mut rdsys::rd_kafka_t, topic: &str) -> Option<*mut rdsys::rd_kafka_topic_t> {
        let mut count = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rkt) = self.find(topic) {
            return Some(rkt);
        }
        if *count >= MAX_TOPICS {
            return None;
        }
        let name = CString::new(topic).ok()?;
        // SAFETY: `rk` is a live producer (the caller's, for the length of
        // the call); NULL configuration: the producer's default topic
        // configuration, as producing by name uses.
        let rkt = unsafe { rdsys::rd_kafka_topic_new(rk, name.as_ptr(), ptr::null_mut()) };
        if rkt.is_null() {
            return None;
        }
        let node = Box::into_raw(Box::new(Node { name: topic.into(), rkt, next: self.head.load(Ordering::Relaxed) }));
        self.head.store(node, Ordering::Release);
        *count += 1;
        Some(rkt)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        *self.adding.lock().unwrap()
    }
}

impl Drop for Topics {
    /// Gives the handles back; runs before the producer is destroyed (see
    /// the field order of `Producer`).
    fn drop(&mut self) {
        let mut node = *self.head.get_mut();
        while !node.is_null() {
            // SAFETY: nodes were made by `Box::into_raw` and are freed once,
            // here, with no reader left.
            let n = unsafe { Box::from_raw(node) };
            // SAFETY: a handle of ours, destroyed once.
            unsafe { rdsys::rd_kafka_topic_destroy(n.rkt) };
            node = n.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// A producer that never connects (no bootstrap servers needed to make
    /// topic handles).
    struct Rk(*mut rdsys::rd_kafka_t);

    impl Rk {
        fn new() -> Self {
            let mut errstr = [0 as std::ffi::c_char; 256];
            // SAFETY: a fresh configuration, handed over to rd_kafka_new.
            let rk = unsafe {
                let conf = rdsys::rd_kafka_conf_new();
                rdsys::rd_kafka_new(rdsys::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf, errstr.as_mut_ptr(), errstr.len())
            };
            assert!(!rk.is_null());
            Rk(rk)
        }
    }

    impl Drop for Rk {
        fn drop(&mut self) {
            // SAFETY: ours, destroyed once, after the topics (declared later
            // in each test, so dropped first).
            unsafe { rdsys::rd_kafka_destroy(self.0) };
        }
    }

    #[test]
    fn one_handle_per_topic_and_none_past_the_limit() {
        let rk = Rk::new();
        let topics = Topics::new();
        let a = topics.get(rk.0, "a").unwrap();
        assert_eq!(topics.get(rk.0, "a"), Some(a));
        let b = topics.get(rk.0, "b").unwrap();
        assert_ne!(a, b);
        // SAFETY: live handles.
        let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(b)) };
        assert_eq!(name.to_str().unwrap(), "b");
        for i in 2..MAX_TOPICS {
            assert!(topics.get(rk.0, &format!("t{i}")).is_some());
        }
        assert_eq!(topics.len(), MAX_TOPICS);
        assert_eq!(topics.get(rk.0, "one-too-many"), None);
        assert_eq!(topics.get(rk.0, "a"), Some(a));
        assert_eq!(topics.len(), MAX_TOPICS);
    }

    #[test]
    fn threads_adding_the_same_topics_share_one_handle_each() {
        let rk = Rk::new();
        let topics = Topics::new();
        let rk_addr = rk.0 as usize;
        let seen: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let topics = &topics;
                    s.spawn(move || {
                        (0..8).map(|i| topics.get(rk_addr as *mut _, &format!("t{i}")).unwrap() as usize).collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.iter().all(|s| *s == seen[0]));
        assert_eq!(topics.len(), 8);
    }
}
