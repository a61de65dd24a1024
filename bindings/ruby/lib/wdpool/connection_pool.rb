# frozen_string_literal: true

module WdPool
  # A pool of Kafka producers with WaterDrop's ConnectionPool API, on wdpool.
  #
  #   pool = WdPool::ConnectionPool.new(size: 5, timeout: 5_000) do |config, index|
  #     config.kafka = { 'bootstrap.servers': 'localhost:9092', 'transactional.id': "app-#{index}" }
  #   end
  #   pool.with { |producer| producer.produce_sync(topic: 'events', payload: 'x') }
  #
  # Timeouts are milliseconds everywhere. Re-entrant per Fiber: a nested
  # `with` in the same fiber gets the same producer.
  class ConnectionPool
    # Thread.handle_interrupt masks: no asynchronous exception (Timeout,
    # Thread#raise) between a checkout and the ensure that checks in.
    DEFER = { Object => :never }.freeze
    ALLOW = { Object => :immediate }.freeze
    CTX_KEY = :__wdpool_ctx

    # Per-fiber scratch: [owner id, out-buffer (producer, error), error slot].
    def self.fiber_context
      Thread.current[CTX_KEY] ||= begin
        buf = FFI::MemoryPointer.new(:pointer, 2)
        [Fiber.current.object_id, buf, buf + FFI::Pointer.size]
      end
    end

    # Runs the user's configure block inside the native configure callback.
    module Configure
      CONTEXTS = {}
      @next_id = 0

      class << self
        def open(block, pool)
          @next_id += 1
          id = @next_id
          CONTEXTS[id] = { block: block, error: nil, pool: pool }
          [id, CONTEXTS[id]]
        end

        def close(id)
          CONTEXTS.delete(id)
        end

        # Never lets an exception or a non-local exit cross the native frames.
        def call(id, handle, index)
          ctx = CONTEXTS[id]
          done = false
          begin
            config = Config.new(handle)
            ctx[:block]&.call(config, index)
            ctx[:transactional] ||= config.kafka.key?(:'transactional.id')
            done = true
            return Native::CB_OK
          rescue Exception => e # rubocop:disable Lint/RescueException
            ctx[:error] ||= e
            done = true
            return 0
          ensure
            unless done
              ctx[:error] ||= Errors::NonLocalExitError.new(
                'the configure block left with break/return/throw; the pool was not created'
              ).init_details(nil, 0)
              return 0 # rubocop:disable Lint/EnsureReturn
            end
          end
        end
      end

      TRAMPOLINE = FFI::Function.new(:int, %i[pointer pointer size_t]) { |ud, cfg, idx| Configure.call(ud.address, cfg, idx) }
    end

    # Frees the native pool in the process that created it (never blocks).
    class Releaser
      def initialize(address)
        @address = address
        @pid = Process.pid
      end

      def call(*)
        Native.wdpool_pool_free(FFI::Pointer.new(@address)) if Process.pid == @pid
      end
    end

    attr_reader :size, :timeout

    def initialize(size: 5, timeout: 5_000, &configure)
      @size = Integer(size)
      @timeout = Integer(timeout)
      options = Native::Options.new
      options[:size] = @size
      options[:timeout_ms] = @timeout
      out = FFI::MemoryPointer.new(:pointer, 2)
      err = out + FFI::Pointer.size
      id, ctx = Configure.open(configure, self)
      Thread.current[:__wdpool_creating] = self
      begin
        rc = Native.wdpool_pool_new(options, configure ? Configure::TRAMPOLINE : nil, FFI::Pointer.new(id), out, err)
      ensure
        Thread.current[:__wdpool_creating] = nil
        Configure.close(id)
      end
      if ctx[:error]
        Native.wdpool_error_free(err.get_pointer(0)) unless rc.zero?
        Native.wdpool_pool_free(out.get_pointer(0)) if rc.zero?
        raise ctx[:error]
      end
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      @handle = out.get_pointer(0)
      @id = Native.wdpool_pool_id(@handle)
      Events.register(@id, self)
      ObjectSpace.define_finalizer(self, Releaser.new(@handle.address))
      Events.raise_deferred if Events.deferred.positive?
    end

    # The pool's process-unique id, as events report it.
    attr_reader :id

    # Checks a producer out for the current fiber, yields it, and checks it in
    # whatever the block does (exception, break, return, throw, Timeout).
    # `timeout:` overrides the pool's checkout timeout (milliseconds).
    #
    # The checkout first tries without waiting (`wdpool_pool_try_checkout`,
    # called without releasing the GVL: it never blocks); only when no
    # producer is free (or none was created yet) does it wait, with the GVL
    # released, or under a fiber scheduler by polling so other fibers run.
    def with(timeout: nil)
      Thread.handle_interrupt(DEFER) do
        ctx = Thread.current[CTX_KEY] || ConnectionPool.fiber_context
        buf = ctx[1]
        rc = try_checkout(ctx)
        raise Errors.build(rc, buf.get_pointer(8)) unless rc.zero?

        token = buf.get_uint64(0)
        token = slow_checkout(ctx, timeout) if token.zero?
        ok = false
        begin
          result = Thread.handle_interrupt(ALLOW) { yield Producer.new(token, self) }
          ok = true
          result
        ensure
          rc = Native.wdpool_producer_checkin_token(token, ok ? ctx[2] : nil)
          Events.raise_deferred if Events.deferred.positive?
          raise Errors.build(rc, buf.get_pointer(8)) if ok && !rc.zero?
        end
      end
    end
    alias then with

    # `with` plus `producer.transaction`: committed when the block returns,
    # rolled back when it raises (re-raised unchanged) or raises
    # WdPool::AbortTransaction; break/return/throw roll back and raise
    # WdPool::Errors::EarlyTransactionExit.
    def transaction(timeout: nil, &block)
      with(timeout: timeout) { |producer| producer.transaction(&block) }
    end

    # Closes the pool: graceful (flush) or, with force, purging. Returns
    # { closed:, undelivered:, in_use: }. Closing twice is harmless.
    def close(force: false)
      report = Native::CloseReport.new
      err = FFI::MemoryPointer.new(:pointer)
      rc = native_close(force, report, err)
      Events.raise_deferred if Events.deferred.positive?
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      { closed: report[:closed], undelivered: report[:undelivered], in_use: report[:in_use] }
    end

    def shutdown(force: false)
      close(force: force)
    end

    # Idle producers are closed and recreated on demand; checked-out ones are
    # replaced when they come back.
    def reload
      err = FFI::MemoryPointer.new(:pointer)
      rc = native_reload(err)
      Events.raise_deferred if Events.deferred.positive?
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      true
    end

    def stats
      s = Native::Statistics.new
      err = FFI::MemoryPointer.new(:pointer)
      rc = stats_into(s, err)
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      ConnectionPool.stats_hash(s)
    end

    def available
      stats[:available]
    end

    def closed?
      stats[:closed]
    end

    def active?
      !closed?
    end

    def inspect
      "#<#{self.class} id=#{@id} size=#{@size} timeout=#{@timeout}ms>"
    end

    # Internal.
    def self.stats_hash(s)
      { size: s[:size], available: s[:size] - s[:in_use], idle: s[:idle], in_use: s[:in_use],
        created: s[:created], creating: s[:creating], waiting: s[:waiting],
        checkout_timeouts: s[:checkout_timeouts], total_wait_us: s[:total_wait_us],
        creations: s[:creations], replaced: s[:replaced], closed: s[:closed] }
    end

    private

    # A checkout that never waits and never creates a producer (the fast
    # path of `with`): OK with the producer's token in ctx[1], or 0 there
    # when none is free; `ctx[2]` is the error slot of `ctx[1]`.
    def try_checkout(ctx)
      Native.wdpool_pool_try_checkout(@handle, ctx[0], ctx[1], ctx[2])
    end

    # The waiting checkout, the GVL released.
    def blocking_checkout(owner, timeout_ms, buf)
      Native.wdpool_pool_checkout(@handle, owner, timeout_ms, buf, buf + 8)
    end

    def pool_timeout_ms
      @timeout
    end

    # No producer was free at once: wait for one (creating it if need be),
    # within `timeout` (the pool's when nil). Returns the producer's token.
    def slow_checkout(ctx, timeout)
      budget = timeout.nil? ? pool_timeout_ms : Integer(timeout)
      buf = ctx[1]
      if budget.positive? && WdPool.scheduled?
        # Under a fiber scheduler: poll, so that the scheduler runs other
        # fibers (one of them may hold the producer this one waits for);
        # but a producer that is yet to be created is created at once.
        return finish_checkout(ctx[0], budget, buf) if needs_creation?

        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond) + budget
        pause = 0.0005
        loop do
          Thread.handle_interrupt(ALLOW) { sleep(pause) }
          rc = try_checkout(ctx)
          raise Errors.build(rc, buf.get_pointer(8)) unless rc.zero?

          token = buf.get_uint64(0)
          return token unless token.zero?

          left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond)
          # Time is up, or a producer must be created: one blocking call
          # (a timeout of 0 reports the pool's timeout error).
          return finish_checkout(ctx[0], [left, 0].max, buf) if left <= 0 || needs_creation?

          pause = [pause * 2, 0.01].min
        end
      end
      if budget.positive? && Thread.list.size > 1
        # The holder is most likely a Ruby thread waiting for the GVL: let it
        # run and give its producer back before paying for a blocking wait.
        Thread.handle_interrupt(ALLOW) { Thread.pass }
        rc = try_checkout(ctx)
        raise Errors.build(rc, buf.get_pointer(8)) unless rc.zero?

        token = buf.get_uint64(0)
        return token unless token.zero?
      end
      finish_checkout(ctx[0], budget, buf)
    end

    def finish_checkout(owner, timeout_ms, buf)
      rc = blocking_checkout(owner, timeout_ms, buf)
      Events.raise_deferred if Events.deferred.positive?
      raise Errors.build(rc, buf.get_pointer(8)) unless rc.zero?

      buf.get_uint64(0)
    end

    # Whether a slot has no producer yet (so a try can never succeed for it).
    def needs_creation?
      s = Native::Statistics.new
      stats_into(s).zero? && s[:created] + s[:creating] < s[:size] && s[:in_use] < s[:size]
    end

    # The native calls that differ between an instance and the global pool
    # (GlobalPool overrides them; everything around them is shared).
    def stats_into(s, err = nil)
      Native.wdpool_pool_stats(@handle, s, err)
    end

    def native_close(force, report, err)
      Native.wdpool_pool_close(@handle, force, report, err)
    end

    def native_reload(err)
      Native.wdpool_pool_reload(@handle, err)
    end
  end

  # The process-wide pool behind WdPool::ConnectionPool.setup / .with / ...
  # (wdpool's global pool). Internal: use the class methods.
  class GlobalPool < ConnectionPool
    # rubocop:disable Lint/MissingSuper
    def initialize
      @size = nil
      @timeout = 5_000
    end
    # rubocop:enable Lint/MissingSuper

    def setup(size: 5, timeout: 5_000, &configure)
      options = Native::Options.new
      options[:size] = Integer(size)
      options[:timeout_ms] = Integer(timeout)
      err = FFI::MemoryPointer.new(:pointer)
      id, ctx = Configure.open(configure, ConnectionPool)
      begin
        rc = Native.wdpool_setup(options, configure ? Configure::TRAMPOLINE : nil, FFI::Pointer.new(id), err)
      ensure
        Configure.close(id)
      end
      if ctx[:error]
        Native.wdpool_error_free(err.get_pointer(0)) unless rc.zero?
        raise ctx[:error]
      end
      raise Errors.build(rc, err.get_pointer(0)) unless rc.zero?

      @size = Integer(size)
      @timeout = Integer(timeout)
      Events.raise_deferred if Events.deferred.positive?
      self
    end

    def active?
      Native.wdpool_active
    end

    def id
      Native.wdpool_global_id
    end

    def inspect
      "#<WdPool::ConnectionPool (global) active=#{active?}>"
    end

    private

    def try_checkout(ctx)
      Native.wdpool_try_checkout(ctx[0], ctx[1], ctx[2])
    end

    def blocking_checkout(owner, timeout_ms, buf)
      Native.wdpool_checkout(owner, timeout_ms, buf, buf + 8)
    end

    def stats_into(s, err = nil)
      Native.wdpool_stats(s, err)
    end

    def native_close(force, report, err)
      Native.wdpool_close(force, report, err)
    end

    def native_reload(err)
      Native.wdpool_reload(err)
    end
  end

  class ConnectionPool
    GLOBAL = GlobalPool.new

    class << self
      # Sets up the process-wide pool (a previous one is closed gracefully).
      def setup(size: 5, timeout: 5_000, &configure)
        GLOBAL.setup(size: size, timeout: timeout, &configure)
        nil
      end

      def with(timeout: nil, &block)
        GLOBAL.with(timeout: timeout, &block)
      end

      def transaction(timeout: nil, &block)
        GLOBAL.with(timeout: timeout) { |producer| producer.transaction(&block) }
      end

      def close(force: false)
        GLOBAL.close(force: force)
      end

      def shutdown(force: false)
        GLOBAL.close(force: force)
      end

      def reload
        GLOBAL.reload
      end

      def stats
        GLOBAL.stats
      end

      def active?
        GLOBAL.active?
      end

      # The global pool (for event payloads and the like).
      def default_pool
        GLOBAL
      end
    end
  end
end
