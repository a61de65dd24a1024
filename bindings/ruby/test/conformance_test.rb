# frozen_string_literal: true

# The Ruby runner of the conformance scenarios (tests/conformance/README.md):
# every tests/conformance/scenarios/*.json runs here through the gem's public
# API, against a mock cluster of its own. Owners are Fibers: each owner's
# steps run in its Fiber, and an open scope is that Fiber suspended inside a
# `with` / `transaction` block (Fiber.yield), so nested scopes of one owner
# are nested blocks of one Fiber, as in an application.
require_relative 'test_helper'

module Conformance
  DIR = File.expand_path('../../../tests/conformance/scenarios', __dir__)
  LIFECYCLE = WdPool::Monitor::EVENTS - %w[error.occurred statistics.emitted]

  # The body's own error ("fail"): must come back unchanged.
  class BodyFailure < StandardError; end

  # What a step did: its outcome ("ok", an error code, "app", "exited") and data.
  Reply = Struct.new(:kind, :message, :data) do
    def self.ok(data = {})
      new('ok', '', data)
    end

    def self.from(error)
      case error
      when BodyFailure then new('app', error.message, {})
      when WdPool::Errors::Error
        flags = { 'retriable' => error.retriable?, 'fatal' => error.fatal?, 'txn_requires_abort' => error.txn_requires_abort? }
        new(error.code.to_s, error.message, { kafka_code: error.kafka_code, kafka_flags: flags.select { |_, v| v }.keys })
      else new("ruby:#{error.class}", error.message, {})
      end
    end
  end

  # One owner: a Fiber that runs the owner's steps.
  class Owner
    attr_reader :depth, :last

    def initialize(run)
      @run = run
      @depth = 0
      @fiber = Fiber.new { |step| serve(nil, step) }
    end

    def call(step)
      reply = @fiber.resume(step)
      case step['op']
      when 'with', 'transaction' then @depth += 1 if reply.data[:entered]
      when 'end' then @depth -= 1
      end
      reply
    end

    private

    # Runs steps inside the current scope (producer) until an `end`, which it
    # returns to the scope's block.
    def serve(producer, step)
      loop do
        case step['op']
        when 'with', 'transaction' then reply = open(step)
        when 'end' then return step
        else
          reply = begin
            @run.act(step, producer || @last)
          rescue StandardError => e
            Reply.from(e)
          end
        end
        step = Fiber.yield(reply)
      end
    end

    # Opens a scope. Its reply is the `end` step's when the block ran (the
    # block answered the open step itself), else the open step's error.
    def open(step)
      pool = @run.pool(step.fetch('pool', 'p'))
      how = nil
      entered = false
      tag = Object.new
      body = proc do |producer|
        entered = true
        @last = producer
        ending = serve(producer, Fiber.yield(Reply.ok(entered: true, slot: producer.index)))
        how = ending.fetch('how', 'ok')
        case how
        when 'fail' then raise BodyFailure, 'the body failed on purpose'
        when 'abort' then raise WdPool::AbortTransaction
        when 'exit' then throw tag
        end
      end
      left = true
      catch(tag) do
        options = step.key?('timeout_ms') ? { timeout: step['timeout_ms'] } : {}
        step['op'] == 'transaction' ? pool.transaction(**options, &body) : pool.with(**options, &body)
        left = false
      end
      return Reply.new('exited', '', {}) if left

      Reply.ok
    rescue WdPool::Errors::EarlyTransactionExit => e
      how == 'exit' ? Reply.new('exited', e.message, {}) : Reply.from(e)
    rescue StandardError => e
      Reply.from(e)
    end
  end

  # One scenario run.
  class Run
    def initialize(test, path, number)
      @test = test
      @path = path
      @doc = JSON.parse(File.read(path))
      @run_id = "rb-#{Process.pid}-#{number}"
      @failures = []
      @owners = {}
      @pools = {}
      @ids = {}
      @events = []
      @seen = 0
    end

    def call
      @cluster = WdPool::MockCluster.new(brokers: 1)
      brokers = ENV['WDPOOL_BROKERS']
      ENV['WDPOOL_BROKERS'] = @cluster.bootstrap_servers
      subscribe
      begin
        @doc.fetch('steps').each_with_index do |step, i|
          @where = "step #{i + 1} (#{step['op']})"
          perform(step)
        end
      ensure
        @where = 'teardown'
        teardown
        ENV['WDPOOL_BROKERS'] = brokers
      end
      @test.assert @failures.empty?, "#{File.basename(@path)}:\n  #{@failures.join("\n  ")}"
    end

    def pool(name)
      @pools.fetch(name) { raise ArgumentError, "no pool named #{name}" }
    end

    # Steps an owner runs on its producer.
    def act(step, producer)
      case step['op']
      when 'produce' then produce(step, producer)
      when 'flush'
        producer.flush(**(step.key?('timeout_ms') ? { timeout: step['timeout_ms'] } : {}))
        Reply.ok
      when 'info' then Reply.ok(info: producer.info)
      else raise ArgumentError, "unknown op #{step['op']}"
      end
    end

    private

    def fail!(text)
      @failures << "#{@where}: #{text}"
    end

    def expand(text, index = nil)
      s = text.to_s.gsub('{run}', @run_id)
      index.nil? ? s : s.gsub('{index}', index.to_s)
    end

    def perform(step)
      expect = step['expect'] || {}
      case step['op']
      when 'pool' then create_pool(step, expect)
      when 'with', 'transaction', 'end', 'produce', 'flush', 'info' then owner_step(step, expect)
      when 'close' then pool_call(expect) { close(step) }
      when 'reload' then pool_call(expect) { reload(step) }
      when 'stats' then pool_call(expect) { stats(step) }
      when 'events' then check_events(step['expect'] || [])
      when 'broker'
        pool_call(expect) do
          @cluster.broker_up(1, step['up']) if step.key?('up')
          @cluster.rtt(1, step['rtt_ms']) if step.key?('rtt_ms')
          {}
        end
      when 'topic'
        pool_call(expect) { @cluster.create_topic(expand(step['topic']), partitions: step.fetch('partitions', 1)) && {} }
      when 'active' then check_value(expect, 'active', WdPool::ConnectionPool.active?)
      when 'inject' then pool_call(expect) { @cluster.push_request_errors(step['api_key'], *step['errors']) && {} }
      else fail!('unknown op')
      end
    end

    def pool_call(expect)
      data = yield
      check_outcome(expect, Reply.ok)
      check_fields(expect, data)
    rescue StandardError => e
      check_outcome(expect, Reply.from(e))
    end

    def global?(name)
      @ids.dig(name, :global)
    end

    def close(step)
      name = step.fetch('pool', 'p')
      force = step.fetch('force', false)
      global?(name) ? WdPool::ConnectionPool.close(force: force) : pool(name).close(force: force)
    end

    def reload(step)
      name = step.fetch('pool', 'p')
      global?(name) ? WdPool::ConnectionPool.reload : pool(name).reload
      {}
    end

    def stats(step)
      name = step.fetch('pool', 'p')
      global?(name) ? WdPool::ConnectionPool.stats : pool(name).stats
    end

    def create_pool(step, expect)
      name = step.fetch('name', 'p')
      config = step['config']
      indexes = []
      configure = config && proc do |c, index|
        indexes << index
        raise BodyFailure, 'configure failed on purpose' if config['fail']

        kafka = { 'bootstrap.servers': @cluster.bootstrap_servers, 'linger.ms': '0' }
        (config['kafka'] || {}).each { |k, v| kafka[k.to_sym] = expand(v, index) }
        kafka[:'transactional.id'] = expand(config['transactional_id'], index) if config['transactional_id']
        c.kafka = kafka
        c.id = expand(config['id'], index) if config['id']
        c.deliver = config['deliver'] if config.key?('deliver')
        c.max_payload_size = config['max_payload_size'] if config['max_payload_size']
        c.max_wait_timeout = config['max_wait_timeout_ms'] if config['max_wait_timeout_ms']
      end
      options = { size: step.fetch('size', 5), timeout: step.fetch('timeout_ms', 5000) }
      begin
        if step['global']
          WdPool::ConnectionPool.setup(**options, &configure)
          @pools[name] = WdPool::ConnectionPool
          @ids[name] = { id: WdPool::ConnectionPool.default_pool.id, global: true }
        else
          @pools[name] = WdPool::ConnectionPool.new(**options, &configure)
          @ids[name] = { id: @pools[name].id, global: false }
        end
        check_outcome(expect, Reply.ok)
      rescue StandardError => e
        check_outcome(expect, Reply.from(e))
      end
      fail!("configured: got #{indexes}, expected #{expect['configured']}") if expect.key?('configured') && expect['configured'] != indexes
    end

    def owner_step(step, expect)
      name = step.fetch('owner', 'A')
      owner = (@owners[name] ||= Owner.new(self))
      if step['op'] == 'end' && owner.depth.zero?
        fail!('the owner has no open scope')
        return
      end
      reply = owner.call(step)
      check_outcome(expect, reply)
      return unless reply.kind == 'ok'

      check_value(expect, 'slot', reply.data[:slot]) if %w[with transaction].include?(step['op'])
      check_fields(expect, reply.data[:info].merge(slot: reply.data[:info][:index])) if reply.data[:info]
      check_reports(expect, reply.data[:reports]) if reply.data[:reports]
    end

    def message_of(m)
      h = { topic: expand(m['topic']) }
      h[:payload] = m.key?('payload_size') ? 'x' * m['payload_size'] : m['payload']
      h[:key] = m['key'] if m.key?('key')
      h[:partition_key] = m['partition_key'] if m.key?('partition_key')
      h[:partition] = m['partition'] if m.key?('partition')
      h[:headers] = m['headers'] if m.key?('headers')
      h
    end

    def produce(step, producer)
      list = step['messages'] || Array.new(step.fetch('count', 1)) { step['message'] }
      messages = list.map { |m| message_of(m) }
      wait = step.fetch('wait', true)
      reports = []
      case step.fetch('mode', 'sync')
      when 'sync' then messages.each { |m| reports << producer.produce_sync(**m) }
      when 'many_sync' then reports = producer.produce_many_sync(messages)
      when 'async'
        messages.each do |m|
          handle = producer.produce_async(**m)
          reports << handle.wait if wait
        end
      when 'many_async'
        handle = producer.produce_many_async(messages)
        if wait
          r = handle.wait
          reports = r.is_a?(Array) ? r : [r]
        end
      else raise ArgumentError, "unknown mode #{step['mode']}"
      end
      Reply.ok(reports: reports)
    end

    def check_outcome(expect, reply)
      want = expect.fetch('result', 'ok')
      fail!("result: got #{reply.kind} (#{reply.message}), expected #{want}") unless want == reply.kind
      check_contains(expect, 'message', reply.message)
      check_value(expect, 'kafka_code', reply.data.fetch(:kafka_code, 0))
      flags = reply.data.fetch(:kafka_flags, []).sort
      fail!("kafka_flags: got #{flags}, expected #{expect['kafka_flags'].sort}") if expect.key?('kafka_flags') && flags != expect['kafka_flags'].sort
    end

    def check_contains(expect, key, actual)
      Array(expect[key]).each do |s|
        fail!("#{key}: #{actual.inspect} does not contain #{expand(s).inspect}") unless actual.to_s.include?(expand(s))
      end
    end

    def check_value(expect, key, actual)
      return unless expect.key?(key)

      want = expect[key]
      want = expand(want) if want.is_a?(String)
      fail!("#{key}: got #{actual.inspect}, expected #{want.inspect}") unless want == actual
    end

    FIELDS = %w[closed undelivered in_use size created idle creating waiting checkout_timeouts creations replaced
                slot transactional in_transaction depth rollback_only].freeze

    def check_fields(expect, data)
      FIELDS.each do |key|
        next unless expect.key?(key)

        if data.key?(key.to_sym)
          check_value(expect, key, data[key.to_sym])
        else
          fail!("#{key}: not reported")
        end
      end
    end

    def check_reports(expect, reports)
      check_value(expect, 'offsets', reports.map(&:offset)) if expect.key?('offsets')
      reports.each { |r| check_value(expect, 'partition', r.partition) } if expect.key?('partition')
      check_value(expect, 'delivered', reports.count { |r| r.error.nil? && r.offset >= 0 }) if expect.key?('delivered')
    end

    def subscribe
      @listener = proc { |event| @events << event }
      LIFECYCLE.each { |name| WdPool.monitor.subscribe(name, &@listener) }
    end

    # Event fields as the scenarios name them, from the gem's payloads.
    EVENT_FIELDS = { 'global' => :global, 'size' => :size, 'timeout_ms' => :timeout, 'slot' => :slot,
                     'producer_id' => :producer_id, 'available' => :available, 'undelivered' => :undelivered }.freeze

    def check_events(expected)
      names = @ids.to_h { |name, v| [v[:id], name] }
      got = @events[@seen..].select { |e| names.key?(e[:pool_id]) }
      @seen = @events.size
      got.each_with_index do |event, k|
        want = expected[k]
        if want.nil?
          fail!("unexpected event #{event.id} (pool #{names[event[:pool_id]]})")
          next
        end
        payload = event.payload
        fail!("event #{k + 1}: got #{event.id}, expected #{want['name']}") unless want['name'] == event.id
        fail!("event #{k + 1}: pool #{names[payload[:pool_id]]}, expected #{want['pool']}") if want.key?('pool') && want['pool'] != names[payload[:pool_id]]
        EVENT_FIELDS.each do |key, sym|
          next unless want.key?(key)

          if payload.key?(sym)
            check_value(want, key, payload[sym])
          else
            fail!("event #{k + 1} (#{event.id}): no #{sym} in its payload")
          end
        end
        check_contains(want, 'message', payload[:message].to_s)
        fail!("event #{k + 1}: waited #{payload[:waited]} ms") if want.key?('waited_ms_max') && payload[:waited] > want['waited_ms_max']
      end
      expected[got.size..]&.each { |want| fail!("missing event #{want['name']}") }
    end

    def teardown
      @owners.each do |name, owner|
        next if owner.depth.zero?

        fail!("owner #{name} left #{owner.depth} scope(s) open")
        owner.call('op' => 'end', 'how' => 'ok') until owner.depth.zero?
      end
      @ids.each do |name, v|
        if v[:global]
          WdPool::ConnectionPool.close(force: true) if WdPool::ConnectionPool.default_pool.id == v[:id]
        else
          @pools[name].close(force: true)
        end
      end
      WdPool.monitor.unsubscribe(@listener) if @listener
      @cluster&.close
    end
  end
end

class ConformanceTest < Minitest::Test
  Dir[File.join(Conformance::DIR, '*.json')].sort.each_with_index do |path, i|
    define_method("test_#{File.basename(path, '.json')}") { Conformance::Run.new(self, path, i).call }
  end

  def test_every_scenario_is_here
    assert_operator Dir[File.join(Conformance::DIR, '*.json')].size, :>=, 30
  end
end
