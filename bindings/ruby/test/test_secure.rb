# frozen_string_literal: true

require_relative 'test_helper'
require 'open3'

# Against the SECURED real broker (scripts/kafka.sh start --secure; `make
# test-real` sets WDPOOL_KAFKA_SECURE_DIR to its KAFKA_CLIENT_CONFIG_DIR):
# TLS + SASL/SCRAM-SHA-512 as alice, from client-alice.properties. Skipped
# without it (the mock-cluster run of make test-ruby).
class SecureTest < Minitest::Test
  DIR = ENV.fetch('WDPOOL_KAFKA_SECURE_DIR', '')

  def setup
    skip 'needs the secured broker: WDPOOL_KAFKA_SECURE_DIR (make test-real)' if DIR.empty?
  end

  def properties(user)
    File.readlines(File.join(DIR, "client-#{user}.properties"), chomp: true)
        .reject { |l| l.empty? || l.start_with?('#') }
        .to_h { |l| l.split('=', 2) }
  end

  def read_committed(topic, expect)
    reader = ENV.fetch('WDPOOL_KAFKA_READ') { File.expand_path('../../../target/debug/examples/kafka_read', __dir__) }
    out, err, status = Open3.capture3(reader, '--bootstrap', File.read(File.join(DIR, 'bootstrap')).strip,
                                      '--topic', topic, '--isolation', 'read_committed', '--expect', expect.to_s,
                                      '--timeout-ms', '60000', '--config-file', File.join(DIR, 'client-alice.properties'))
    assert status.success?, "kafka_read failed: #{err}"
    out.lines.map { |l| [l.split("\t")[3]].pack('H*') }.sort
  end

  def test_produce_and_transactions_over_tls_and_scram_read_back
    alice = properties('alice')
    topic = "wdpool-ruby-secure-#{TestKafka::RUN}"
    pool = WdPool::ConnectionPool.new(size: 2, timeout: 30_000) do |config, index|
      config.kafka = alice.merge('transactional.id' => "alice-ruby-#{TestKafka::RUN}-#{index}")
      refute_includes config.inspect, alice['sasl.password'], 'Config#inspect shows no password'
    end
    pool.with { |p| assert_nil p.produce_sync(topic: topic, payload: 'ruby-with').error }
    pool.transaction do |p|
      p.produce_sync(topic: topic, payload: 'ruby-txn-1')
      p.produce_sync(topic: topic, payload: 'ruby-txn-2')
    end
    pool.transaction do |p|
      p.produce_sync(topic: topic, payload: 'ruby-aborted')
      raise WdPool::AbortTransaction
    end
    TestKafka.assert_whole(self, pool)
    assert_equal %w[ruby-txn-1 ruby-txn-2 ruby-with], read_committed(topic, 3)
  ensure
    pool&.shutdown
  end

  def test_a_wrong_password_fails_within_the_message_timeout_saying_why
    bad = properties('alice').merge('sasl.password' => 'not-the-password', 'message.timeout.ms' => '5000')
    pool = WdPool::ConnectionPool.new(size: 1, timeout: 10_000) { |config, _| config.kafka = bad }
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    error = assert_raises(WdPool::Errors::ProduceError) do
      pool.with { |p| p.produce_sync(topic: "wdpool-ruby-refused-#{TestKafka::RUN}", payload: 'never') }
    end
    took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    assert_operator took, :<=, 9, "failing took #{took}s"
    assert_includes error.message, 'Authentication failed'
    refute_includes error.message, 'not-the-password'
    refute_includes error.message, properties('alice')['sasl.password']
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.shutdown
  end
end
