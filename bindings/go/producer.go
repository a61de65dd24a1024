package wdpool

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wdpool.h"
#include "delivery.h"

// One message without headers, produced in one cgo call: the topic, key,
// payload and partition key are Go memory (bytes, no pointers) used for
// the call only, as the cgo rules allow; the topic is copied here to get
// its NUL. Results come back by value.
typedef struct { wdpool_result rc; uintptr_t delivery; wdpool_error *err; } wdpool_go_async_result;
static const uint8_t wdpool_go_empty[1];
static inline wdpool_bytes wdpool_go_bytes(const uint8_t *data, size_t len, int given) {
  wdpool_bytes b = {NULL, 0};
  if (given) { b.data = len > 0 ? data : wdpool_go_empty; b.len = len; }
  return b;
}
// One message without headers; `name` (256 bytes) receives the topic
// with its NUL (topic_len < 256).
static inline wdpool_message wdpool_go_message(char *name, const char *topic, size_t topic_len,
    const uint8_t *payload, size_t payload_len, int has_payload,
    const uint8_t *key, size_t key_len, int has_key,
    const uint8_t *pkey, size_t pkey_len, int has_pkey,
    int32_t partition, int has_partition, int64_t timestamp_ms) {
  memcpy(name, topic, topic_len);
  name[topic_len] = 0;
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = name;
  m.payload = wdpool_go_bytes(payload, payload_len, has_payload);
  m.key = wdpool_go_bytes(key, key_len, has_key);
  m.partition_key = wdpool_go_bytes(pkey, pkey_len, has_pkey);
  if (has_partition) m.partition = partition;
  m.timestamp_ms = timestamp_ms;
  return m;
}
static inline wdpool_go_async_result wdpool_go_produce_one(
    uintptr_t producer_addr, const char *topic, size_t topic_len,
    const uint8_t *payload, size_t payload_len, int has_payload,
    const uint8_t *key, size_t key_len, int has_key,
    const uint8_t *pkey, size_t pkey_len, int has_pkey,
    int32_t partition, int has_partition, int64_t timestamp_ms, int want_delivery,
    uintptr_t slots, size_t slot, uintptr_t queue, uint64_t tag) {
  wdpool_producer *producer = (wdpool_producer *)producer_addr; // a C pointer: no cgocheck look
  wdpool_go_async_result r = {WDPOOL_OK, 0, NULL};
  char name[256];
  wdpool_message m = wdpool_go_message(name, topic, topic_len, payload, payload_len, has_payload, key, key_len, has_key,
      pkey, pkey_len, has_pkey, partition, has_partition, timestamp_ms);
  if (slots != 0) {
    r.rc = wdpool_producer_produce_into(producer, &m, 1, (wdpool_report_slots *)slots, slot, &r.err);
    return r;
  }
  if (queue != 0) {
    r.rc = wdpool_producer_produce_tagged(producer, &m, (const wdpool_report_queue *)queue, tag, &r.err);
    return r;
  }
  wdpool_delivery *d = NULL;
  r.rc = wdpool_producer_produce_async(producer, &m, want_delivery ? &d : NULL, &r.err);
  r.delivery = (uintptr_t)d;
  return r;
}
// Pool.Send, Pool.ProduceTagged and Pool.ProduceAsync in one cgo call: one
// message without headers produced through the pool (the global one when
// pool_addr is 0) by wdpool_pool_produce_* / wdpool_produce_*, fire and
// forget, tagged into a report queue, or into a report slot, with
// WDPOOL_TIMEOUT_NO_WAIT. sent 0: no producer was free, nothing was
// produced (the caller takes the With path).
typedef struct { wdpool_result rc; int sent; wdpool_error *err; } wdpool_go_send_result;
static inline wdpool_go_send_result wdpool_go_pool_send_one(
    uintptr_t pool_addr, wdpool_owner owner, const char *topic, size_t topic_len,
    const uint8_t *payload, size_t payload_len, int has_payload,
    const uint8_t *key, size_t key_len, int has_key,
    const uint8_t *pkey, size_t pkey_len, int has_pkey,
    int32_t partition, int has_partition, int64_t timestamp_ms, uintptr_t slots, size_t slot,
    uintptr_t queue, uint64_t tag) {
  const wdpool_pool *pool = (const wdpool_pool *)pool_addr;
  wdpool_go_send_result r = {WDPOOL_OK, 0, NULL};
  char name[256];
  wdpool_message m = wdpool_go_message(name, topic, topic_len, payload, payload_len, has_payload, key, key_len, has_key,
      pkey, pkey_len, has_pkey, partition, has_partition, timestamp_ms);
  bool produced = false;
  const int64_t t = WDPOOL_TIMEOUT_NO_WAIT;
  if (slots != 0) {
    wdpool_report_slots *s = (wdpool_report_slots *)slots;
    r.rc = pool != NULL ? wdpool_pool_produce_into(pool, owner, t, &m, 1, s, slot, &produced, &r.err)
                        : wdpool_produce_into(owner, t, &m, 1, s, slot, &produced, &r.err);
  } else if (queue != 0) {
    const wdpool_report_queue *q = (const wdpool_report_queue *)queue;
    r.rc = pool != NULL ? wdpool_pool_produce_tagged(pool, owner, t, &m, q, tag, &produced, &r.err)
                        : wdpool_produce_tagged(owner, t, &m, q, tag, &produced, &r.err);
  } else {
    r.rc = pool != NULL ? wdpool_pool_produce_async(pool, owner, t, &m, NULL, &produced, &r.err)
                        : wdpool_produce_async(owner, t, &m, NULL, &produced, &r.err);
  }
  // An error means it was tried: a producer was taken, or the message (or
  // the pool, queue or slots) was refused before that.
  r.sent = r.rc != WDPOOL_OK || produced;
  return r;
}
static inline wdpool_go_async_result wdpool_go_produce_async(wdpool_producer *producer, const wdpool_message *m) {
  wdpool_go_async_result r = {WDPOOL_OK, 0, NULL};
  wdpool_delivery *d = NULL;
  r.rc = wdpool_producer_produce_async(producer, m, &d, &r.err);
  r.delivery = (uintptr_t)d;
  return r;
}
static inline wdpool_go_async_result wdpool_go_produce_many_async(wdpool_producer *producer,
    const wdpool_message *msgs, size_t count) {
  wdpool_go_async_result r = {WDPOOL_OK, 0, NULL};
  wdpool_delivery *d = NULL;
  r.rc = wdpool_producer_produce_many_async(producer, msgs, count, &d, &r.err);
  r.delivery = (uintptr_t)d;
  return r;
}

