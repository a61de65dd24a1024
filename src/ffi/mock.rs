//! librdkafka's in-process mock cluster, for demos and tests without a
//! broker. It is not Kafka: never take it as proof that something works
//! with a real broker.

use std::ffi::{c_char, CString};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::registry::{Kind, Registry};
use super::result::c_string;
use super::{boundary, guarded, null, utf8, wdpool_error, wdpool_result, write_out};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::message::validate_topic;

/// An in-process mock Kafka cluster on loopback ports: a handle, not a
/// pointer. Create it with `wdpool_mock_cluster_new`, free it with
/// `wdpool_mock_cluster_free`. Its functions may be called from any thread;
/// after it is freed they fail with WDPOOL_STALE_HANDLE.
#[allow(non_camel_case_types)]
pub struct wdpool_mock_cluster {
    _private: [u8; 0],
}

struct Mock {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: CString,
}

// SAFETY: librdkafka's mock cluster API is thread-safe (every call takes the
// cluster's lock); the crate's handle is !Send only because it holds raw
// pointers.
unsafe impl Send for Mock {}
// SAFETY: as above.
unsafe impl Sync for Mock {}

static CLUSTERS: Registry<Arc<Mock>> = Registry::new(Kind::MockCluster);

fn cluster_ref(cluster: *const wdpool_mock_cluster) -> Result<Arc<Mock>> {
    if cluster.is_null() {
        return Err(null("cluster"));
    }
    CLUSTERS.with(cluster as usize, |c| Arc::clone(c))
}

fn mock_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Kafka, format!("{what}: {e}"))
}

/// Starts a mock cluster of `brokers` brokers (ids 1..=brokers; 1 to 16).
/// Topics are created on first use (4 partitions) or with
/// `wdpool_mock_cluster_create_topic`.
///
/// Blocks: while the brokers start (milliseconds). Calls back: nothing.
/// Thread: any.
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
        let token = CLUSTERS.insert(Arc::new(Mock { cluster, bootstrap }))?;
        // SAFETY: checked for NULL; the caller passes a writable pointer.
        unsafe { write_out(cluster_out, token as *mut wdpool_mock_cluster) };
        Ok(())
    })
}

/// The cluster's bootstrap servers ("127.0.0.1:port,..."), for
/// "bootstrap.servers". Borrowed: valid until the cluster is freed. "" for
/// NULL or an invalid handle. Never blocks; any thread.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_bootstrap_servers(cluster: *const wdpool_mock_cluster) -> *const c_char {
    // The string lives as long as the cluster's registration (the caller
    // frees the cluster, so it outlives the caller's use).
    guarded(c"".as_ptr(), || cluster_ref(cluster).map_or(c"".as_ptr(), |c| c.bootstrap.as_ptr()))
}

/// Creates `topic` (a valid topic name: letters, digits, '_', '-', '.') with
/// `partitions` partitions.
///
/// Blocks: briefly, on the cluster's lock. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT (a bad name, partitions
/// < 1, another kind of handle), STALE_HANDLE, KAFKA.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_create_topic(
    cluster: *const wdpool_mock_cluster,
    topic: *const c_char,
    partitions: i32,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let c = cluster_ref(cluster)?;
        // SAFETY: NULL or a NUL-terminated string, as documented.
        let topic = unsafe { utf8(topic, "topic") }?;
        validate_topic(topic).map_err(|e| Error { kind: ErrorKind::InvalidArgument, ..e })?;
        if partitions < 1 {
            return Err(Error::new(ErrorKind::InvalidArgument, "partitions must be at least 1"));
        }
        c.cluster.create_topic(topic, partitions, 1).map_err(|e| mock_error("creating the topic", e))
    })
}

/// Takes broker `broker_id` down (`up` false) or brings it back (`up` true),
/// to test failures.
///
/// Blocks: briefly. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE, KAFKA.
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

/// Delays every response of broker `broker_id` by `rtt_ms` milliseconds
/// (0: none), to test slow brokers and slow commits.
///
/// Blocks: briefly. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT, STALE_HANDLE, KAFKA.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_set_rtt(
    cluster: *const wdpool_mock_cluster,
    broker_id: i32,
    rtt_ms: u32,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let c = cluster_ref(cluster)?;
        c.cluster
            .broker_round_trip_time(broker_id, Duration::from_millis(u64::from(rtt_ms)))
            .map_err(|e| mock_error("setting the round-trip time", e))
    })
}

/// Makes the next `count` requests with Kafka protocol ApiKey `api_key` to
/// any broker of the cluster fail, in order, with `errors[0]`, `errors[1]`,
/// ... (`rd_kafka_resp_err_t` codes; `RD_KAFKA_RESP_ERR__TRANSPORT`
/// disconnects instead), to test how Kafka errors are reported. The
/// ApiKeys a producer uses are accepted: Produce (0), Metadata (3),
/// FindCoordinator (10), InitProducerId (22), AddPartitionsToTxn (24),
/// AddOffsetsToTxn (25), EndTxn (26), TxnOffsetCommit (28). `errors` is
/// read during the call (NULL only when `count` is 0); `count` is at most
/// 1024. librdkafka's mock cluster rd_kafka_mock_push_request_errors_array.
///
/// Blocks: briefly, on the cluster's lock. Calls back: nothing. Thread: any.
/// Returns: OK, NULL_PARAMETER, INVALID_ARGUMENT (another ApiKey, an
/// unknown error code, `count` above 1024, another kind of handle),
/// STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_push_request_errors(
    cluster: *const wdpool_mock_cluster,
    api_key: i16,
    errors: *const i32,
    count: usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        let c = cluster_ref(cluster)?;
        let key = api_key_of(api_key)?;
        if count > 1024 {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("at most 1024 errors at once, not {count}")));
        }
        if count > 0 && errors.is_null() {
            return Err(null("errors"));
        }
        let codes = if count == 0 {
            &[][..]
        } else {
            // SAFETY: checked for NULL; the caller passes `count` codes.
            unsafe { std::slice::from_raw_parts(errors, count) }
        };
        let codes = codes
            .iter()
            .map(|&code| {
                RDKafkaRespErr::try_from(code).map_err(|_| {
                    Error::new(ErrorKind::InvalidArgument, format!("{code} is not an rd_kafka_resp_err_t code"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        c.cluster.request_errors(key, &codes);
        Ok(())
    })
}

/// The Kafka protocol requests a test may make fail (those a producer sends).
fn api_key_of(key: i16) -> Result<RDKafkaApiKey> {
    use RDKafkaApiKey::*;
    [Produce, Metadata, FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit]
        .into_iter()
        .find(|k| i16::from(*k) == key)
        .ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, format!("ApiKey {key} is not one a producer sends (see the header)"))
        })
}

/// Stops and frees the cluster. NULL, a freed handle or another kind of
/// handle does nothing. Producers still connected to it will see their
/// brokers disappear.
///
/// Blocks: while the cluster's threads stop (milliseconds). Calls back:
/// nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_mock_cluster_free(cluster: *mut wdpool_mock_cluster) {
    guarded((), || {
        if !cluster.is_null() {
            let _ = CLUSTERS.remove(cluster as usize);
        }
    })
}
