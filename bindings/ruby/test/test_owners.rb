# frozen_string_literal: true

require_relative 'test_helper'
require 'async'

# Owners are fibers: re-entrancy per Fiber, as with WaterDrop.
class OwnersTest < Minitest::Test
  def setup
    @pool = TestKafka.pool(size: 2, timeout: 2_000, deliver: false)
  end

  def teardown
    @pool.close
  end

  def slot(producer)
    producer.index
  end

  def test_nested_with_in_one_fiber_gets_the_same_producer
    @pool.with do |outer|
      @pool.with do |inner|
        assert_equal slot(outer), slot(inner)
        assert_equal 1, @pool.stats[:in_use]
      end
      # the outer lease is still valid after the inner one ended
      assert_nil outer.produce_sync(topic: 'nested', payload: 'x').error
    end
    TestKafka.assert_whole(self, @pool)
  end

  def test_nested_with_on_a_pool_of_one_does_not_deadlock
    pool = TestKafka.pool(size: 1, timeout: 200, deliver: false)
    pool.with { |a| pool.with { |b| assert_equal slot(a), slot(b) } }
  ensure
    pool&.close
  end

  def test_two_fibers_on_one_thread_get_two_producers
    slots = []
    f1 = Fiber.new { @pool.with { |p| slots << slot(p); Fiber.yield; slots << slot(p) } }
    f2 = Fiber.new { @pool.with { |p| slots << slot(p); Fiber.yield } }
    f1.resume
    f2.resume
    assert_equal 2, @pool.stats[:in_use]
    f1.resume
    f2.resume
    assert_equal 2, slots.take(2).uniq.size
    assert_equal slots[0], slots[2]
    TestKafka.assert_whole(self, @pool)
  end

  def test_plain_fibers_on_a_pool_of_one_the_second_waits_then_times_out
    pool = TestKafka.pool(size: 1, timeout: 150, deliver: false)
    f1 = Fiber.new { pool.with { Fiber.yield } }
    f1.resume
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    f2 = Fiber.new { pool.with { :never } }
    assert_raises(WdPool::Errors::PoolTimeoutError) { f2.resume }
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :>=, 0.14
    f1.resume
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  def test_async_tasks_on_a_pool_of_one_the_second_waits_for_the_first
    pool = TestKafka.pool(size: 1, timeout: 5_000, deliver: false)
    order = []
    Async do |task|
      released = false
      a = task.async do
        pool.with do |p|
          order << [:a_in, slot(p)]
          task.yield until released
          order << :a_out
        end
      end
      b = task.async do
        pool.with { |p| order << [:b_in, slot(p)] }
      end
      c = task.async do
        # the reactor keeps running while b waits for the producer
        order << :c_ran
        TestKafka.wait_until(5, 'b waiting') { task.yield; pool.stats[:in_use] == 1 }
        released = true
      end
      [a, b, c].each(&:wait)
    end
    assert_equal [[:a_in, 0], :c_ran, :a_out, [:b_in, 0]], order
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  def test_async_tasks_get_distinct_producers_and_nested_is_reentrant
    seen = Queue.new
    Async do |task|
      3.times.map do
        task.async do
          @pool.with do |p|
            @pool.with { |q| seen << (slot(p) == slot(q)) }
            task.yield
          end
        end
      end.each(&:wait)
    end
    assert_equal [true, true, true], Array.new(3) { seen.pop }
    TestKafka.assert_whole(self, @pool)
  end

  def test_threads_share_the_pool
    threads = Array.new(8) do
      Thread.new { 20.times { @pool.with { |p| p.produce_sync(topic: 'threads', payload: 'x') } } }
    end
    threads.each(&:join)
    TestKafka.assert_whole(self, @pool)
  end
end

