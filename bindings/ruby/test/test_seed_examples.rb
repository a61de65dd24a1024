# frozen_string_literal: true

require_relative 'test_helper'
require 'logger'
require 'stringio'

# Every example of WaterDrop's ConnectionPool documentation, with WaterDrop
# replaced by WdPool; broker addresses ('localhost:9092', 'analytics-cluster:9092',
# 'notifications-cluster:9092') replaced by the test cluster (BOOTSTRAP).
class SeedExamplesTest < Minitest::Test
  BOOTSTRAP = TestKafka::BOOTSTRAP
  LOG = StringIO.new

  # The examples talk to Rails.logger.
  module ::Rails
    def self.logger
      @logger ||= Logger.new(SeedExamplesTest::LOG)
    end
  end

  def logger
    Rails.logger
  end

  def teardown
    WdPool::ConnectionPool.close
  end

  Order = Struct.new(:id, :amount) do
    def to_json(*)
      { id: id, amount: amount }.to_json
    end
  end

  def test_getting_started
    # Basic connection pool setup
    WdPool::ConnectionPool.setup(
      size: 10,
      timeout: 5_000
    )

    # Get a producer from the pool and use it
    report = WdPool::ConnectionPool.with do |producer|
      producer.produce_sync(topic: 'events', payload: 'my message')
    end
    assert_nil report.error
    assert_equal 'events', report.topic
    assert_operator report.offset, :>=, 0

    # Close the connection pool when done
    WdPool::ConnectionPool.close
    refute WdPool::ConnectionPool.active?
  end

  def test_transactions_and_manual_equivalent
    # Setup transactional connection pool with unique transaction IDs
    WdPool::ConnectionPool.setup(size: 5) do |config, index|
      config.kafka = {
        'bootstrap.servers': BOOTSTRAP,
        'transactional.id': "my-app-#{TestKafka::RUN}-#{index}"
      }
      config.deliver = true
    end
    order = Order.new(1, 10)
    inventory_update = { sku: 'x', delta: -1 }

    # Automatically handles transaction lifecycle
    WdPool::ConnectionPool.transaction do |producer|
      producer.produce_sync(topic: 'orders', payload: order.to_json)
      producer.produce_sync(topic: 'inventory', payload: inventory_update.to_json)
    end

    # Manual approach (equivalent to the above)
    WdPool::ConnectionPool.with do |producer|
      producer.transaction do
        producer.produce_sync(topic: 'orders', payload: order.to_json)
        producer.produce_sync(topic: 'inventory', payload: inventory_update.to_json)
      end
    end
    assert_equal 5, WdPool::ConnectionPool.stats[:available]
  end

  def test_configuration_options
    WdPool::ConnectionPool.setup(size: 10, timeout: 5_000) do |config, index|
      config.kafka = {
        'bootstrap.servers': BOOTSTRAP,
        'transactional.id': "my-app-cfg-#{TestKafka::RUN}-#{index}" # Unique per producer
      }
      config.deliver = true
    end
    assert WdPool::ConnectionPool.active?
    assert_equal 10, WdPool::ConnectionPool.stats[:size]
  end

  def test_multiple_instances
    event_data = { user: 1 }
    notification = { text: 'hi' }
    # Create separate connection pools for different purposes
    analytics_pool = WdPool::ConnectionPool.new(size: 5, timeout: 3_000) do |config, index|
      config.kafka = {
        'bootstrap.servers': BOOTSTRAP,
        'transactional.id': "analytics-#{TestKafka::RUN}-#{index}"
      }
      config.deliver = true
    end

    notifications_pool = WdPool::ConnectionPool.new(size: 10, timeout: 10_000) do |config|
      config.kafka = {
        'bootstrap.servers': BOOTSTRAP,
        'acks': 'all'
      }
      config.deliver = true
    end

    # Use specific pools for different tasks
    analytics_pool.with do |producer|
      producer.produce_sync(topic: 'user_events', payload: event_data.to_json)
    end

    handle = notifications_pool.with do |producer|
      producer.produce_async(topic: 'push_notifications', payload: notification.to_json)
    end
    assert_nil handle.wait.error

    # Don't forget to close each pool when shutting down
    analytics_pool.close
    notifications_pool.close
  end

  class EventPublisher
    def self.publish(event_type, data)
      WdPool::ConnectionPool.with do |producer|
        producer.produce_async(
          topic: "events.#{event_type}",
          payload: data.to_json,
          headers: { 'timestamp' => Time.now.to_i.to_s }
        )
      end
    end
  end

  def test_high_throughput_publishing
    # Setup once during application initialization
    WdPool::ConnectionPool.setup(size: 20, timeout: 10_000)

    # Use throughout your application
    a = EventPublisher.publish('user_created', { id: 123, name: 'Alice' })
    b = EventPublisher.publish('order_placed', { order_id: 456, amount: 99.99 })
    assert_equal 'events.user_created', a.wait.topic
    assert_equal 'events.order_placed', b.wait.topic
  end

  class NotificationJob
    def perform(user_id, message)
      WdPool::ConnectionPool.with do |producer|
        producer.produce_sync(
          topic: 'notifications',
          payload: {
            user_id: user_id,
            message: message,
            timestamp: Time.now.iso8601
          }.to_json
        )
      end
    rescue ConnectionPool::TimeoutError => e
      Rails.logger.error "No producer available from pool: #{e.message}"
      # Consider retry logic or fallback to direct producer
      raise
    rescue => e
      Rails.logger.error "Failed to publish message: #{e.message}"
      # Handle other errors like network issues, serialization errors, etc.
      raise
    end
  end

  def test_background_job_and_pool_timeout
    WdPool::ConnectionPool.setup(size: 1, timeout: 200)
    report = NotificationJob.new.perform(1, 'hello')
    assert_nil report.error

    held = Queue.new
    release = Queue.new
    holder = Thread.new { WdPool::ConnectionPool.with { held << 1; release.pop } }
    held.pop
    error = assert_raises(ConnectionPool::TimeoutError) { NotificationJob.new.perform(2, 'late') }
    assert_kind_of Timeout::Error, error
    assert_kind_of WdPool::Errors::PoolTimeoutError, error
    assert_match(%r{No producer available from pool: .*waited \d+ ms, 0/1 available}, LOG.string)
    release << 1
    holder.join
  end

  class OrderProcessor
    def process_orders(orders)
      WdPool::ConnectionPool.transaction do |producer|
        orders.each do |order|
          producer.produce_async(
            topic: 'processed_orders',
            payload: order.to_json,
            key: order.id.to_s
          )
        end
      end
    end
  end

  def test_transactional_order_processing
    WdPool::ConnectionPool.setup(size: 2) do |config, index|
      config.kafka = { 'bootstrap.servers': BOOTSTRAP, 'transactional.id': "orders-#{TestKafka::RUN}-#{index}" }
    end
    committed = []
    sub = WdPool.monitor.subscribe('transaction.committed') { |event| committed << event[:slot] }
    orders = [Order.new(1, 5), Order.new(2, 7)]
    assert_equal orders, OrderProcessor.new.process_orders(orders)
    assert_equal 1, committed.size
  ensure
    WdPool.monitor.unsubscribe(sub) if sub
  end

  def test_error_handling
    WdPool::ConnectionPool.setup(size: 2, timeout: 1_000)
    data = { a: 1 }
    begin
      WdPool::ConnectionPool.with do |producer|
        producer.produce_sync(topic: 'events', payload: data.to_json)
      end
    rescue ConnectionPool::TimeoutError => e
      # Pool exhausted, no producers available
      logger.error "Connection pool timeout: #{e.message}"
    rescue => e
      # Other errors (network, serialization, etc.)
      logger.error "Message production failed: #{e.message}"
      raise
    end

    error = assert_raises(WdPool::Errors::InvalidMessageError) do
      begin
        WdPool::ConnectionPool.with do |producer|
          producer.produce_sync(topic: 'bad topic!', payload: data.to_json)
        end
      rescue ConnectionPool::TimeoutError => e
        logger.error "Connection pool timeout: #{e.message}"
      rescue => e
        logger.error "Message production failed: #{e.message}"
        raise
      end
    end
    assert_match(/topic/, error.message)
    assert_match(/Message production failed/, LOG.string)
  end

  def test_monitoring
    seen = []
    # Monitor connection pool lifecycle
    a = WdPool.monitor.subscribe('connection_pool.created') do |event|
      Rails.logger.info "Connection pool created with #{event[:size]} connections"
      seen << [:created, event[:size]]
    end

    b = WdPool.monitor.subscribe('connection_pool.shutdown') do |event|
      Rails.logger.info "Connection pool shutting down"
      seen << [:shutdown, event[:pool]]
    end
    WdPool::ConnectionPool.setup(size: 3, timeout: 1_000)
    WdPool::ConnectionPool.close
    assert_includes seen, [:created, 3]
    assert_includes seen.map(&:first), :shutdown
    assert_match(/Connection pool created with 3 connections/, LOG.string)
  ensure
    WdPool.monitor.unsubscribe(a) if a
    WdPool.monitor.unsubscribe(b) if b
  end
end
