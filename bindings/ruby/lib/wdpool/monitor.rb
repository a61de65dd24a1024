# frozen_string_literal: true

module WdPool
  # One notification: WaterDrop's (Karafka's) event, a name and a payload.
  class Event
    attr_reader :id, :payload

    def initialize(id, payload)
      @id = id
      @payload = payload
    end

    def [](key)
      @payload.fetch(key)
    end

    def to_h
      @payload
    end
  end

  # WdPool.monitor: subscribe to wdpool's events by name, as with WaterDrop:
  #   WdPool.monitor.subscribe('connection_pool.created') { |event| event[:size] }
  # Lifecycle events run on the thread (and fiber) that caused them; an
  # exception raised by a subscriber there is re-raised by that call once
  # wdpool has returned. Events born on librdkafka's threads (error.occurred,
  # statistics.emitted) and shutdowns of pools left to the garbage collector
  # are delivered on a Ruby thread the gem owns ("wdpool-events"); an
  # exception raised there is printed as a warning.
  class Monitor
    EVENTS = %w[
      connection_pool.created connection_pool.setup connection_pool.shutdown
      connection_pool.reload connection_pool.reloaded connection_pool.checkout_timeout
      connection_pool.producer_replaced transaction.started transaction.committed
      transaction.aborted error.occurred statistics.emitted
    ].freeze

    def initialize
      @listeners = Hash.new { |h, k| h[k] = [] }
      @lock = Mutex.new
      @native = false
      @pid = nil
    end

    # subscribe('event.name') { |event| } or subscribe(listener) where the
    # listener answers on_connection_pool_created(event) and the like.
    def subscribe(event_id = nil, &block)
      if block
        raise ArgumentError, "unknown event #{event_id.inspect}; known: #{EVENTS.join(', ')}" unless EVENTS.include?(event_id.to_s)

        add(event_id.to_s, block)
      elsif event_id
        listener = event_id
        EVENTS.each do |name|
          m = :"on_#{name.tr('.', '_')}"
          add(name, listener.method(m)) if listener.respond_to?(m)
        end
      else
        raise ArgumentError, 'subscribe needs an event name and a block, or a listener'
      end
      block || event_id
    end

    # Removes a block or listener given to subscribe.
    def unsubscribe(listener)
      @lock.synchronize do
        @listeners.each_value do |list|
          list.reject! { |l| l == listener || (l.is_a?(Method) && l.receiver == listener) }
        end
      end
    end

    # Internal: calls the listeners of a native event.
    def dispatch(ev)
      name = ev[:name].null? ? '' : ev[:name].read_string
      list = @listeners[name]
      return if list.nil? || list.empty?

      event = Event.new(name, payload(name, ev))
      list.dup.each { |l| l.call(event) }
    end

    # Internal: after fork, the child needs its own drain thread.
    def after_fork
      return unless @native

      @drain = nil
      start_drain
    end

    private

    def add(name, callable)
      @lock.synchronize do
        @listeners[name] = @listeners[name] + [callable]
        subscribe_native
      end
    end

    def subscribe_native
      unless @native
        id = FFI::MemoryPointer.new(:uint64)
        rc = Native.wdpool_subscribe(Events::TRAMPOLINE, nil, nil, id, nil)
        raise Errors.build(rc) unless rc.zero?

        @native = true
      end
      start_drain
    end

    def start_drain
      return if @drain&.alive? && @pid == Process.pid

      @pid = Process.pid
      @drain = Thread.new do
        Thread.current.name = 'wdpool-events'
        Thread.current.report_on_exception = true
        loop do
          # Masked: subscribers run inside the native call, where a
          # Thread#kill (the process exiting) must not unwind native frames;
          # it is taken between two drains.
          Thread.handle_interrupt(ConnectionPool::DEFER) { Native.wdpool_events_drain(250, 1000, nil, nil) }
          Events.report_drain_errors
        end
      end
    end

    def payload(name, ev)
      p = { pool_id: ev[:pool_id], global: ev[:global] }
      p[:pool] = Events.pool_for(ev[:pool_id], ev[:global])
      case name
      when 'connection_pool.created', 'connection_pool.setup', 'connection_pool.reload', 'connection_pool.reloaded'
        p[:size] = ev[:size]
        p[:timeout] = ev[:timeout_ms]
      when 'connection_pool.shutdown'
        p[:size] = ev[:size]
        p[:timeout] = ev[:timeout_ms]
        p[:undelivered] = ev[:undelivered]
      when 'connection_pool.checkout_timeout'
        p[:size] = ev[:size]
        p[:timeout] = ev[:timeout_ms]
        p[:waited] = ev[:waited_ms]
        p[:available] = ev[:available]
      when 'error.occurred'
        msg = text(ev)
        p[:type] = 'librdkafka.error'
        p[:error_code] = ev[:error_code]
        p[:error] = Errors::ProduceError.new(msg).init_details(:kafka, ev[:error_code])
        p[:message] = msg
      when 'statistics.emitted'
        require 'json'
        p[:statistics] = JSON.parse(text(ev))
      end
      if ev[:slot] >= 0
        p[:slot] = ev[:slot]
        p[:producer_id] = ev[:producer_id].null? ? nil : ev[:producer_id].read_string.force_encoding(Encoding::UTF_8)
      end
      if name.start_with?('transaction.')
        m = text(ev)
        p[:message] = m unless m.empty?
      end
      p
    end

    def text(ev)
      return '' if ev[:message].null?

      ev[:message].read_bytes(ev[:message_len]).force_encoding(Encoding::UTF_8)
    end
  end

  # The native event callback. Internal.
  module Events
    KEY = :__wdpool_deferred_error
    # [threads with a deferred subscriber error]: checked after native calls
    # (a constant's element is cheaper to read than a method's result).
    PENDING = [0]
    @pools = ObjectSpace::WeakMap.new
    @drain_errors = Queue.new

    class << self
      def deferred
        PENDING[0]
      end

      def register(id, pool)
        @pools[id] = pool
      end

      def pool_for(id, global)
        return ConnectionPool.default_pool if global

        @pools[id] || Thread.current[:__wdpool_creating]
      end

      # Runs on a Ruby thread, inside a wdpool call: nothing may escape.
      def call(event_ptr)
        done = false
        ev = Native::Event.new(event_ptr)
        begin
          WdPool.monitor.dispatch(ev)
          done = true
        rescue Exception => e # rubocop:disable Lint/RescueException
          defer(e)
          done = true
        ensure
          unless done
            defer(Errors::NonLocalExitError.new('an event subscriber left its block with break/return/throw').init_details(nil, 0))
            return nil # rubocop:disable Lint/EnsureReturn
          end
        end
        nil
      end

      def defer(error)
        if Thread.current.name == 'wdpool-events'
          @drain_errors << error
        else
          unless Thread.current[KEY]
            Thread.current[KEY] = error
            PENDING[0] += 1
          end
        end
      end

      # Moves a subscriber's error deferred on `thread` (WdPool.off_thread's
      # helper) to the current thread.
      def adopt_deferred(thread)
        error = thread[KEY]
        return unless error

        thread[KEY] = nil
        if Thread.current[KEY]
          PENDING[0] -= 1 # this thread keeps its own first error
        else
          Thread.current[KEY] = error
        end
      end

      # Raises what a subscriber raised during the wdpool call that just returned.
      def raise_deferred
        error = Thread.current[KEY]
        return unless error

        Thread.current[KEY] = nil
        PENDING[0] -= 1
        raise error
      end

      def report_drain_errors
        until @drain_errors.empty?
          e = @drain_errors.pop
          warn "wdpool: an event subscriber raised #{e.class}: #{e.message}"
        end
      end
    end

    TRAMPOLINE = FFI::Function.new(:void, %i[pointer pointer]) { |_ud, ev| Events.call(ev) }
  end

  def self.monitor
    @monitor ||= Monitor.new
  end
end
