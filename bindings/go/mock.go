package wdpool

/*
#include <stdlib.h>
#include "wdpool.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// MockCluster is librdkafka's in-process mock Kafka cluster on loopback
// ports, for tests and examples. It proves nothing about a real broker.
type MockCluster struct {
	h       *C.wdpool_mock_cluster
	cleanup runtime.Cleanup
}

// NewMockCluster starts a mock cluster of brokers brokers (1 to 16).
// Topics are created on first use (4 partitions) or with CreateTopic.
func NewMockCluster(brokers int) (*MockCluster, error) {
	var h *C.wdpool_mock_cluster
	var cerr *C.wdpool_error
	if err := takeError(C.wdpool_mock_cluster_new(C.int32_t(brokers), &h, &cerr), cerr); err != nil {
		return nil, err
	}
	m := &MockCluster{h: h}
	m.cleanup = runtime.AddCleanup(m, func(h *C.wdpool_mock_cluster) { C.wdpool_mock_cluster_free(h) }, h)
	return m, nil
}

// BootstrapServers is the value for "bootstrap.servers".
func (m *MockCluster) BootstrapServers() string {
	s := C.GoString(C.wdpool_mock_cluster_bootstrap_servers(m.h))
	runtime.KeepAlive(m)
	return s
}

// CreateTopic creates topic with partitions partitions.
func (m *MockCluster) CreateTopic(topic string, partitions int) error {
	t := C.CString(topic)
	defer C.free(unsafe.Pointer(t))
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_mock_cluster_create_topic(m.h, t, C.int32_t(partitions), &cerr), cerr)
	runtime.KeepAlive(m)
	return err
}

// SetBrokerUp takes a broker down (false) or back up (true).
func (m *MockCluster) SetBrokerUp(broker int, up bool) error {
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_mock_cluster_set_broker_up(m.h, C.int32_t(broker), C.bool(up), &cerr), cerr)
	runtime.KeepAlive(m)
	return err
}

// SetRTT delays every response of a broker by rttMs milliseconds.
func (m *MockCluster) SetRTT(broker int, rttMs int) error {
	var cerr *C.wdpool_error
	err := takeError(C.wdpool_mock_cluster_set_rtt(m.h, C.int32_t(broker), C.uint32_t(rttMs), &cerr), cerr)
	runtime.KeepAlive(m)
	return err
}

// PushRequestErrors makes the next requests with Kafka protocol ApiKey
// apiKey (0 Produce, 22 InitProducerId, 26 EndTxn, ...) fail, in order,
// with codes (rd_kafka_resp_err_t), to test how Kafka errors are reported.
func (m *MockCluster) PushRequestErrors(apiKey int16, codes ...int32) error {
	var cerr *C.wdpool_error
	var p *C.int32_t
	if len(codes) > 0 {
		buf := C.malloc(C.size_t(4 * len(codes)))
		defer C.free(buf)
		copy(unsafe.Slice((*int32)(buf), len(codes)), codes)
		p = (*C.int32_t)(buf)
	}
	err := takeError(C.wdpool_mock_cluster_push_request_errors(m.h, C.int16_t(apiKey), p, C.size_t(len(codes)), &cerr), cerr)
	runtime.KeepAlive(m)
	return err
}

// Close stops the cluster. Harmless twice.
func (m *MockCluster) Close() {
	m.cleanup.Stop()
	C.wdpool_mock_cluster_free(m.h)
}
