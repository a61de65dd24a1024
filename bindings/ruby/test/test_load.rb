# frozen_string_literal: true

require_relative 'test_helper'
require 'open3'

# 32 Ruby threads through a pool of 4 with random exceptions and early exits.
# Against a real broker (WDPOOL_KAFKA_BOOTSTRAP) every message reported
# delivered is read back exactly once (with the project's kafka_read tool:
# WDPOOL_KAFKA_READ, or target/debug/examples/kafka_read); against the mock
# cluster the pool is checked whole and every report accounted for.
class LoadTest < Minitest::Test
  class Random < StandardError; end

  THREADS = 32
  PER_THREAD = TestKafka::REAL ? 60 : 25

  def kafka_read
    path = ENV['WDPOOL_KAFKA_READ']
    path = File.expand_path('../../../target/debug/examples/kafka_read', __dir__) if path.nil? || path.empty?
    File.executable?(path) ? path : nil
  end

  def test_32_threads_pool_of_4
    topic = TestKafka.topic('ruby-load')
    pool = TestKafka.pool(size: 4, timeout: 30_000, 'enable.idempotence': true)
    delivered = Queue.new
    outcomes = Queue.new
    threads = Array.new(THREADS) do |t|
      Thread.new do
        PER_THREAD.times do |i|
          payload = "#{t}-#{i}"
          case rand(6)
          when 0 # an exception after the message was delivered
            begin
              pool.with do |p|
                delivered << payload if p.produce_sync(topic: topic, payload: payload, key: t.to_s).error.nil?
                raise Random
              end
            rescue Random
              outcomes << :raised
            end
          when 1 # an early exit
            [1].each do
              pool.with do |p|
                delivered << payload if p.produce_sync(topic: topic, payload: payload, key: t.to_s).error.nil?
                break
              end
            end
            outcomes << :broke
          when 2 # an exception before anything was sent
            begin
              pool.with { raise Random }
            rescue Random
              outcomes << :raised_early
            end
          else
            pool.with do |p|
              pool.with do |q|
                delivered << payload if q.produce_sync(topic: topic, payload: payload, key: t.to_s).error.nil?
              end
              p.flush
            end
            outcomes << :ok
          end
        end
      end
    end
    threads.each(&:join)
    assert_equal THREADS * PER_THREAD, outcomes.size
    TestKafka.assert_whole(self, pool)
    stats = pool.stats
    assert_equal 4, stats[:idle] + (4 - stats[:created])
    sent = Array.new(delivered.size) { delivered.pop }
    assert_equal sent.uniq.size, sent.size
    pool.close

    return unless TestKafka::REAL

    reader = kafka_read
    skip 'kafka_read not built (cargo build --example kafka_read)' unless reader
    out, err, status = Open3.capture3(reader, '--bootstrap', TestKafka::BOOTSTRAP, '--topic', topic,
                                      '--expect', sent.size.to_s, '--timeout-ms', '60000')
    assert status.success?, "kafka_read failed: #{err}"
    read = out.lines.map { |l| [l.split("\t")[3]].pack('H*') }
    assert_equal sent.sort, read.sort, 'every message reported delivered is read back exactly once'
  end
end
