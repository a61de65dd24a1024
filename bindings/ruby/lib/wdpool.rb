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
