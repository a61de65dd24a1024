# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'minitest/autorun'
require 'wdpool'
require 'json'
require 'time'
require 'timeout'

# Against the broker in WDPOOL_KAFKA_BOOTSTRAP when set, else librdkafka's
# in-process mock cluster through the C ABI.
module TestKafka
  REAL = !ENV.fetch('WDPOOL_KAFKA_BOOTSTRAP', '').empty?
  MOCK = REAL ? nil : WdPool::MockCluster.new(brokers: 1)
  BOOTSTRAP = REAL ? ENV['WDPOOL_KAFKA_BOOTSTRAP'] : MOCK.bootstrap_servers
  # setup without a config block takes its brokers from here.
  ENV['WDPOOL_BROKERS'] = BOOTSTRAP
  RUN = "#{Process.pid}-#{rand(1 << 30)}"

  module_function

  # Waits until the block is truthy, at most `seconds`; fails otherwise.
  def wait_until(seconds = 10, what = 'condition')
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    loop do
      value = yield
      return value if value
      raise Minitest::Assertion, "timed out after #{seconds}s waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      Thread.pass
    end
  end

  def topic(name)
    "#{name}-#{RUN}".tr(':', '-')
  end

  def pool(size: 2, timeout: 5_000, transactional: nil, deliver: true, **kafka)
    WdPool::ConnectionPool.new(size: size, timeout: timeout) do |config, index|
      settings = { 'bootstrap.servers': BOOTSTRAP, 'linger.ms': 0 }.merge(kafka)
      settings[:'transactional.id'] = "#{transactional}-#{RUN}-#{index}" if transactional
      config.kafka = settings
      config.deliver = deliver
    end
  end

  # The pool is whole: nothing checked out.
  def assert_whole(test, pool)
    stats = wait_until(5, 'pool whole') { s = pool.stats; s[:in_use].zero? ? s : nil }
    test.assert_equal stats[:size], stats[:available]
  end
end