// produce_sync with its report by value, without the topic pointer (the
// message's memory is freed before the report is read).
typedef struct { wdpool_result rc; wdpool_error *err; wdpool_go_report report; } wdpool_go_sync_result;
static inline wdpool_go_sync_result wdpool_go_produce_sync(wdpool_producer *producer, const wdpool_message *m,
    int64_t timeout_ms) {
  wdpool_go_sync_result r = {WDPOOL_OK, NULL, {-1, 0, -1, -1}};
  wdpool_report rep = {NULL, -1, -1, -1, 0};
  r.rc = wdpool_producer_produce_sync(producer, m, timeout_ms, &rep, &r.err);
  wdpool_go_report_of(&rep, &r.report);
  return r;
}
typedef struct { wdpool_result rc; wdpool_error *err; } wdpool_go_call_result;
static inline wdpool_go_call_result wdpool_go_produce_many_sync(wdpool_producer *producer,
    const wdpool_message *msgs, size_t count, int64_t timeout_ms, wdpool_report *reports) {
  wdpool_go_call_result r = {WDPOOL_OK, NULL};
  r.rc = wdpool_producer_produce_many_sync(producer, msgs, count, timeout_ms, reports, &r.err);
  return r;
}
static inline wdpool_go_call_result wdpool_go_flush(wdpool_producer *producer, int64_t timeout_ms) {
  wdpool_go_call_result r = {WDPOOL_OK, NULL};
  r.rc = wdpool_producer_flush(producer, timeout_ms, &r.err);
  return r;
}
*/
import "C"

