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

  # The fiber's context is back to rest: no depth, every lease slot 0.
  def assert_fiber_context_at_rest
    ctx = Thread.current[WdPool::ConnectionPool::CTX_KEY]
    return if ctx.nil?

    assert_equal 0, ctx[2], 'depth restored'
    ctx[3..].each_with_index { |slot, d| assert_equal 0, slot.get_uint64(0), "lease slot #{d} cleared" if slot }
    assert ctx[1].get_pointer(0).null?, 'no error left in the error slot'
  end

  # An asynchronous exception is delivered at one of Ruby's interrupt checks.
  # A TracePoint hook runs at least at every such check of `with` and of what
  # it calls (the return of each method, block and C call, each new line),
  # and at more places besides (calls, C calls), so raising from the hook at
  # the k-th event, for every k in turn, aims an exception at every window
  # from the call of `with` to its `ensure`: before the checkout, right after
  # it (the native call returned, its handle not yet read), before and
  # inside the block, and in the slow path (a producer to create: the
  # blocking checkout, Thread.pass, stats). The first lines of the `ensure`,
  # up to the return of the native checkin, have no interrupt check (see
  # ConnectionPool#with and the next test), so the hook skips them: a hook
  # there is Ruby code the VM otherwise does not run.
  def test_an_exception_at_every_interrupt_check_from_with_to_its_ensure_leaves_the_pool_whole
    pool = TestKafka.pool(size: 1, timeout: 5_000, deliver: false)
    aim_at_every_interrupt_check(pool)
  ensure
    pool&.close
  end

  # The same through the global pool (WdPool::ConnectionPool.with, its own
  # native calls).
  def test_an_exception_at_every_interrupt_check_leaves_the_global_pool_whole
    WdPool::ConnectionPool.setup(size: 1, timeout: 5_000) do |config|
      config.kafka = { 'bootstrap.servers': TestKafka::BOOTSTRAP }
      config.deliver = false
    end
    aim_at_every_interrupt_check(WdPool::ConnectionPool)
  ensure
    WdPool::ConnectionPool.close
  end

  # `pool`: anything with `with`, `reload` and `stats` (a pool, or the
  # ConnectionPool class for the global one).
  def aim_at_every_interrupt_check(pool)
    path = WdPool::ConnectionPool.instance_method(:with).source_location[0]
    # the first line of the ensure's body
    ensure_line = RubyVM::InstructionSequence.of(WdPool::ConnectionPool.instance_method(:with)).to_a[12]
                                             .find { |entry| entry[0] == :ensure }[1][13].find { |x| x.is_a?(Integer) }
    me = Thread.current
    state = { armed: false, skipping: false, count: 0, target: nil, level: 0 }
    tp = TracePoint.new(:line, :call, :return, :c_call, :c_return, :b_call, :b_return) do |t|
      next unless state[:armed] && Thread.current == me

      # only the events from the call of the outer `with` to its return
      in_with = t.method_id == :with && t.defined_class == WdPool::ConnectionPool
      state[:level] += 1 if in_with && t.event == :call
      state[:level] -= 1 if in_with && t.event == :return
      next if state[:level].zero? && !(in_with && t.event == :return)

      if state[:skipping]
        state[:skipping] = false if t.event == :c_return && t.method_id == :wdpool_producer_checkin_token
        next
      end
      if t.event == :line && t.lineno == ensure_line && t.path == path
        state[:skipping] = true
        next
      end
      state[:count] += 1
      if state[:count] == state[:target]
        state[:armed] = false
        raise Injected
      end
    end
    run = lambda do |target, slow|
      pool.reload if slow # the producer is closed: the next checkout creates it (slow path)
      state.update(armed: true, skipping: false, count: 0, target: target, level: 0)
      tp.enable do
        pool.with { |p| pool.with { |q| p.pool == q.pool } }
      ensure
        state[:armed] = false
      end
      state[:count]
    end
    pool.with { pool.with { nil } } # the fiber's context and lease slots exist: as many events every time
    tried = 0
    [false, true].each do |slow|
      events = run.call(nil, slow)
      assert_operator events, :>, 20, 'the hook saw the calls of with'
      (1..events).each do |k|
        assert_raises(Injected, "event #{k} of #{events}#{' (slow path)' if slow}") { run.call(k, slow) }
        tried += 1
        s = pool.stats
        assert_equal 0, s[:in_use], "a producer leaked with an exception at event #{k} of #{events}#{' (slow path)' if slow}"
        assert_fiber_context_at_rest
      end
    end
    assert_operator tried, :>, 40
    TestKafka.assert_whole(self, pool)
    assert_equal :ok, pool.with { :ok }
  end

  # What the previous test cannot aim at: the first lines of `with`'s ensure
  # (both copies: the one an exception runs, and the one inlined for a
  # normal return) must reach the native checkin through plain C method calls
  # and no instruction that checks interrupts (leave, jump, branch*, throw,
  # a call of a Ruby method).
  def test_the_ensure_of_with_reaches_the_checkin_without_an_interrupt_check
    iseq = RubyVM::InstructionSequence.of(WdPool::ConnectionPool.instance_method(:with)).to_a
    entry = iseq[12].find { |e| e[0] == :ensure }
    ensure_body = entry[1][13]
    method_body = iseq[13]
    inlined = method_body.drop(method_body.index(entry[3]))
    c_methods = %i[get_uint64 put_uint64 []= wdpool_producer_checkin_token]
    allowed = %i[opt_getinlinecache opt_setinlinecache getconstant putobject putobject_INT2FIX_0_
                 putobject_INT2FIX_1_ putnil getlocal_WC_0 getlocal_WC_1 setlocal_WC_0 setlocal_WC_1
                 getlocal setlocal pop dup opt_aset opt_send_without_block]
    { 'ensure' => ensure_body, 'inlined ensure' => inlined }.each do |name, body|
      reached = false
      body.each do |insn|
        next unless insn.is_a?(Array)

        assert_includes allowed, insn[0], "#{name}: #{insn.inspect} before the checkin"
        next unless insn[0] == :opt_send_without_block || insn[0] == :opt_aset

        mid = insn[1][:mid]
        assert_includes c_methods, mid, "#{name}: a call of #{mid} before the checkin"
        if mid == :wdpool_producer_checkin_token
          reached = true
          break
        end
      end
      assert reached, "#{name}: the checkin comes first"
    end
    # ... and those are C methods (no Ruby frame, so no `leave`).
    assert_nil FFI::MemoryPointer.instance_method(:get_uint64).source_location
    assert_nil FFI::MemoryPointer.instance_method(:put_uint64).source_location
    assert_nil Array.instance_method(:[]=).source_location
    assert_nil WdPool::Native.method(:wdpool_producer_checkin_token).source_location
  end

  # Thread#raise while the thread waits in the native checkout (the GVL
  # released): the checkout goes on (its wait is not interruptible) and the
  # exception is raised as soon as it returns, before Ruby sees its result.
  # The lease is in the fiber's lease slot already, so `with` gives it back.
  def test_a_raise_while_waiting_in_the_native_checkout_does_not_leak_the_producer_it_gets
    pool = TestKafka.pool(size: 1, timeout: 10_000, deliver: false)
    pool.with { nil }
    held = Queue.new
    release = Queue.new
    holder = Thread.new { pool.with { held << 1; release.pop } }
    held.pop
    ran = false
    waiter = Thread.new do
      pool.with { ran = true }
      :no_exception
    rescue Injected
      :injected
    end
    TestKafka.wait_until(5, 'waiter inside the native wait') { pool.stats[:waiting] == 1 }
    waiter.raise(Injected)
    release << 1
    assert_equal :injected, waiter.value
    refute ran, 'the block did not run'
    holder.join
    TestKafka.assert_whole(self, pool)
    assert_equal 0, pool.stats[:waiting]
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
