# frozen_string_literal: true

require_relative 'test_helper'

class EventsForkTest < Minitest::Test
  def subscribe(name, &block)
    (@subs ||= []) << WdPool.monitor.subscribe(name, &block)
  end

  def teardown
    (@subs || []).each { |s| WdPool.monitor.unsubscribe(s) }
  end

  def test_lifecycle_events_with_waterdrops_payload_keys
    seen = []
    %w[connection_pool.created connection_pool.setup connection_pool.shutdown
       connection_pool.reload connection_pool.reloaded].each do |name|
      subscribe(name) { |e| seen << [e.id, e.payload, Thread.current] }
    end
    pool = TestKafka.pool(size: 3, timeout: 1_234, deliver: false)
    pool.reload
    pool.close
    names = seen.map(&:first)
    assert_equal %w[connection_pool.created connection_pool.reload connection_pool.reloaded connection_pool.shutdown], names
    created = seen.first[1]
    assert_same pool, created[:pool]
    assert_equal 3, created[:size]
    assert_equal 1_234, created[:timeout]
    assert_equal pool.id, created[:pool_id]
    assert(seen.all? { |s| s[2] == Thread.current }, 'lifecycle events run on the calling thread')
    seen.clear

    WdPool::ConnectionPool.setup(size: 2, timeout: 500)
    WdPool::ConnectionPool.reload
    WdPool::ConnectionPool.close
    assert_equal %w[connection_pool.created connection_pool.setup connection_pool.reload
                    connection_pool.reloaded connection_pool.shutdown], seen.map(&:first)
    setup = seen[1][1]
    assert_equal 2, setup[:size]
    assert_equal 500, setup[:timeout]
    assert setup[:global]
    assert_same WdPool::ConnectionPool.default_pool, setup[:pool]
  end

  def test_checkout_timeout_event_is_reported_once
    events = []
    subscribe('connection_pool.checkout_timeout') { |e| events << e.payload }
    pool = TestKafka.pool(size: 1, timeout: 100, deliver: false)
    held = Queue.new
    release = Queue.new
    t = Thread.new { pool.with { held << 1; release.pop } }
    held.pop
    assert_raises(WdPool::Errors::PoolTimeoutError) { pool.with { nil } }
    release << 1
    t.join
    assert_equal 1, events.size
    assert_operator events.first[:waited], :>=, 100
    assert_equal 1, pool.stats[:checkout_timeouts]
    # with(timeout: 0): the try is the whole call, and its event is reported
    held = Queue.new
    release = Queue.new
    t = Thread.new { pool.with { held << 1; release.pop } }
    held.pop
    assert_raises(WdPool::Errors::PoolTimeoutError) { pool.with(timeout: 0) { nil } }
    release << 1
    t.join
    assert_equal 2, events.size
    assert_equal 2, pool.stats[:checkout_timeouts]
  ensure
    pool&.close
  end

  def test_queued_events_are_drained_on_a_ruby_thread_of_the_gem
    stats = Queue.new
    subscribe('statistics.emitted') { |e| stats << [e[:statistics], Thread.current.name] }
    pool = TestKafka.pool(size: 1, deliver: true, 'statistics.interval.ms': 100)
    pool.with { |p| p.produce_sync(topic: 'stats', payload: 'x') }
    statistics, thread = TestKafka.wait_until(10, 'statistics') { stats.empty? ? nil : stats.pop }
    assert_kind_of Hash, statistics
    assert_equal 'wdpool-events', thread
  ensure
    pool&.close
  end

  def test_librdkafka_errors_are_drained_on_the_gems_thread
    skip 'needs the mock cluster' if TestKafka::REAL
    errors = Queue.new
    subscribe('error.occurred') { |e| errors << [e[:error], e[:error_code], Thread.current.name] }
    cluster = WdPool::MockCluster.new(brokers: 1)
    pool = WdPool::ConnectionPool.new(size: 1, timeout: 5_000) do |config|
      config.kafka = { 'bootstrap.servers': cluster.bootstrap_servers, 'message.timeout.ms': 2_000 }
    end
    pool.with { |p| p.produce_sync(topic: 'up', payload: 'x') }
    cluster.broker_up(1, false)
    error, code, thread = TestKafka.wait_until(20, 'an error event') do
      pool.with { |p| p.produce_async(topic: 'down', payload: 'x') }
      errors.empty? ? nil : errors.pop
    end
    assert_kind_of WdPool::Errors::ProduceError, error
    refute_equal 0, code
    assert_equal 'wdpool-events', thread
  ensure
    pool&.close(force: true)
    cluster&.close
  end

  def test_transaction_events_and_a_transactional_async_produce_outside_a_transaction
    events = []
    %w[transaction.started transaction.committed].each { |n| subscribe(n) { |e| events << [n, e[:slot], e[:producer_id]] } }
    pool = TestKafka.pool(size: 1, transactional: 'events')
    handle = pool.with { |p| p.produce_async(topic: TestKafka.topic('txev'), payload: 'own transaction') }
    assert_nil handle.wait.error
    assert_equal %w[transaction.started transaction.committed], events.map(&:first)
    assert_equal [0, 0], events.map { |e| e[1] }
    refute_nil events.first[2]
  ensure
    pool&.close
  end

  def make_garbage_pool
    pool = TestKafka.pool(size: 1, deliver: false)
    pool.with { |p| p.produce_sync(topic: 'gc', payload: 'x') }
    pool.id
  end

  def test_a_pool_left_to_the_garbage_collector_is_freed_and_closed_in_the_background
    shutdowns = Queue.new
    subscribe('connection_pool.shutdown') { |e| shutdowns << [e[:pool_id], Thread.current.name] }
    # made on a thread that is gone: no stale reference on a stack the GC scans
    id = Thread.new { make_garbage_pool }.value
    event = TestKafka.wait_until(10, 'the shutdown of the collected pool') do
      GC.start
      Array.new(shutdowns.size) { shutdowns.pop }.find { |pid, _| pid == id }
    end
    assert_equal 'wdpool-events', event[1]
  end

  def test_fork_child_uses_the_pool_and_the_parent_keeps_working
    skip 'fork not available' unless Process.respond_to?(:fork)
    pool = TestKafka.pool(size: 2, timeout: 5_000)
    pool.with { |p| p.produce_sync(topic: TestKafka.topic('fork'), payload: 'parent-before') }
    reader, writer = IO.pipe
    pid = fork do
      in_child(reader, writer) do
        r = pool.with { |p| p.produce_sync(topic: TestKafka.topic('fork'), payload: 'child') }
        s = pool.stats
        pool.close
        "#{r.error.inspect} #{s[:in_use]}"
      end
    end
    # the parent keeps working meanwhile
    5.times { pool.with { |p| assert_nil p.produce_sync(topic: TestKafka.topic('fork'), payload: 'parent').error } }
    assert_child_said('nil 0', pid, reader, writer)
    pool.with { |p| assert_nil p.produce_sync(topic: TestKafka.topic('fork'), payload: 'parent-after').error }
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  # A `with` whose block forks: in the child the block returns normally and
  # the checkin of the parent's lease is refused (the handle is stale there)
  # with WdPool::Errors::StaleHandleError, raised by `with`; the child's
  # pool stays usable. The parent's `with` checks in as usual.
  def test_a_with_that_forks_raises_stale_handle_in_the_child_and_both_pools_stay_whole
    skip 'fork not available' unless Process.respond_to?(:fork)
    pool = TestKafka.pool(size: 1, timeout: 5_000, deliver: false)
    reader, writer = IO.pipe
    pid = nil
    outcome = begin
      pool.with { pid = fork }
      :returned
    rescue StandardError => e
      e
    end
    if pid.nil?
      in_child(reader, writer) do
        again = pool.with { |p| p.index }
        "#{outcome.class} #{again} #{pool.stats[:in_use]}"
      end
    end
    assert_equal :returned, outcome
    assert_child_said('WdPool::Errors::StaleHandleError 0 0', pid, reader, writer)
    TestKafka.assert_whole(self, pool)
  ensure
    pool&.close
  end

  # In a forked child: writes what the block returns (or the exception it
  # raised) to `writer` and exits, 0 when the block returned.
  def in_child(reader, writer)
    reader.close
    status = 1
    begin
      writer.write(yield)
      status = 0
    rescue Exception => e # rubocop:disable Lint/RescueException
      writer.write("#{e.class}: #{e.message}")
    ensure
      writer.close
      exit!(status)
    end
  end

  # In the parent: the child wrote `expected` and exited 0.
  def assert_child_said(expected, pid, reader, writer)
    writer.close
    status = TestKafka.wait_until(30, 'child exit') { Process.wait2(pid, Process::WNOHANG)&.last }
    assert_equal expected, reader.read
    assert status.success?, "child exited with #{status.inspect}"
  end
end
