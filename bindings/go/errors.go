package wdpool

/*
#include "wdpool.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// Result is a wdpool_result code of the C ABI.
type Result int

// The C ABI's result codes (include/wdpool.h). An unknown code is a failure.
const (
	resultOK                     Result = C.WDPOOL_OK
	ResultNullParameter          Result = C.WDPOOL_NULL_PARAMETER
	ResultInvalidArgument        Result = C.WDPOOL_INVALID_ARGUMENT
	ResultInvalidConfig          Result = C.WDPOOL_INVALID_CONFIG
	ResultInvalidMessage         Result = C.WDPOOL_INVALID_MESSAGE
	ResultTimeout                Result = C.WDPOOL_TIMEOUT
	ResultClosed                 Result = C.WDPOOL_CLOSED
	ResultNotTransactional       Result = C.WDPOOL_NOT_TRANSACTIONAL
	ResultKafka                  Result = C.WDPOOL_KAFKA
	ResultCallbackFailed         Result = C.WDPOOL_CALLBACK_FAILED
	ResultTransactionAborted     Result = C.WDPOOL_TRANSACTION_ABORTED
	ResultStaleHandle            Result = C.WDPOOL_STALE_HANDLE
	ResultNotSetUp               Result = C.WDPOOL_NOT_SET_UP
	ResultDeliveryTimeout        Result = C.WDPOOL_DELIVERY_TIMEOUT
	ResultPending                Result = C.WDPOOL_PENDING
	ResultFatal                  Result = C.WDPOOL_FATAL
	ResultTransactionExitedEarly Result = C.WDPOOL_TRANSACTION_EXITED_EARLY
	ResultPanic                  Result = C.WDPOOL_PANIC
)

// String is the code's C name, such as "WDPOOL_TIMEOUT".
func (r Result) String() string { return C.GoString(C.wdpool_result_name(C.int(r))) }

// sentinel is an error value compared with errors.Is against *Error.
type sentinel struct {
	code Result
	text string
}

func (s *sentinel) Error() string { return s.text }

// Sentinels for errors.Is. Every error the package returns for a failed C
// call is an *Error, which matches the sentinel of its result code.
var (
	ErrInvalidArgument    error = &sentinel{ResultInvalidArgument, "wdpool: invalid argument"}
	ErrInvalidConfig      error = &sentinel{ResultInvalidConfig, "wdpool: invalid configuration"}
	ErrInvalidMessage     error = &sentinel{ResultInvalidMessage, "wdpool: invalid message"}
	ErrPoolTimeout        error = &sentinel{ResultTimeout, "wdpool: no producer available in time"}
	ErrPoolClosed         error = &sentinel{ResultClosed, "wdpool: pool closed"}
	ErrNotTransactional   error = &sentinel{ResultNotTransactional, "wdpool: producer is not transactional"}
	ErrKafka              error = &sentinel{ResultKafka, "wdpool: kafka error"}
	ErrConfigureFailed    error = &sentinel{ResultCallbackFailed, "wdpool: callback failed"}
	ErrTransactionAborted error = &sentinel{ResultTransactionAborted, "wdpool: transaction aborted"}
	ErrStaleHandle        error = &sentinel{ResultStaleHandle, "wdpool: stale handle (used outside its With)"}
	ErrNotSetUp           error = &sentinel{ResultNotSetUp, "wdpool: no global pool: call Setup first"}
	ErrDeliveryTimeout    error = &sentinel{ResultDeliveryTimeout, "wdpool: delivery reports did not arrive in time"}
	ErrFatal              error = &sentinel{ResultFatal, "wdpool: fatal producer error (the producer is replaced)"}
	ErrEarlyExit          error = &sentinel{ResultTransactionExitedEarly, "wdpool: transaction exited early"}
	ErrInternal           error = &sentinel{ResultPanic, "wdpool: internal error (a bug in wdpool)"}
)

// ErrAbortTransaction, returned by a Transaction's function, rolls the
// transaction back; Transaction then returns nil (WaterDrop's abort signal).
var ErrAbortTransaction = errors.New("wdpool: abort transaction")

// Error is a failed wdpool call: its result code and wdpool's message.
// errors.Is(err, ErrPoolTimeout) and the other sentinels match on Code;
// errors.As(err, &kafkaErr) finds the *KafkaError when librdkafka's code
// is known.
type Error struct {
	Code    Result
	Message string
	Kafka   *KafkaError // nil unless librdkafka reported a code
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "wdpool: " + e.Code.String()
	}
	return "wdpool: " + e.Message
}

// Is matches the sentinel of e.Code.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.code == e.Code
}

func (e *Error) Unwrap() error {
	if e.Kafka != nil {
		return e.Kafka
	}
	return nil
}

// KafkaError carries librdkafka's error code (rd_kafka_resp_err_t) and its
// classification of the error (wdpool_error_kafka_flags): Retriable, Fatal
// and TxnRequiresAbort say what librdkafka says. For transactional calls
// they are its rd_kafka_error_t flags; for produce and delivery errors,
// which carry only a code, Fatal is RD_KAFKA_RESP_ERR__FATAL (or a producer
// with a fatal error) and Retriable RD_KAFKA_RESP_ERR__QUEUE_FULL; delivery
// failures come after librdkafka's own retries and have no flag. wdpool's
// own view is its result code: errors.Is(err, ErrFatal) when the producer
// is replaced (also for a commit that did not finish in time, which has no
// Kafka error at all).
type KafkaError struct {
	Code    int32
	Message string
	Flags   uint32 // C.WDPOOL_KAFKA_* bits
}

// Retriable: librdkafka says the failed call may succeed if made again
// (wdpool has already retried transactional calls within their timeout).
func (k *KafkaError) Retriable() bool { return k.Flags&C.WDPOOL_KAFKA_RETRIABLE != 0 }

// Fatal: librdkafka says the producer hit a fatal error; its slot gets a
// fresh producer.
func (k *KafkaError) Fatal() bool { return k.Flags&C.WDPOOL_KAFKA_FATAL != 0 }

// TxnRequiresAbort: librdkafka says the transaction had to be aborted
// (wdpool rolled it back; the producer stays usable).
func (k *KafkaError) TxnRequiresAbort() bool { return k.Flags&C.WDPOOL_KAFKA_TXN_REQUIRES_ABORT != 0 }

func (k *KafkaError) Error() string {
	return fmt.Sprintf("kafka error %d: %s", k.Code, k.Message)
}

// takeError turns a result code and its C error into a Go error and frees
// the C error. It returns nil for WDPOOL_OK.
func takeError[R ~uint32](rc R, cerr *C.wdpool_error) error {
	if cerr != nil {
		defer C.wdpool_error_free(cerr) // one cgo call less on success
	}
	if rc == C.WDPOOL_OK {
		return nil
	}
	e := &Error{Code: Result(rc)}
	if cerr != nil {
		e.Message = C.GoString(C.wdpool_error_message(cerr))
		if k := int32(C.wdpool_error_kafka_code(cerr)); k != 0 {
			e.Kafka = &KafkaError{Code: k, Message: e.Message, Flags: uint32(C.wdpool_error_kafka_flags(cerr))}
		}
	}
	return e
}