import (
	"context"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// Header is one message header; several may share a key (WaterDrop's
// list-valued headers). A nil Value is a null value.
type Header struct {
	Key   string
	Value []byte
}

// Message is one message to produce. Nothing in it is kept after the
// produce call returns.
type Message struct {
	Topic        string    // required: letters, digits, '_', '-', '.'
	Payload      []byte    // nil: a tombstone
	Key          []byte    // nil: no key; when given, not empty
	Partition    *int32    // nil: any partition (the partitioner chooses)
	PartitionKey []byte    // nil: none; chooses the partition without setting the key
	Timestamp    time.Time // zero: the time of producing
	Headers      []Header
}

// Partition returns a pointer to n, for Message.Partition.
func Partition(n int32) *int32 { return &n }

// DeliveryReport is the outcome of one message.
type DeliveryReport struct {
	Topic     string
	Partition int32 // -1 when unknown
	Offset    int64 // -1 when not delivered
	Timestamp time.Time
	Err       error // nil: delivered; else a *KafkaError
}

func reportFromC(r *C.wdpool_go_report, topic string) DeliveryReport {
	d := DeliveryReport{Topic: topic, Partition: int32(r.partition), Offset: int64(r.offset)}
	if r.timestamp_ms >= 0 {
		d.Timestamp = time.UnixMilli(int64(r.timestamp_ms))
	}
	if r.error_code != 0 {
		d.Err = &KafkaError{Code: int32(r.error_code), Message: "delivery failed"}
	}
	return d
}

// Producer is a producer checked out by With or Transaction, valid until
// that function returns (afterwards its calls fail with ErrStaleHandle).
// It may be used from several goroutines while valid.
type Producer struct {
	h      *C.wdpool_producer
	parent context.Context // the context With got
	owner  uint64
	owned  bool // parent already carries owner
}

// Context returns the context of the With that checked this producer out,
// carrying its owner: a With or Transaction given this context (or one
// derived from it) gets this same producer and joins its transaction.
// (Each call may return a new context value; all of them carry the same
// owner. Nothing is cached on the Producer: a With allocates as little as
// it can.)
func (p *Producer) Context() context.Context {
	if p.owned {
		return p.parent
	}
	return context.WithValue(p.parent, ownerKey{}, p.owner)
}

// Info says what the producer is.
type ProducerInfo struct {
	Index         int
	PoolID        uint64
	Transactional bool
	InTransaction bool
	Depth         int
	RollbackOnly  bool
}

// Info returns what the producer is (its slot index, transaction state).
func (p *Producer) Info() (ProducerInfo, error) {
	var i C.wdpool_producer_info
	var cerr *C.wdpool_error
	if err := takeError(C.wdpool_producer_get_info(p.h, &i, &cerr), cerr); err != nil {
		return ProducerInfo{}, err
	}
	return ProducerInfo{Index: int(i.index), PoolID: uint64(i.pool_id), Transactional: bool(i.transactional),
		InTransaction: bool(i.in_transaction), Depth: int(i.depth), RollbackOnly: bool(i.rollback_only)}, nil
}

// cMessages holds messages built in one block of C memory.
type cMessages struct {
	base unsafe.Pointer
	msgs *C.wdpool_message
}

func (m *cMessages) free() { C.free(m.base) }

func invalid(format string) error { return &Error{Code: ResultInvalidMessage, Message: format} }

// buildMessages copies msgs into one C allocation: the wdpool_message
// array, the header arrays, then every string and byte range. No Go
// pointer is handed to C.
func buildMessages(msgs []*Message) (*cMessages, error) {
	if len(msgs) == 0 {
		return nil, invalid("no message")
	}
	var nHeaders, nBytes int
	for i, m := range msgs {
		if m == nil {
			return nil, invalid("message " + itoa(uint64(i)) + ": nil")
		}
		if strings.IndexByte(m.Topic, 0) >= 0 {
			return nil, invalid("message " + itoa(uint64(i)) + ": topic contains a NUL byte")
		}
		nBytes += len(m.Topic) + 1 + len(m.Payload) + len(m.Key) + len(m.PartitionKey)
		nHeaders += len(m.Headers)
		for _, h := range m.Headers {
			if strings.IndexByte(h.Key, 0) >= 0 {
				return nil, invalid("message " + itoa(uint64(i)) + ": header key contains a NUL byte")
			}
			nBytes += len(h.Key) + 1 + len(h.Value)
		}
	}
	msgSize := int(unsafe.Sizeof(C.wdpool_message{})) * len(msgs)
	hdrSize := int(unsafe.Sizeof(C.wdpool_header{})) * nHeaders
	total := msgSize + hdrSize + nBytes + 1
	base := C.malloc(C.size_t(total))
	if base == nil {
		panic("wdpool: out of memory")
	}
	all := unsafe.Slice((*byte)(base), total)
	cms := unsafe.Slice((*C.wdpool_message)(base), len(msgs))
	var chs []C.wdpool_header
	if nHeaders > 0 {
		chs = unsafe.Slice((*C.wdpool_header)(unsafe.Add(base, msgSize)), nHeaders)
	}
	off := msgSize + hdrSize
	bytes := func(b []byte) C.wdpool_bytes {
		if b == nil {
			return C.wdpool_bytes{}
		}
		p := unsafe.Pointer(&all[off])
		copy(all[off:], b)
		off += len(b)
		return C.wdpool_bytes{data: (*C.uint8_t)(p), len: C.size_t(len(b))}
	}
	str := func(s string) *C.char {
		p := unsafe.Pointer(&all[off])
		copy(all[off:], s)
		all[off+len(s)] = 0
		off += len(s) + 1
		return (*C.char)(p)
	}
	hi := 0
	for i, m := range msgs {
		cm := &cms[i]
		C.wdpool_message_init(cm)
		cm.topic = str(m.Topic)
		cm.payload = bytes(m.Payload)
		cm.key = bytes(m.Key)
		cm.partition_key = bytes(m.PartitionKey)
		if m.Partition != nil {
			cm.partition = C.int32_t(*m.Partition)
		}
		if !m.Timestamp.IsZero() {
			cm.timestamp_ms = C.int64_t(m.Timestamp.UnixMilli())
		}
		if len(m.Headers) > 0 {
			cm.headers = &chs[hi]
			cm.headers_len = C.size_t(len(m.Headers))
			for _, h := range m.Headers {
				chs[hi].key = str(h.Key)
				chs[hi].value = bytes(h.Value)
				hi++
			}
		}
	}
	return &cMessages{base: base, msgs: &cms[0]}, nil
}

// ProduceSync produces m and waits for its delivery report, up to ctx's
// deadline (else the producer's max_wait_timeout). The report is returned
// also when delivery failed. When ctx is cancelled first, ProduceSync
// returns ctx.Err() at once; the message may still be delivered (librdkafka
// cannot take it back), and on a transactional producer outside a
// transaction, its own transaction still commits or aborts.
func (p *Producer) ProduceSync(ctx context.Context, m *Message) (DeliveryReport, error) {
	none := DeliveryReport{Partition: -1, Offset: -1}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	cm, err := buildMessages([]*Message{m})
	if err != nil {
		return none, err
	}
	h, timeout := p.h, timeoutOf(ctx)
	r, err := await(ctx, func() C.wdpool_go_sync_result {
		defer cm.free()
		return C.wdpool_go_produce_sync(h, cm.msgs, cTimeout(timeout))
	}, func(r C.wdpool_go_sync_result) { takeError(r.rc, r.err) })
	if err != nil {
		return none, err
	}
	return reportFromC(&r.report, m.Topic), takeError(r.rc, r.err)
}

// ProduceManySync produces msgs (all validated first: if one is invalid
// none is sent) and waits for every report, up to ctx's deadline; ctx's
// cancellation as ProduceSync.
func (p *Producer) ProduceManySync(ctx context.Context, msgs []*Message) ([]DeliveryReport, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cm, err := buildMessages(msgs)
	if err != nil {
		return nil, err
	}
	n := len(msgs)
	reps := (*C.wdpool_report)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.wdpool_report{}))))
	crs := unsafe.Slice(reps, n)
	for i := range crs {
		crs[i] = C.wdpool_report{partition: -1, offset: -1, timestamp_ms: -1}
	}
	h, timeout := p.h, timeoutOf(ctx)
	release := func(r C.wdpool_go_call_result) {
		takeError(r.rc, r.err)
		C.free(unsafe.Pointer(reps))
	}
	r, err := await(ctx, func() C.wdpool_go_call_result {
		defer cm.free()
		return C.wdpool_go_produce_many_sync(h, cm.msgs, C.size_t(n), cTimeout(timeout), reps)
	}, release)
	if err != nil {
		return nil, err
	}
	out := make([]DeliveryReport, n)
	for i := range crs {
		var gr C.wdpool_go_report
		C.wdpool_go_report_of(&crs[i], &gr)
		out[i] = reportFromC(&gr, msgs[i].Topic)
	}
	C.free(unsafe.Pointer(reps))
	return out, takeError(r.rc, r.err)
}

