# frozen_string_literal: true

module WdPool
  # librdkafka's in-process mock cluster (loopback ports), for tests.
  class MockCluster
    def initialize(brokers: 1)
      out = FFI::MemoryPointer.new(:pointer, 2)
      err = out + FFI::Pointer.size
      rc = Native.wdpool_mock_cluster_new(brokers, out, err)
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      @handle = out.get_pointer(0)
    end

    def bootstrap_servers
      Native.wdpool_mock_cluster_bootstrap_servers(@handle)
    end

    def create_topic(name, partitions: 1)
      check(Native.wdpool_mock_cluster_create_topic(@handle, name, partitions, err))
    end

    def broker_up(id, up)
      check(Native.wdpool_mock_cluster_set_broker_up(@handle, id, up, err))
    end

    def rtt(id, ms)
      check(Native.wdpool_mock_cluster_set_rtt(@handle, id, ms, err))
    end

    # Makes the next requests with Kafka protocol ApiKey `api_key` (0 Produce,
    # 22 InitProducerId, 26 EndTxn, ...) fail, in order, with `codes`
    # (rd_kafka_resp_err_t), to test how Kafka errors are reported.
    def push_request_errors(api_key, *codes)
      buf = FFI::MemoryPointer.new(:int32, [codes.size, 1].max)
      buf.put_array_of_int32(0, codes)
      check(Native.wdpool_mock_cluster_push_request_errors(@handle, api_key, buf, codes.size, err))
    end

    def close
      Native.wdpool_mock_cluster_free(@handle)
    end

    private

    def err
      @err = FFI::MemoryPointer.new(:pointer)
    end

    def check(rc)
      raise Errors.build(rc, @err.get_pointer(0)) unless rc.zero?

      true
    end
  end
end
