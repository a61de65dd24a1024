//! librdkafka's in-process mock cluster, for demos and tests without a
//! broker. It is not Kafka: never take it as proof that something works
//! with a real broker.

use std::ffi::{c_char, CString};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::result::c_string;
use super::{boundary, guarded, null, required, utf8, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};

/// An in-process mock Kafka cluster on loopback ports. Create it with
/// `wdpool_mock_cluster_new`, free it with `wdpool_mock_cluster_free`. Its
/// functions may be called from any thread.
#[allow(non_camel_case_types)]
pub struct wdpool_mock_cluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: CString,
}

fn cluster_ref<'a>(cluster: *const wdpool_mock_cluster) -> Result<&'a wdpool_mock_cluster> {
    unsafe { required(cluster, "cluster") }
}

fn mock_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Kafka, format!("{what}: {e}"))
}

/// Starts a mock cluster of `brokers` brokers (ids 1..=brokers; 1 to 16).
/// Topics are created on first use (4 partitions) or with
/// `wdpool_mock_cluster_create_topic`.
///
/// `cluster_out` receives it, owned by the caller; written only on
/// WDPOOL_OK. Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER,
/// WDPOOL_INVALID_ARGUMENT, WDPOOL_KAFKA.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_new(
    brokers: i32,
    cluster_out: *mut *mut wdpool_mock_cluster,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        if cluster_out.is_null() {
            return Err(null("cluster_out"));
        }
        if !(1..=16).contains(&brokers) {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("brokers must be 1 to 16, not {brokers}")));
        }
        let cluster = MockCluster::new(brokers).map_err(|e| mock_error("starting the mock cluster", e))?;
        let bootstrap = c_string(&cluster.bootstrap_servers());
        let boxed = Box::new(wdpool_mock_cluster { cluster, bootstrap });
        unsafe { write_out(cluster_out, Box::into_raw(boxed)) };
        Ok(())
    })
}

/// The cluster's bootstrap servers ("127.0.0.1:port,..."), for
/// "bootstrap.servers". Borrowed: valid until the cluster is freed. "" for
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_bootstrap_servers(cluster: *const wdpool_mock_cluster) -> *const c_char {
    guarded(c"".as_ptr(), || cluster_ref(cluster).map_or(c"".as_ptr(), |c| c.bootstrap.as_ptr()))
}

/// Creates `topic` with `partitions` partitions.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT,
/// WDPOOL_KAFKA.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_create_topic(
    cluster: *const wdpool_mock_cluster,
    topic: *const c_char,
    partitions: i32,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let c = cluster_ref(cluster)?;
        let topic = unsafe { utf8(topic, "topic") }?;
        if partitions < 1 {
            return Err(Error::new(ErrorKind::InvalidArgument, "partitions must be at least 1"));
        }
        c.cluster.create_topic(topic, partitions, 1).map_err(|e| mock_error("creating the topic", e))
    })
}

/// Takes broker `broker_id` down (`up` false) or brings it back (`up` true),
/// to test failures.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_KAFKA.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_set_broker_up(
    cluster: *const wdpool_mock_cluster,
    broker_id: i32,
    up: bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let c = cluster_ref(cluster)?;
        let result = if up { c.cluster.broker_up(broker_id) } else { c.cluster.broker_down(broker_id) };
        result.map_err(|e| mock_error("changing the broker's state", e))
    })
}

/// Stops and frees the cluster. NULL does nothing. Producers still connected
/// to it will see their brokers disappear.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_free(cluster: *mut wdpool_mock_cluster) {
    guarded((), || {
        if !cluster.is_null() {
            // SAFETY: a pointer from `wdpool_mock_cluster_new`, freed once.
            drop(unsafe { Box::from_raw(cluster) });
        }
    })
}