// ProduceAsync produces m without waiting for its delivery. Wait on the
// returned Delivery, or Close it to drop its reports (the message is still
// delivered).
func (p *Producer) ProduceAsync(m *Message) (*Delivery, error) {
	if canProduceOne(m) {
		d, hs, err := reserveSlot(m.Topic)
		if err != nil {
			return nil, err
		}
		if _, err, _ := p.produceOne(m, true, hs.slots, d.slot, 0, 0); err != nil {
			return nil, err // its slot is EMPTY; the Delivery is never handed out
		}
		return d, nil
	}
	cm, err := buildMessages([]*Message{m})
	if err != nil {
		return nil, err
	}
	defer cm.free()
	r := C.wdpool_go_produce_async(p.h, cm.msgs)
	if err := takeError(r.rc, r.err); err != nil {
		return nil, err
	}
	return newDelivery(uintptr(r.delivery), m.Topic, nil), nil
}

// Send produces m fire-and-forget: no delivery report is kept.
func (p *Producer) Send(m *Message) error {
	if _, err, ok := p.produceOne(m, false, 0, 0, 0, 0); ok {
		return err
	}
	cm, err := buildMessages([]*Message{m})
	if err != nil {
		return err
	}
	defer cm.free()
	var cerr *C.wdpool_error
	return takeError(C.wdpool_producer_produce_async(p.h, cm.msgs, nil, &cerr), cerr)
}

