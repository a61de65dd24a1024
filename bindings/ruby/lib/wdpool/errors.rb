# frozen_string_literal: true

require 'timeout'
require 'connection_pool'

module WdPool
  # Raise it inside a transaction block to roll the transaction back without
  # an error (WaterDrop's WaterDrop::AbortTransaction).
  class AbortTransaction < StandardError; end

  module Errors
    # Included by every error this gem raises: `rescue WdPool::Errors::Error`.
    module Error
      # The wdpool result code as a symbol (:timeout, :kafka, ...), or nil.
      attr_reader :code
      # librdkafka's error code (rd_kafka_resp_err_t), or 0.
      attr_reader :kafka_code
      # librdkafka's classification (wdpool_error_kafka_flags): an Integer of
      # WdPool::Native::KAFKA_* bits; 0 when the error is not librdkafka's.
      attr_reader :kafka_flags

      def init_details(code, kafka_code, kafka_flags = 0)
        @code = code
        @kafka_code = kafka_code || 0
        @kafka_flags = kafka_flags || 0
        self
      end

      # librdkafka says the failed call may succeed if made again.
      def retriable?
        (kafka_flags.to_i & Native::KAFKA_RETRIABLE) != 0
      end

      # librdkafka says the producer hit a fatal error (it is replaced).
      def fatal?
        (kafka_flags.to_i & Native::KAFKA_FATAL) != 0
      end

      # librdkafka says the transaction had to be aborted (it was rolled back).
      def txn_requires_abort?
        (kafka_flags.to_i & Native::KAFKA_TXN_REQUIRES_ABORT) != 0
      end
    end

    # The base class of the gem's errors, except the pool timeout error.
    class BaseError < StandardError
      include Error
    end

    # No producer became free within the checkout timeout. A Timeout::Error,
    # and a ConnectionPool::TimeoutError as WaterDrop's is.
    class PoolTimeoutError < ::ConnectionPool::TimeoutError
      include Error
    end
    TimeoutError = PoolTimeoutError

    class NullParameterError < BaseError; end
    class InvalidArgumentError < BaseError; end
    # A configuration key or value was refused; #key names it.
    class InvalidConfigurationError < BaseError
      attr_accessor :key
    end
    # A message was refused before anything was sent; the message names the field.
    class InvalidMessageError < BaseError; end
    # The pool (or producer) is closed.
    class ClosedError < BaseError; end
    # No global pool is set up (WdPool::ConnectionPool.setup).
    class NotSetUpError < BaseError; end
    # librdkafka reported an error; #kafka_code tells which.
    class ProduceError < BaseError
      # The delivery report(s), when there are some.
      attr_accessor :report
    end
    # Delivery reports did not arrive in time (the messages may still be delivered).
    class DeliveryTimeoutError < BaseError; end
    class PendingError < BaseError; end
    # The producer hit a fatal error (fenced, ...): its slot gets a fresh one.
    class FatalError < BaseError; end
    # A handle was used after its lease ended (a producer kept beyond `with`).
    class StaleHandleError < BaseError; end
    class CallbackFailedError < BaseError; end
    # A block given to a callback-driven call (configure, subscriber) left by
    # break/return/throw: it cannot cross the native frames, so it is
    # reported as this error after the native call returned.
    class NonLocalExitError < BaseError; end
    # A bug in wdpool (a Rust panic caught at the boundary).
    class PanicError < BaseError; end
    class UnknownError < BaseError; end

    class TransactionError < BaseError; end
    # A transaction was asked of a producer without transactional.id.
    class NotTransactionalError < TransactionError; end
    # The transaction was rolled back: an abortable Kafka error, or an inner level failed.
    class TransactionAbortedError < TransactionError; end
    # A transaction block was left by break/return/next-less exits/throw: rolled back.
    class EarlyTransactionExit < TransactionError; end

    CLASSES = {
      null_parameter: NullParameterError, invalid_argument: InvalidArgumentError,
      invalid_config: InvalidConfigurationError, invalid_message: InvalidMessageError,
      timeout: PoolTimeoutError, closed: ClosedError, not_transactional: NotTransactionalError,
      kafka: ProduceError, callback_failed: CallbackFailedError,
      transaction_aborted: TransactionAbortedError, stale_handle: StaleHandleError,
      not_set_up: NotSetUpError, delivery_timeout: DeliveryTimeoutError, pending: PendingError,
      fatal: FatalError, transaction_exited_early: EarlyTransactionExit, panic: PanicError
    }.freeze

    module_function

    # Builds the error of `rc` from the wdpool_error a call left in
    # `err_slot` (a per-fiber slot: see ConnectionPool#with), taking it out
    # of the slot first, with asynchronous exceptions deferred until the
    # native error is freed. Before that, an interrupt leaves it in the slot,
    # where `with`'s ensure frees it (#discard).
    def take(rc, err_slot)
      Thread.handle_interrupt(ConnectionPool::DEFER) do
        ptr = err_slot.get_pointer(0)
        err_slot.put_pointer(0, nil)
        build(rc, ptr)
      end
    end

    # Frees a wdpool_error left in `err_slot` (its call was interrupted
    # before #take), if any.
    def discard(err_slot)
      ptr = err_slot.get_pointer(0)
      return if ptr.null?

      err_slot.put_pointer(0, nil)
      Native.wdpool_error_free(ptr)
    end

    # Builds the exception for result `rc` from the wdpool_error at `err_ptr`
    # (may be NULL), and frees it.
    def build(rc, err_ptr = nil)
      code = Native::RESULT_NAMES[rc] || :unknown
      if err_ptr && !err_ptr.null?
        message = Native.wdpool_error_message(err_ptr).dup.force_encoding(Encoding::UTF_8)
        kafka_code = Native.wdpool_error_kafka_code(err_ptr)
        kafka_flags = Native.wdpool_error_kafka_flags(err_ptr)
        Native.wdpool_error_free(err_ptr)
      else
        message = Native.wdpool_result_name(rc)
        kafka_code = 0
        kafka_flags = 0
      end
      klass = CLASSES[code] || UnknownError
      error = klass.new(message)
      error.init_details(code, kafka_code, kafka_flags)
      if error.is_a?(InvalidConfigurationError)
        error.key = message[/"([^"]+)"/, 1] || message[/property ([\w.]+)/, 1]
      end
      error
    end
  end
end
