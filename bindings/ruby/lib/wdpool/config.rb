# frozen_string_literal: true

module WdPool
  # One producer's configuration, given to the block of
  # WdPool::ConnectionPool.new / .setup with the slot's zero-based index.
  # Valid only while that block runs. Every setter is checked at once and
  # raises naming what it refused.
  class Config
    def initialize(handle)
      @handle = handle
      @kafka = {}
      @deliver = true
    end

    # librdkafka properties, symbol or string keys:
    #   config.kafka = { 'bootstrap.servers': 'localhost:9092', 'transactional.id': "app-#{index}" }
    # Raises WdPool::Errors::InvalidConfigurationError naming the first key refused.
    def kafka=(settings)
      raise ArgumentError, "config.kafka must be a Hash, got #{settings.class}" unless settings.respond_to?(:each_pair)

      settings.each_pair do |key, value|
        k = key.to_s
        v = value.to_s
        check(Native.wdpool_config_set_kafka(@handle, k, v, err_ptr), k)
        @kafka[key.to_sym] = value
      end
    end

    # The properties set so far (symbol keys).
    def kafka
      @kafka.dup.freeze
    end

    # false: validate and acknowledge messages without contacting a broker.
    def deliver=(value)
      check(Native.wdpool_config_set_deliver(@handle, value ? true : false, err_ptr), 'deliver')
      @deliver = value ? true : false
    end

    attr_reader :deliver

    # librdkafka properties whose values are secrets (as wdpool's Rust side
    # decides: passwords, keys, OAuth secrets): #inspect never shows them.
    SENSITIVE = /password|secret|passphrase|\.pem|private\.key|ssl\.key\.|sasl\.oauthbearer\.config|jaas/i

    def inspect
      shown = @kafka.to_h { |k, v| [k, SENSITIVE.match?(k.to_s) ? '[redacted]' : v] }
      "#<#{self.class.name} kafka=#{shown} deliver=#{@deliver}>"
    end

    # Milliseconds (WaterDrop's max_wait_timeout): bounds deliveries, flush,
    # transaction calls and a graceful close.
    def max_wait_timeout=(ms)
      check(Native.wdpool_config_set_max_wait_timeout(@handle, Integer(ms), err_ptr), 'max_wait_timeout')
    end

    def max_payload_size=(bytes)
      check(Native.wdpool_config_set_max_payload_size(@handle, Integer(bytes), err_ptr), 'max_payload_size')
    end

    # The producer's id (events; librdkafka's client.id unless set).
    def id=(value)
      check(Native.wdpool_config_set_id(@handle, value.to_s, err_ptr), 'id')
    end

    private

    def err_ptr
      @err ||= FFI::MemoryPointer.new(:pointer)
    end

    def check(rc, key)
      return if rc.zero?

      error = Errors.build(rc, @err.get_pointer(0))
      error.key = key if error.respond_to?(:key=)
      raise error
    end
  end
end