// produceOne is the one-cgo-call path of ProduceAsync and Send, for a
// message without headers whose topic fits a stack buffer (ok false:
// take the general path).
func (p *Producer) produceOne(m *Message, wantDelivery bool, slots uintptr, slot int32, queue uintptr, tag uint64) (uintptr, error, bool) {
	if !canProduceOne(m) {
		return 0, nil, false
	}
	want := C.int(0)
	if wantDelivery {
		want = 1
	}
	c := oneOf(m)
	r := C.wdpool_go_produce_one(addrOf(p.h), c.topic, c.topicLen, c.payload, c.payloadLen, c.hasPayload,
		c.key, c.keyLen, c.hasKey, c.pkey, c.pkeyLen, c.hasPkey, c.partition, c.hasPartition, c.ts, want,
		C.uintptr_t(slots), C.size_t(slot), C.uintptr_t(queue), C.uint64_t(tag))
	runtime.KeepAlive(m)
	return uintptr(r.delivery), takeError(r.rc, r.err), true
}

// cOne is a message canProduceOne accepts as the one-call C helpers take
// it: Go memory (bytes, no pointers) for the length of one call.
type cOne struct {
	topic                       *C.char
	topicLen                    C.size_t
	payload, key, pkey          *C.uint8_t
	payloadLen, keyLen, pkeyLen C.size_t
	hasPayload, hasKey, hasPkey C.int
	partition                   C.int32_t
	hasPartition                C.int
	ts                          C.int64_t
}

