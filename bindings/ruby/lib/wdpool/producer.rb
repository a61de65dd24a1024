# frozen_string_literal: true

module WdPool
  # The outcome of one message (WaterDrop's / rdkafka's delivery report).
  # `error` is nil when delivered, else librdkafka's error code (Integer).
  DeliveryReport = Struct.new(:topic, :partition, :offset, :timestamp, :error, keyword_init: true) do
    alias_method :topic_name, :topic

    def delivered?
      error.nil?
    end
  end

  # Helpers to build native messages. Internal.
  module Messages
    MESSAGE_SIZE = Native::Message.size
    HEADER_SIZE = Native::Header.size
    TOPIC_RE = /\A(\w|-|\.)+\z/.freeze

    module_function

    def bytes(keep, field, value, str_field)
      return if value.nil?

      s = value.is_a?(String) ? value : value.to_s
      s = s.b unless s.encoding == Encoding::BINARY
      mem = FFI::MemoryPointer.new(:uint8, s.bytesize.zero? ? 1 : s.bytesize, false)
      mem.put_bytes(0, s)
      keep << mem
      field[:data] = mem
      field[:len] = s.bytesize
      str_field
    end

    def cstring(keep, value)
      mem = FFI::MemoryPointer.from_string(value.to_s)
      keep << mem
      mem
    end

    # Fills the native message at `ptr` from WaterDrop's message hash.
    def fill(ptr, keep, message)
      raise ArgumentError, "a message is a Hash, got #{message.class}" unless message.is_a?(Hash)

      Native.wdpool_message_init(ptr)
      m = Native::Message.new(ptr)
      topic = message[:topic] || message['topic']
      raise Errors::InvalidMessageError.new('topic: missing').init_details(:invalid_message, 0) if topic.nil?

      m[:topic] = cstring(keep, topic)
      bytes(keep, m[:payload], message.fetch(:payload) { message['payload'] }, :payload)
      bytes(keep, m[:key], message[:key] || message['key'], :key)
      bytes(keep, m[:partition_key], message[:partition_key] || message['partition_key'], :partition_key)
      partition = message[:partition] || message['partition']
      unless partition.nil?
        unless partition.is_a?(Integer)
          raise Errors::InvalidMessageError.new("partition: must be an Integer, got #{partition.inspect}").init_details(:invalid_message, 0)
        end
        m[:partition] = partition
      end
      ts = message[:timestamp] || message['timestamp']
      case ts
      when nil then nil
      when Time then m[:timestamp_ms] = (ts.to_r * 1000).to_i
      when Integer then m[:timestamp_ms] = ts
      else
        raise Errors::InvalidMessageError.new("timestamp: must be a Time or Integer (ms), got #{ts.inspect}").init_details(:invalid_message, 0)
      end
      headers = message[:headers] || message['headers']
      fill_headers(m, keep, headers) if headers && !headers.empty?
      m
    end

    def fill_headers(m, keep, headers)
      unless headers.is_a?(Hash)
        raise Errors::InvalidMessageError.new('headers: must be a Hash').init_details(:invalid_message, 0)
      end

      pairs = []
      headers.each do |k, v|
        if v.is_a?(Array)
          v.each { |x| pairs << [k, x] }
        else
          pairs << [k, v]
        end
      end
      mem = FFI::MemoryPointer.new(HEADER_SIZE, pairs.size, true)
      keep << mem
      pairs.each_with_index do |(k, v), i|
        h = Native::Header.new(mem + i * HEADER_SIZE)
        h[:key] = cstring(keep, k)
        bytes(keep, h[:value], v, :value)
      end
      m[:headers] = mem
      m[:headers_len] = pairs.size
    end

    def report(r, topic = nil)
      code = r[:error_code]
      DeliveryReport.new(
        topic: topic || (r[:topic].null? ? nil : r[:topic].read_string.force_encoding(Encoding::UTF_8)),
        partition: r[:partition], offset: r[:offset],
        timestamp: r[:timestamp_ms] >= 0 ? Time.at(r[:timestamp_ms] / 1000r) : nil,
        error: code.zero? ? nil : code
      )
    end
  end

  # What produce_async / produce_many_async return: the delivery reports of
  # one call, to wait on. Freed by the garbage collector (never blocks).
  class DeliveryHandle
    # Frees the native delivery handle in the process that made it.
    class Releaser
      def initialize(ptr)
        @address = ptr.address
        @pid = Process.pid
      end

      def call(*)
        Native.wdpool_delivery_free(FFI::Pointer.new(@address)) if Process.pid == @pid
      end
    end

    def initialize(ptr, topics)
      @ptr = ptr
      @topics = topics
      ObjectSpace.define_finalizer(self, Releaser.new(ptr))
    end

    # How many messages it covers.
    def count
      Native.wdpool_delivery_count(@ptr)
    end

    # Messages without a report yet.
    def pending
      Native.wdpool_delivery_pending(@ptr)
    end

    def pending?
      pending.positive?
    end

    # Waits for every report, at most `max_wait_timeout` milliseconds (nil:
    # the producer's max_wait_timeout). Returns the report (an Array for
    # several messages). Raises ProduceError when a message failed,
    # DeliveryTimeoutError when reports are still missing.
    def wait(max_wait_timeout: nil, raise_response_error: true)
      WdPool.scheduler_wait(max_wait_timeout) { pending.zero? } if WdPool.scheduled?
      err = FFI::MemoryPointer.new(:pointer)
      rc = Native.wdpool_delivery_wait(@ptr, max_wait_timeout ? max_wait_timeout.to_i : Native::TIMEOUT_DEFAULT, err)
      if rc != 0 && (raise_response_error || rc != 8)
        e = Errors.build(rc, err.get_pointer(0))
        e.report = reports_or_one if e.respond_to?(:report=) && rc == 8
        raise e
      end
      reports_or_one
    end

    # The reports that arrived (nil for those still pending).
    def reports
      r = Native::Report.new
      err = FFI::MemoryPointer.new(:pointer)
      Array.new(count) do |i|
        rc = Native.wdpool_delivery_report(@ptr, i, r, err)
        if rc.zero?
          Messages.report(r, @topics[i])
        elsif rc == 14
          nil
        else
          raise Errors.build(rc, err.get_pointer(0))
        end
      end
    end

    def report
      reports.first
    end

    private

    def reports_or_one
      list = reports
      list.size == 1 ? list.first : list
    end
  end

  # A producer checked out of a pool: valid inside the `with` / `transaction`
  # block that gave it; afterwards every call raises StaleHandleError.
  class Producer
    attr_reader :pool

    # `token`: the native handle as an Integer (the pointer's value).
    def initialize(token, pool)
      @token = token
      @pool = pool
    end

    # Internal: what `with` calls on Producer.allocate instead of
    # Producer.new(token, pool), whose call of #initialize from C skips the
    # inline method cache (about 25 ns on an empty `with`).
    def __lease(token, pool)
      @token = token
      @pool = pool
      self
    end

    # Produces one message and waits for its delivery report. Under a fiber
    # scheduler (ruby-async) the wait lets the thread's other fibers run.
    def produce_sync(**message)
      return produce_async(**message).wait if WdPool.scheduled?

      keep = []
      mem = FFI::MemoryPointer.new(Messages::MESSAGE_SIZE, 1, false)
      Messages.fill(mem, keep, message)
      report = Native::Report.new
      err = FFI::MemoryPointer.new(:pointer)
      rc = Native.wdpool_producer_produce_sync(handle, mem, Native::TIMEOUT_DEFAULT, report, err)
      topic = (message[:topic] || message['topic']).to_s
      unless rc.zero?
        e = Errors.build(rc, err.get_pointer(0))
        e.report = Messages.report(report, topic) if e.respond_to?(:report=)
        raise e
      end
      Messages.report(report, topic)
    end

    # Produces one message without waiting; returns a DeliveryHandle.
    def produce_async(**message)
      keep = []
      mem = FFI::MemoryPointer.new(Messages::MESSAGE_SIZE, 1, false)
      Messages.fill(mem, keep, message)
      out = FFI::MemoryPointer.new(:pointer, 2)
      err = out + FFI::Pointer.size
      rc = if may_wait_for_transaction?
             Native.wdpool_producer_produce_async_blocking(handle, mem, out, err)
           else
             Native.wdpool_producer_produce_async(handle, mem, out, err)
           end
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      DeliveryHandle.new(out.get_pointer(0), [(message[:topic] || message['topic']).to_s])
    end

    # Produces many messages and waits for all reports; returns them.
    def produce_many_sync(messages)
      return [] if messages.empty?
      if WdPool.scheduled?
        reports = produce_many_async(messages).wait
        return reports.is_a?(Array) ? reports : [reports]
      end

      keep = []
      mem = many(messages, keep)
      reports = FFI::MemoryPointer.new(Native::Report.size, messages.size, true)
      err = FFI::MemoryPointer.new(:pointer)
      rc = Native.wdpool_producer_produce_many_sync(handle, mem, messages.size, Native::TIMEOUT_DEFAULT, reports, err)
      list = messages.each_with_index.map do |m, i|
        Messages.report(Native::Report.new(reports + i * Native::Report.size), (m[:topic] || m['topic']).to_s)
      end
      unless rc.zero?
        e = Errors.build(rc, err.get_pointer(0))
        e.report = list if e.respond_to?(:report=)
        raise e
      end
      list
    end

    # Produces many messages without waiting; returns one DeliveryHandle for all.
    def produce_many_async(messages)
      keep = []
      mem = many(messages, keep)
      out = FFI::MemoryPointer.new(:pointer, 2)
      err = out + FFI::Pointer.size
      rc = if may_wait_for_transaction?
             Native.wdpool_producer_produce_many_async_blocking(handle, mem, messages.size, out, err)
           else
             Native.wdpool_producer_produce_many_async(handle, mem, messages.size, out, err)
           end
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      DeliveryHandle.new(out.get_pointer(0), messages.map { |m| (m[:topic] || m['topic']).to_s })
    end

    # Waits until everything this producer queued is delivered (ms; nil: max_wait_timeout).
    def flush(timeout: nil)
      err = FFI::MemoryPointer.new(:pointer)
      h = handle
      rc = WdPool.off_thread { Native.wdpool_producer_flush(h, timeout ? timeout.to_i : Native::TIMEOUT_DEFAULT, err) }
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      true
    end

    # Runs the block as one transaction level: commits when it returns, rolls
    # back when it raises (the exception propagates unchanged) or raises
    # WdPool::AbortTransaction (no error). Leaving it with break/return/throw
    # rolls back and raises WdPool::Errors::EarlyTransactionExit. Nesting
    # rules are wdpool's (wdpool_producer_end).
    def transaction
      Thread.handle_interrupt(ConnectionPool::DEFER) do
        err = FFI::MemoryPointer.new(:pointer)
        h = handle
        rc = WdPool.off_thread { Native.wdpool_producer_begin(h, Native::TIMEOUT_DEFAULT, err) }
        raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

        outcome = Native::TXN_EXIT
        begin
          result = Thread.handle_interrupt(ConnectionPool::ALLOW) { yield(self) }
          outcome = Native::TXN_COMMIT
          result
        rescue AbortTransaction
          outcome = Native::TXN_ABORT
          nil
        rescue Exception # rubocop:disable Lint/RescueException
          outcome = Native::TXN_FAIL
          raise
        ensure
          ended = FFI::MemoryPointer.new(:int)
          rc = WdPool.off_thread { Native.wdpool_producer_end(h, outcome, Native::TIMEOUT_DEFAULT, ended, err) }
          # FAIL: the block's own exception propagates unchanged.
          raise Errors.build(rc, err.get_pointer(0)) if !rc.zero? && outcome != Native::TXN_FAIL
          Native.wdpool_error_free(err.get_pointer(0)) if !rc.zero? && outcome == Native::TXN_FAIL
        end
      end
    end

    def transactional?
      info[:transactional]
    end

    # Transaction levels the current fiber has open on this producer.
    def transaction_depth
      info[:depth]
    end

    def in_transaction?
      info[:in_transaction]
    end

    # { index:, pool_id:, transactional:, in_transaction:, depth:, rollback_only: }
    def info
      i = Native::ProducerInfo.new
      err = FFI::MemoryPointer.new(:pointer)
      rc = Native.wdpool_producer_get_info(handle, i, err)
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      { index: i[:index], pool_id: i[:pool_id], transactional: i[:transactional],
        in_transaction: i[:in_transaction], depth: i[:depth], rollback_only: i[:rollback_only] }
    end

    # The slot's zero-based index.
    def index
      info[:index]
    end

    # Internal: the native handle.
    def handle
      @handle ||= FFI::Pointer.new(@token)
    end

    private

    # A transactional producer outside the caller's transaction waits for the
    # message's own transaction: release the GVL then.
    def may_wait_for_transaction?
      if @transactional.nil?
        i = Native::ProducerInfo.new
        return false unless Native.wdpool_producer_get_info(handle, i, nil).zero?

        @transactional = i[:transactional]
        return i[:depth].zero? if @transactional
      end
      return false unless @transactional

      i = Native::ProducerInfo.new
      Native.wdpool_producer_get_info(handle, i, nil)
      i[:depth].zero?
    end

    def many(messages, keep)
      raise ArgumentError, 'messages must be an Array of Hashes' unless messages.is_a?(Array)

      mem = FFI::MemoryPointer.new(Messages::MESSAGE_SIZE, [messages.size, 1].max, false)
      messages.each_with_index { |m, i| Messages.fill(mem + i * Messages::MESSAGE_SIZE, keep, m) }
      mem
    end
  end
end
