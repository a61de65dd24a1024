# frozen_string_literal: true

require_relative 'test_helper'

# The GVL is released while a thread waits; asynchronous exceptions
# (Thread#raise, Timeout.timeout) never leak a slot.
class GvlInterruptsTest < Minitest::Test
  class Injected < StandardError; end

  def test_a_thread_waiting_for_a_producer_lets_other_threads_run
    pool = TestKafka.pool(size: 1, timeout: 10_000, deliver: false)
    held = Queue.new
    release = Queue.new
    holder = Thread.new { pool.with { held << 1; release.pop } }
    held.pop
    waiter = Thread.new { pool.with { :got } }
    TestKafka.wait_until(5, 'waiter inside the native wait') { pool.stats[:waiting] == 1 }
    # Ruby code runs on this thread while the waiter is blocked in wdpool.
    sum = 0
    200_000.times { |i| sum += i }
    assert_equal 19_999_900_000, sum
    assert_equal 1, pool.stats[:waiting]
    assert waiter.alive?
    release << 1
    assert_equal :got, waiter.value
    holder.join
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  def test_produce_sync_releases_the_gvl
    skip 'needs the mock cluster (slow broker)' if TestKafka::REAL
    cluster = WdPool::MockCluster.new(brokers: 1)
    pool = WdPool::ConnectionPool.new(size: 1, timeout: 5_000) do |config|
      config.kafka = { 'bootstrap.servers': cluster.bootstrap_servers, 'linger.ms': 0 }
    end
    pool.with { |p| p.produce_sync(topic: 'slow', payload: 'warm') }
    cluster.rtt(1, 500)
    started = Queue.new
    producer = Thread.new { pool.with { |p| started << 1; p.produce_sync(topic: 'slow', payload: 'x') } }
    started.pop
    ticks = 0
    TestKafka.wait_until(10, 'produce_sync to finish') do
      ticks += 1
      !producer.alive?
    end
    assert_nil producer.value.error
    assert_operator ticks, :>, 100, 'this thread ran while produce_sync waited'
  ensure
    pool&.close
    cluster&.close
  end

  def test_thousand_random_thread_raises_leave_the_pool_whole
    pool = TestKafka.pool(size: 2, timeout: 5_000, deliver: false)
    stop = false
    caught = 0
    done = 0
    worker = Thread.new do
      Thread.handle_interrupt(Injected => :never) do
        until stop
          begin
            Thread.handle_interrupt(Injected => :immediate) do
              pool.with do |p|
                pool.with { rand(3).times { Thread.pass } }
                p.produce_async(topic: 'interrupts', payload: 'x') if rand(4).zero?
              end
              done += 1
            end
          rescue Injected
            caught += 1
          end
        end
        # raises still pending once stopped
        while Thread.pending_interrupt?
          begin
            Thread.handle_interrupt(Injected => :immediate) { nil }
          rescue Injected
            caught += 1
          end
        end
      end
    end
    TestKafka.wait_until(5, 'worker running') { done.positive? }
    1_000.times do
      worker.raise(Injected)
      rand(20).times { Thread.pass }
    end
    stop = true
    worker.join
    # Ruby may fold an interrupt into one already propagating (a plain-Ruby
    # loop with nested handle_interrupt does too), so fewer than 1,000 are
    # rescued; every one was delivered.
    assert_operator caught, :>, 0
    TestKafka.assert_whole(self, pool)
    s = pool.stats
    assert_equal 0, s[:waiting]
  ensure
    pool&.close
  end

  def test_timeouts_at_random_moments_leave_the_pool_whole
    pool = TestKafka.pool(size: 1, timeout: 5_000, deliver: false)
    timed_out = 0
    threads = Array.new(2) do
      Thread.new do
        150.times do
          Timeout.timeout(rand * 0.002) { loop { pool.with { pool.with { Thread.pass } } } }
        rescue Timeout::Error
          timed_out += 1
        end
      end
    end
    threads.each(&:join)
    assert_equal 300, timed_out
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  # Ruby 3.1's Timeout.timeout without an exception class interrupts by
  # `throw`: inside a transaction that is an early exit (rolled back,
  # EarlyTransactionExit). With an exception class it is an exception:
  # rolled back, re-raised unchanged.
  def test_interrupts_in_transactions_leave_the_pool_whole
    pool = TestKafka.pool(size: 1, timeout: 10_000, transactional: 'interrupts')
    results = Hash.new(0)
    60.times do |i|
      klass = i.even? ? nil : Injected
      Timeout.timeout(rand * 0.05, klass) do
        pool.transaction { |p| p.produce_async(topic: TestKafka.topic('interrupts'), payload: 'x') }
      end
      results[:done] += 1
    rescue Timeout::Error
      results[:timeout] += 1
    rescue WdPool::Errors::EarlyTransactionExit
      assert_nil klass
      results[:early_exit] += 1
    rescue Injected
      refute_nil klass
      results[:injected] += 1
    end
    assert_equal 60, results.values.sum
    TestKafka.assert_whole(self, pool)
    assert_equal :ok, pool.transaction { :ok }
  ensure
    pool&.close
  end
end