func oneOf(m *Message) (c cOne) {
	if m.Partition != nil {
		c.partition, c.hasPartition = C.int32_t(*m.Partition), 1
	}
	if !m.Timestamp.IsZero() {
		c.ts = C.int64_t(m.Timestamp.UnixMilli())
	}
	c.topic, c.topicLen = (*C.char)(unsafe.Pointer(unsafe.StringData(m.Topic))), C.size_t(len(m.Topic))
	c.payload, c.payloadLen, c.hasPayload = goBytes(m.Payload)
	c.key, c.keyLen, c.hasKey = goBytes(m.Key)
	c.pkey, c.pkeyLen, c.hasPkey = goBytes(m.PartitionKey)
	return c
}

// sendOne is the one-cgo-call path of Pool.Send, Pool.ProduceTagged and
// Pool.ProduceAsync (see wdpool_go_pool_send_one) for a message
// canProduceOne accepts, on p (nil: the global pool), for ctx's owner,
// into report slot slot of the slots at slots (when not 0), else into the
// report queue at queue (0: fire and forget). sent is false when no
// producer was free at once and nothing was produced.
func sendOne(ctx context.Context, p *Pool, m *Message, slots uintptr, slot int32, queue uintptr, tag uint64) (sent bool, err error) {
	var pool uintptr
	if p != nil {
		pool = uintptr(unsafe.Pointer(p.h))
	}
	owner, _ := ownerOf(ctx)
	c := oneOf(m)
	r := C.wdpool_go_pool_send_one(C.uintptr_t(pool), C.wdpool_owner(owner), c.topic, c.topicLen,
		c.payload, c.payloadLen, c.hasPayload, c.key, c.keyLen, c.hasKey, c.pkey, c.pkeyLen, c.hasPkey,
		c.partition, c.hasPartition, c.ts, C.uintptr_t(slots), C.size_t(slot), C.uintptr_t(queue), C.uint64_t(tag))
	runtime.KeepAlive(p)
	runtime.KeepAlive(m)
	return r.sent != 0, takeError(r.rc, r.err)
}

// canProduceOne: m takes produceOne's path (no headers, a topic that fits
// its stack buffer).
func canProduceOne(m *Message) bool {
	return m != nil && len(m.Headers) == 0 && len(m.Topic) < 256 && strings.IndexByte(m.Topic, 0) < 0
}

// goBytes passes b to C for one call: its data (nil when empty), length,
// and whether it was given at all (nil: not given).
func goBytes(b []byte) (*C.uint8_t, C.size_t, C.int) {
	if b == nil {
		return nil, 0, 0
	}
	if len(b) == 0 {
		return nil, 0, 1
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b)), 1
}

// ProduceManyAsync produces msgs without waiting; one Delivery covers them.
func (p *Producer) ProduceManyAsync(msgs []*Message) (*Delivery, error) {
	cm, err := buildMessages(msgs)
	if err != nil {
		return nil, err
	}
	defer cm.free()
	r := C.wdpool_go_produce_many_async(p.h, cm.msgs, C.size_t(len(msgs)))
	if err := takeError(r.rc, r.err); err != nil {
		return nil, err
	}
	topics := make([]string, len(msgs))
	for i, m := range msgs {
		topics[i] = m.Topic
	}
	return newDelivery(uintptr(r.delivery), topics[0], topics), nil
}

// Flush waits until everything this producer queued is delivered or
// failed, up to ctx's deadline (else its max_wait_timeout). When ctx is
// cancelled first, Flush returns ctx.Err() at once (librdkafka's flush
// goes on, within that timeout, on a goroutine of the package).
func (p *Producer) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h, timeout := p.h, timeoutOf(ctx)
	r, err := await(ctx, func() C.wdpool_go_call_result {
		return C.wdpool_go_flush(h, cTimeout(timeout))
	}, func(r C.wdpool_go_call_result) { takeError(r.rc, r.err) })
	if err != nil {
		return err
	}
	return takeError(r.rc, r.err)
}
