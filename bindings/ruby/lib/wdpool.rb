# frozen_string_literal: true

# wdpool: WaterDrop's ConnectionPool on a native pool of librdkafka producers.
# Code written for WaterDrop::ConnectionPool moves over by changing the
# constant: WdPool::ConnectionPool.setup / .with / .transaction / .close.
require 'connection_pool'
require_relative 'wdpool/version'
require_relative 'wdpool/native'
require_relative 'wdpool/errors'
require_relative 'wdpool/config'
require_relative 'wdpool/producer'
require_relative 'wdpool/monitor'
require_relative 'wdpool/connection_pool'
require_relative 'wdpool/mock_cluster'

module WdPool
  class << self
    # The loaded library's version ("0.1.0") and where it was found.
    def library_version
      Native.wdpool_version
    end

    def library_path
      Native::LIBRARY_PATH
    end

    # Internal: the current fiber runs under a fiber scheduler (ruby-async).
    def scheduled?
      !Fiber.scheduler.nil? && !Fiber.current.blocking?
    end

    # Internal: waits for the block to be true without blocking the thread
    # (the scheduler runs other fibers), at most `timeout_ms` (nil: no bound).
    def scheduler_wait(timeout_ms)
      deadline = timeout_ms && Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond) + timeout_ms
      pause = 0.0002
      until yield
        break if deadline && Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond) >= deadline

        sleep(pause)
        pause = [pause * 2, 0.005].min
      end
    end

    # Internal: runs `call` (a native call that blocks with the GVL
    # released: flush, a transaction's begin and end, close, reload) so
    # that, under a fiber scheduler, the thread's other fibers run
    # meanwhile: on a helper thread, waited for through the scheduler.
    # Without a scheduler, on this thread. Either way the call has ended
    # when this returns or raises (an exception raised into the waiting
    # fiber, say the scheduler stopping its task, is raised once the call
    # ended). A subscriber's error deferred on the helper thread is handed
    # to this one (Events.raise_deferred raises it).
    def off_thread(&call)
      return call.call unless scheduled?

      helper = Thread.new do
        Thread.current.report_on_exception = false
        Thread.current.name = 'wdpool-blocking-call'
        call.call
      end
      begin
        helper.value
      rescue Exception # rubocop:disable Lint/RescueException
        # Interrupted while the call goes on: wait for it, blocking this
        # thread (a blocking fiber does not go through the scheduler).
        Fiber.new(blocking: true) { helper.join rescue nil }.resume if helper.alive? # rubocop:disable Style/RescueModifier
        raise
      ensure
        Events.adopt_deferred(helper) unless helper.alive?
      end
    end

    def with(timeout: nil, &block)
      ConnectionPool.with(timeout: timeout, &block)
    end

    def transaction(timeout: nil, &block)
      ConnectionPool.transaction(timeout: timeout, &block)
    end
  end

  # After fork, the child gets its own event drain thread. (The native pools
  # notice the fork themselves: fresh producers, the parent's abandoned.)
  module ForkHook
    def _fork
      pid = super
      WdPool.monitor.after_fork if pid.zero?
      pid
    end
  end
  Process.singleton_class.prepend(ForkHook)
end

module WdPool
  # `with`'s quick path in C (ext/wdpool_fast, built by `gem install` and by
  # `rake compile`): a producer free at once is checked out, yielded and
  # checked in by C code that asynchronous interrupts cannot cut in two, so
  # it needs no Thread.handle_interrupt masks. Everything else (waiting,
  # `timeout:`, errors) takes the pure-Ruby path. WDPOOL_RUBY_PURE=1, or an
  # extension that was not built (no Ruby headers), leaves the pure-Ruby
  # `with` alone.
  FAST_WITH =
    if ENV['WDPOOL_RUBY_PURE'] == '1'
      false
    else
      begin
        require 'wdpool/wdpool_fast'
        lib = Native.ffi_libraries.first
        addr = ->(name) { lib.find_function(name).address }
        FastWith.install(addr.call('wdpool_pool_try_checkout'), addr.call('wdpool_try_checkout'),
                         addr.call('wdpool_producer_checkin'), addr.call('wdpool_error_free'))
      rescue ::LoadError
        false
      end
    end

  # Whether `with` runs its quick path in C (see FAST_WITH).
  def self.fast_with?
    FAST_WITH
  end
end