class AsyncProduceTest < Minitest::Test
  # Under ruby-async, produce_sync and DeliveryHandle#wait let the thread's
  # other fibers run while they wait for the broker.
  def test_produce_sync_under_async_lets_other_fibers_run
    skip 'needs the mock cluster (slow broker)' if TestKafka::REAL
    cluster = WdPool::MockCluster.new(brokers: 1)
    pool = WdPool::ConnectionPool.new(size: 2, timeout: 5_000) do |config|
      config.kafka = { 'bootstrap.servers': cluster.bootstrap_servers, 'linger.ms': 0 }
    end
    pool.with { |p| p.produce_sync(topic: 'slow', payload: 'warm') }
    cluster.rtt(1, 300)
    ticks = 0
    report = nil
    Async do |task|
      producer = task.async { pool.with { |p| report = p.produce_sync(topic: 'slow', payload: 'x') } }
      task.async do
        while producer.alive?
          task.yield
          ticks += 1
        end
      end
      producer.wait
    end
    assert_nil report.error
    assert_operator ticks, :>, 10
  ensure
    pool&.close
    cluster&.close
  end

  # Under ruby-async, a transaction's commit, flush, reload and close (one
  # blocking native call each) run on a helper thread: the thread's other
  # fibers run meanwhile. The transaction's events still reach their
  # subscribers, and a subscriber's error is raised by the call that fired
  # it.
  def test_commit_flush_reload_and_close_under_async_let_other_fibers_run
    skip 'needs the mock cluster (slow broker)' if TestKafka::REAL
    cluster = WdPool::MockCluster.new(brokers: 1)
    pool = WdPool::ConnectionPool.new(size: 1, timeout: 10_000) do |config|
      config.kafka = { 'bootstrap.servers': cluster.bootstrap_servers, 'linger.ms': 0,
                       'transactional.id': "async-commit-#{TestKafka::RUN}" }
    end
    pool.transaction { |p| p.produce_async(topic: 'slow', payload: 'warm') }
    committed = 0
    sub = WdPool.monitor.subscribe('transaction.committed') { |e| committed += 1 if e[:pool].equal?(pool) }
    cluster.rtt(1, 200)
    ticks = Hash.new(0)
    phase = nil
    Async do |task|
      worker = task.async do
        phase = :commit
        pool.transaction { |p| p.produce_async(topic: 'slow', payload: 'x') }
        phase = :flush
        pool.with do |p|
          p.transaction { p.produce_async(topic: 'slow', payload: 'y') }
          p.flush
        end
        phase = :reload
        pool.reload
        phase = :close
        pool.close
        phase = nil
      end
      task.async do
        while worker.alive?
          task.yield
          ticks[phase] += 1 if phase
        end
      end
      worker.wait
    end
    assert_equal 2, committed
    %i[commit flush].each { |p| assert_operator ticks[p], :>, 10, "other fibers ran during #{p}: #{ticks}" }
    assert_equal 0, Thread.list.count { |t| t.name == 'wdpool-blocking-call' }, 'the helper threads ended'
  ensure
    WdPool.monitor.unsubscribe(sub) if sub
    pool&.close
    cluster&.close
  end

  # A subscriber's error raised inside a commit made on the helper thread is
  # raised by the `with` around it, as on the thread itself.
  def test_a_subscriber_error_during_an_async_commit_comes_back
    skip 'needs the mock cluster' if TestKafka::REAL
    pool = TestKafka.pool(size: 1, timeout: 10_000, transactional: 'async-sub-error')
    pool.transaction { nil }
    boom = Class.new(StandardError)
    sub = WdPool.monitor.subscribe('transaction.committed') { |e| raise boom if e[:pool].equal?(pool) }
    raised = nil
    Async do
      pool.transaction { |p| p.produce_async(topic: TestKafka.topic('async-sub'), payload: 'x') }
    rescue boom => e
      raised = e
    end
    assert_kind_of boom, raised
    assert_equal 0, WdPool::Events::PENDING[0]
    TestKafka.assert_whole(self, pool)
  ensure
    WdPool.monitor.unsubscribe(sub) if sub
    pool&.close
  end
end
