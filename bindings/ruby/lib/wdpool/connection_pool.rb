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
    # Thread.handle_interrupt masks: `with` and transactions run under
    # DEFER and yield under ALLOW; errors left in the fiber's error slot are
    # built under DEFER.
    DEFER = { Object => :never }.freeze
    ALLOW = { Object => :immediate }.freeze
    CTX_KEY = :__wdpool_ctx

    # The per-fiber context (fiber-local: Thread#[] is per Fiber), an Array:
    # [owner, error slot, depth, lease slot of depth 0, of depth 1, ...].
    # The owner is the Fiber's object_id (never reused). The error slot
    # receives the wdpool_error of a failed checkout or checkin. A lease slot
    # is 8 bytes of native memory that a checkout writes the producer's
    # handle into before it returns; the `with` running at that depth reads
    # it back in its `ensure`. A lease slot holds 0 whenever no `with` of
    # that depth runs in the fiber.
    OWNER = 0
    ERR = 1
    DEPTH = 2
    SLOTS = 3

    def self.fiber_context
      Thread.current[CTX_KEY] ||= [Fiber.current.object_id, FFI::MemoryPointer.new(:pointer), 0]
    end

    # The lease slot of `depth` (allocated zeroed on first use).
    def self.lease_slot(ctx, depth)
      ctx[SLOTS + depth] ||= FFI::MemoryPointer.new(:uint64)
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
      # Under DEFER: the configure block and the subscribers run inside the
      # native call (an interrupt that turns into a `throw` there would
      # unwind native frames), and an interrupt between the native pool's
      # creation and its finalizer would leak it.
      Thread.handle_interrupt(DEFER) do
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
        @handle_addr = @handle.address # for wdpool_fast.c
        @id = Native.wdpool_pool_id(@handle)
        Events.register(@id, self)
        ObjectSpace.define_finalizer(self, Releaser.new(@handle.address))
      end
      Events.raise_deferred if Events::PENDING[0] != 0
    end

    # The pool's process-unique id, as events report it.
    attr_reader :id

    # Checks a producer out for the current fiber, yields it, and checks it in
    # whatever the block does (exception, break, return, throw, Timeout).
    # `timeout:` overrides the pool's checkout timeout (milliseconds).
    #
    # With the C extension loaded (WdPool.fast_with?), `with` is the C
    # method of ext/wdpool_fast/wdpool_fast.c: it runs the case of a producer
    # free at once without any mask (C code has no interrupt checks, and it
    # yields inside an rb_ensure that checks in), and calls this method,
    # aliased `__with_masked`, for everything else. What follows describes
    # this pure-Ruby `with`.
    #
    # The checkout first tries without waiting (`wdpool_pool_try_checkout`,
    # called without releasing the GVL: it never blocks); only when no
    # producer is free (or none was created yet) does it wait, with the GVL
    # released, or under a fiber scheduler by polling so other fibers run.
    #
    # Asynchronous exceptions (Thread#raise, Timeout.timeout, Thread#kill)
    # never leak the producer. Ruby delivers them at its interrupt checks,
    # and those include every C method call (FFI::Pointer#get_uint64 and an
    # ffi function attached without `blocking` among them: measured, see
    # test_gvl_interrupts.rb), so no line of an `ensure` is safe from them
    # unless a mask covers it. Hence the pattern of the connection_pool gem:
    # - Everything runs under `Thread.handle_interrupt(Object => :never)`,
    #   pushed before anything is held; an interrupt that arrives before the
    #   mask is pushed leaves nothing behind.
    # - The native checkout writes the handle into this depth's lease slot
    #   before it returns; the `ensure` checks in whatever the slot holds (0
    #   when the checkout did not get that far: the checkin of 0 does
    #   nothing), so a checkout that raises after the slot was written (a
    #   deferred subscriber error, say) leaks nothing either.
    # - Only the user's block runs with interrupts allowed (`Object =>
    #   :immediate`, as the gem does: inside the block, a mask of the
    #   caller's is overridden). An interrupt queued while masked is raised
    #   in the block or when the outer mask is popped: always after the
    #   checkin. So the slow path's wait (a blocking native call, or under
    #   a fiber scheduler a poll whose sleeps Fiber#raise still ends) and
    #   the subscribers that the checkout and the checkin call back (inside
    #   a native call, where an interrupt that becomes a `throw`, as
    #   Timeout's does, would unwind native frames) run masked.
    # - A stale handle (a slot of a process forked inside the block) is
    #   refused by the native checkin (WDPOOL_STALE_HANDLE), never reused.
    # Ruby code the checkin calls back (event subscribers) runs in a
    # trampoline that catches everything and hands it to
    # Events.raise_deferred.
    def with(timeout: nil)
      Thread.handle_interrupt(DEFER) do
        # ctx[0] owner, ctx[1] error slot, ctx[2] depth, ctx[3 + depth]
        # lease slot (literal indexes: a constant costs an inline-cache
        # check here).
        ctx = Thread.current[CTX_KEY] || ConnectionPool.fiber_context
        depth = ctx[2]
        slot = ctx[depth + 3] || ConnectionPool.lease_slot(ctx, depth)
        errp = nil # the error slot once the block returned normally, else nil
        begin
          ctx[2] = depth + 1
          # An instance pool's try called here (a method call less); the
          # global pool (no @handle) through GlobalPool#try_checkout.
          rc = if @handle
                 Native.wdpool_pool_try_checkout(@handle, ctx[0], slot, ctx[1])
               else
                 try_checkout(ctx[0], slot, ctx[1])
               end
          raise Errors.take(rc, ctx[1]) unless rc == 0

          token = slot.get_uint64(0)
          if token == 0
            token = slow_checkout(ctx, slot, timeout)
            # An interrupt that came while it waited is raised here, before
            # the block (the lease is in the slot: the ensure checks it in).
            Thread.handle_interrupt(ALLOW) { nil } if Thread.pending_interrupt?
          end
          producer = Producer.allocate.__lease(token, self)
          result = Thread.handle_interrupt(ALLOW) { yield producer }
          errp = ctx[1]
          result
        ensure
          token = slot.get_uint64(0)
          slot.put_uint64(0, 0)
          ctx[2] = depth
          rc = Native.wdpool_producer_checkin_token(token, errp)
          # The block returned and the checkin failed: raise its error.
          raise Errors.take(rc, errp) unless rc == 0 || errp.nil?
          # Left by an exception or a non-local exit: free the error of a
          # failed checkout, if any.
          Errors.discard(ctx[1]) if errp.nil?
          Events.raise_deferred if Events::PENDING[0] != 0
        end
      end
    end
    alias then with
    # The pure-Ruby `with`: what the C extension's `with` (wdpool_fast.c)
    # falls back to when no producer is free at once or a timeout is given
    # (`timeout: nil` counts as none).
    alias __with_masked with

    # Internal (wdpool_fast.c): raises the error of a checkin that failed
    # after the block returned; `address` is its wdpool_error (freed here).
    def self.__checkin_failed(rc, address)
      raise Errors.build(rc, FFI::Pointer.new(address))
    end

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
      # Subscribers (connection_pool.shutdown) run inside the native call.
      rc = Thread.handle_interrupt(DEFER) { WdPool.off_thread { native_close(force, report, err) } }
      Events.raise_deferred if Events::PENDING[0] != 0
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
      # Subscribers (connection_pool.reload/reloaded) run inside the native call.
      rc = Thread.handle_interrupt(DEFER) { WdPool.off_thread { native_reload(err) } }
      Events.raise_deferred if Events::PENDING[0] != 0
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
    # path of `with`): OK with the producer's handle written to the lease
    # slot, or 0 there when none is free; `err`: the fiber's error slot.
    def try_checkout(owner, slot, err)
      Native.wdpool_pool_try_checkout(@handle, owner, slot, err)
    end

    # The waiting checkout, the GVL released; writes the lease slot on OK.
    def blocking_checkout(owner, timeout_ms, slot, err)
      Native.wdpool_pool_checkout(@handle, owner, timeout_ms, slot, err)
    end

    def pool_timeout_ms
      @timeout
    end

    # No producer was free at once: wait for one (creating it if need be),
    # within `timeout` (the pool's when nil). Returns the producer's handle,
    # written to `slot` (which `with`'s ensure checks in) before it returns.
    # Every wait here (sleep, Thread.pass, the blocking checkout) happens
    # while `slot` holds 0.
    def slow_checkout(ctx, slot, timeout)
      budget = timeout.nil? ? pool_timeout_ms : Integer(timeout)
      owner = ctx[OWNER]
      err = ctx[ERR]
      if budget.positive? && WdPool.scheduled?
        # Under a fiber scheduler: poll, so that the scheduler runs other
        # fibers (one of them may hold the producer this one waits for);
        # but a producer that is yet to be created is created at once.
        return finish_checkout(owner, budget, slot, err) if needs_creation?

        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond) + budget
        pause = 0.0005
        loop do
          sleep(pause)
          rc = try_checkout(owner, slot, err)
          raise Errors.take(rc, err) unless rc.zero?

          token = slot.get_uint64(0)
          return token unless token.zero?

          left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond)
          # Time is up, or a producer must be created: one blocking call
          # (a timeout of 0 reports the pool's timeout error).
          return finish_checkout(owner, [left, 0].max, slot, err) if left <= 0 || needs_creation?

          pause = [pause * 2, 0.01].min
        end
      end
      if budget.positive? && Thread.list.size > 1
        # The holder is most likely a Ruby thread waiting for the GVL: let it
        # run and give its producer back before paying for a blocking wait.
        Thread.pass
        rc = try_checkout(owner, slot, err)
        raise Errors.take(rc, err) unless rc.zero?

        token = slot.get_uint64(0)
        return token unless token.zero?
      end
      finish_checkout(owner, budget, slot, err)
    end

    def finish_checkout(owner, timeout_ms, slot, err)
      rc = blocking_checkout(owner, timeout_ms, slot, err)
      Events.raise_deferred if Events::PENDING[0] != 0
      raise Errors.take(rc, err) unless rc.zero?

      slot.get_uint64(0)
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
      @handle = nil # no pool handle: the native global pool's calls take none
      @handle_addr = nil
    end
    # rubocop:enable Lint/MissingSuper

    def setup(size: 5, timeout: 5_000, &configure)
      options = Native::Options.new
      options[:size] = Integer(size)
      options[:timeout_ms] = Integer(timeout)
      # Under DEFER, as ConnectionPool#initialize.
      Thread.handle_interrupt(DEFER) do
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
      end

      @size = Integer(size)
      @timeout = Integer(timeout)
      Events.raise_deferred if Events::PENDING[0] != 0
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

    def try_checkout(owner, slot, err)
      Native.wdpool_try_checkout(owner, slot, err)
    end

    def blocking_checkout(owner, timeout_ms, slot, err)
      Native.wdpool_checkout(owner, timeout_ms, slot, err)
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
        GLOBAL.transaction(timeout: timeout, &block)
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
