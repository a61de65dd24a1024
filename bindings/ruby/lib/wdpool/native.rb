# frozen_string_literal: true

require 'ffi'

module WdPool
  # Raised at load time when libwdpool cannot be found or is of another ABI.
  class LoadError < ::LoadError; end

  # The raw C ABI of include/wdpool.h (ABI version 1). Internal: use
  # WdPool::ConnectionPool and friends.
  module Native
    extend FFI::Library

    # Where the library is looked for, in this order: pkg-config wdpool,
    # $WDPOOL_LIB (a file, or a directory holding libwdpool.so), then the
    # build tree (../../target/{release,debug}/libwdpool.so from the gem).
    def self.candidates
      tried = []
      pc_dir = begin
        out = IO.popen(%w[pkg-config --variable=libdir wdpool], err: File::NULL, &:read)
        $?.success? && !out.strip.empty? ? out.strip : nil
      rescue SystemCallError
        nil
      end
      tried << ['pkg-config wdpool', pc_dir ? File.join(pc_dir, 'libwdpool.so') : nil, 'no wdpool.pc (or no pkg-config)']
      env = ENV['WDPOOL_LIB']
      if env && !env.empty?
        tried << ['WDPOOL_LIB', File.directory?(env) ? File.join(env, 'libwdpool.so') : env]
      else
        tried << ['WDPOOL_LIB', nil, 'not set']
      end
      root = File.expand_path('../../../../..', __FILE__)
      %w[release debug].each do |kind|
        tried << ["build tree (#{kind})", File.join(root, 'target', kind, 'libwdpool.so')]
      end
      tried
    end

    def self.locate
      report = []
      candidates.each do |how, path, why|
        if path.nil?
          report << "#{how}: #{why}"
        elsif File.exist?(path)
          return [how, path]
        else
          report << "#{how}: #{path} does not exist"
        end
      end
      raise WdPool::LoadError,
            "libwdpool not found. Tried, in order:\n  #{report.join("\n  ")}\n" \
            'Install it (make install; pkg-config wdpool), set WDPOOL_LIB to the file or its ' \
            'directory, or build it in the source tree (make build).'
    end

    LIBRARY_SOURCE, LIBRARY_PATH = locate
    begin
      ffi_lib LIBRARY_PATH
    rescue ::LoadError => e
      raise WdPool::LoadError, "libwdpool found through #{LIBRARY_SOURCE} at #{LIBRARY_PATH} but could not be loaded: #{e.message}"
    end

    attach_function :wdpool_abi_version, [], :uint32
    attach_function :wdpool_version, [], :string
    abi = wdpool_abi_version
    if abi != WdPool::ABI_VERSION
      raise WdPool::LoadError,
            "#{LIBRARY_PATH} (through #{LIBRARY_SOURCE}) has ABI version #{abi}; this gem needs #{WdPool::ABI_VERSION}"
    end

    CB_OK = 1
    TIMEOUT_DEFAULT = -1
    OWNER_NONE = 0xFFFF_FFFF_FFFF_FFFF

    TXN_COMMIT = 1
    TXN_ABORT = 2
    TXN_FAIL = 3
    TXN_EXIT = 4

    # wdpool_error_kafka_flags bits.
    KAFKA_RETRIABLE = 1
    KAFKA_FATAL = 2
    KAFKA_TXN_REQUIRES_ABORT = 4

    TXN_COMMITTED = 1
    TXN_ROLLED_BACK = 2
    TXN_LEVEL_CLOSED = 3

    RESULT_NAMES = {
      0 => :ok, 1 => :null_parameter, 2 => :invalid_argument, 3 => :invalid_config,
      4 => :invalid_message, 5 => :timeout, 6 => :closed, 7 => :not_transactional,
      8 => :kafka, 9 => :callback_failed, 10 => :transaction_aborted, 11 => :stale_handle,
      12 => :not_set_up, 13 => :delivery_timeout, 14 => :pending, 15 => :fatal,
      16 => :transaction_exited_early, 99 => :panic
    }.freeze

    class Bytes < FFI::Struct
      layout :data, :pointer, :len, :size_t
    end

    class Header < FFI::Struct
      layout :key, :pointer, :value, Bytes
    end

    class Message < FFI::Struct
      layout :topic, :pointer,
             :payload, Bytes,
             :key, Bytes,
             :partition_key, Bytes,
             :partition, :int32,
             :timestamp_ms, :int64,
             :headers, :pointer,
             :headers_len, :size_t
    end

    class Report < FFI::Struct
      layout :topic, :pointer, :partition, :int32, :offset, :int64, :timestamp_ms, :int64, :error_code, :int32
    end

    class Options < FFI::Struct
      layout :size, :size_t, :timeout_ms, :uint64
    end

    class CloseReport < FFI::Struct
      layout :closed, :size_t, :undelivered, :uint64, :in_use, :size_t
    end

    class Statistics < FFI::Struct
      layout :size, :size_t, :created, :size_t, :idle, :size_t, :in_use, :size_t,
             :creating, :size_t, :waiting, :size_t, :checkout_timeouts, :uint64,
             :total_wait_us, :uint64, :creations, :uint64, :replaced, :uint64, :closed, :bool
    end

    class ProducerInfo < FFI::Struct
      layout :index, :size_t, :pool_id, :uint64, :transactional, :bool, :in_transaction, :bool,
             :depth, :uint32, :rollback_only, :bool
    end

    class Event < FFI::Struct
      layout :kind, :int, :name, :pointer, :pool_id, :uint64, :global, :bool, :size, :size_t,
             :timeout_ms, :uint64, :slot, :int64, :producer_id, :pointer, :waited_ms, :uint64,
             :available, :size_t, :undelivered, :uint64, :error_code, :int32,
             :message, :pointer, :message_len, :size_t
    end

    class EventsStatistics < FFI::Struct
      layout :queued, :size_t, :queued_bytes, :size_t, :dropped, :uint64, :max_events, :size_t, :max_bytes, :size_t
    end

    callback :configure_cb, %i[pointer pointer size_t], :int
    callback :event_cb, %i[pointer pointer], :void
    callback :finalizer_cb, [:pointer], :void

    # Errors.
    attach_function :wdpool_error_code, [:pointer], :int
    attach_function :wdpool_error_message, [:pointer], :string
    attach_function :wdpool_error_kafka_code, [:pointer], :int32
    attach_function :wdpool_error_kafka_flags, [:pointer], :uint32
    attach_function :wdpool_error_free, [:pointer], :void
    attach_function :wdpool_result_name, [:int], :string

    # Config (inside the configure callback only).
    attach_function :wdpool_config_set_kafka, %i[pointer string string pointer], :int
    attach_function :wdpool_config_set_deliver, %i[pointer bool pointer], :int
    attach_function :wdpool_config_set_max_wait_timeout, %i[pointer uint64 pointer], :int
    attach_function :wdpool_config_set_max_payload_size, %i[pointer size_t pointer], :int
    attach_function :wdpool_config_set_id, %i[pointer string pointer], :int

    # Pools. Creating runs the configure block (Ruby) on this thread: not blocking.
    attach_function :wdpool_pool_new, [:pointer, :configure_cb, :pointer, :pointer, :pointer], :int
    attach_function :wdpool_setup, [:pointer, :configure_cb, :pointer, :pointer], :int, blocking: true
    # Checkout: a try that never waits (holding the GVL), and a wait that releases it.
    # Never blocks: attached without releasing the GVL.
    attach_function :wdpool_pool_try_checkout, %i[pointer uint64 pointer pointer], :int
    attach_function :wdpool_pool_checkout, %i[pointer uint64 int64 pointer pointer], :int, blocking: true
    attach_function :wdpool_try_checkout, %i[uint64 pointer pointer], :int
    attach_function :wdpool_checkout, %i[uint64 int64 pointer pointer], :int, blocking: true
    # Checkin can roll back a transaction left open or close the producer:
    # the quick path holds the GVL (see Producer#checkin).
    attach_function :wdpool_producer_checkin, %i[pointer pointer], :int
    # The same, the handle passed as the integer it is (no Pointer object on
    # the hot path of `with`).
    attach_function :wdpool_producer_checkin_token, :wdpool_producer_checkin, %i[uintptr_t pointer], :int
    attach_function :wdpool_producer_checkin_blocking, :wdpool_producer_checkin, %i[pointer pointer], :int, blocking: true
    attach_function :wdpool_pool_close, %i[pointer bool pointer pointer], :int, blocking: true
    attach_function :wdpool_pool_reload, %i[pointer pointer], :int, blocking: true
    attach_function :wdpool_pool_stats, %i[pointer pointer pointer], :int
    attach_function :wdpool_pool_id, [:pointer], :uint64
    attach_function :wdpool_pool_free, [:pointer], :void
    attach_function :wdpool_close, %i[bool pointer pointer], :int, blocking: true
    attach_function :wdpool_reload, [:pointer], :int, blocking: true
    attach_function :wdpool_stats, %i[pointer pointer], :int
    attach_function :wdpool_active, [], :bool
    attach_function :wdpool_global_id, [], :uint64

    # Producing.
    attach_function :wdpool_message_init, [:pointer], :void
    attach_function :wdpool_producer_produce_sync, %i[pointer pointer int64 pointer pointer], :int, blocking: true
    attach_function :wdpool_producer_produce_many_sync, %i[pointer pointer size_t int64 pointer pointer], :int, blocking: true
    attach_function :wdpool_producer_produce_async, %i[pointer pointer pointer pointer], :int
    attach_function :wdpool_producer_produce_async_blocking, :wdpool_producer_produce_async, %i[pointer pointer pointer pointer], :int, blocking: true
    attach_function :wdpool_producer_produce_many_async, %i[pointer pointer size_t pointer pointer], :int
    attach_function :wdpool_producer_produce_many_async_blocking, :wdpool_producer_produce_many_async, %i[pointer pointer size_t pointer pointer], :int, blocking: true
    attach_function :wdpool_producer_flush, %i[pointer int64 pointer], :int, blocking: true
    attach_function :wdpool_producer_get_info, %i[pointer pointer pointer], :int

    # Transactions.
    attach_function :wdpool_producer_begin, %i[pointer int64 pointer], :int, blocking: true
    attach_function :wdpool_producer_end, %i[pointer int int64 pointer pointer], :int, blocking: true

    # Deliveries.
    attach_function :wdpool_delivery_wait, %i[pointer int64 pointer], :int, blocking: true
    attach_function :wdpool_delivery_count, [:pointer], :size_t
    attach_function :wdpool_delivery_pending, [:pointer], :size_t
    attach_function :wdpool_delivery_report, %i[pointer size_t pointer pointer], :int
    attach_function :wdpool_delivery_free, [:pointer], :void

    # Events.
    attach_function :wdpool_subscribe, [:event_cb, :pointer, :finalizer_cb, :pointer, :pointer], :int
    attach_function :wdpool_unsubscribe, %i[uint64 pointer], :int
    attach_function :wdpool_events_drain, %i[int64 size_t pointer pointer], :int, blocking: true
    attach_function :wdpool_events_stats, %i[pointer pointer], :int

    # Testing.
    attach_function :wdpool_mock_cluster_new, %i[int32 pointer pointer], :int, blocking: true
    attach_function :wdpool_mock_cluster_bootstrap_servers, [:pointer], :string
    attach_function :wdpool_mock_cluster_create_topic, %i[pointer string int32 pointer], :int, blocking: true
    attach_function :wdpool_mock_cluster_set_broker_up, %i[pointer int32 bool pointer], :int, blocking: true
    attach_function :wdpool_mock_cluster_set_rtt, %i[pointer int32 uint32 pointer], :int, blocking: true
    attach_function :wdpool_mock_cluster_push_request_errors, %i[pointer int16 pointer size_t pointer], :int, blocking: true
    attach_function :wdpool_mock_cluster_free, [:pointer], :void, blocking: true
  end
end
