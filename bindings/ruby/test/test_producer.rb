# frozen_string_literal: true

require_relative 'test_helper'

class ProducerTest < Minitest::Test
  def setup
    @pool = TestKafka.pool(size: 2, timeout: 5_000)
    @topic = TestKafka.topic('producer')
  end

  def teardown
    @pool.close
  end

  def test_every_field
    ts = Time.at(1_700_000_000, 123, :millisecond)
    report = @pool.with do |p|
      p.produce_sync(topic: @topic, payload: "bin\x00ary".b, key: 'k', partition: 0, timestamp: ts,
                     headers: { 'one' => 'a', 'many' => %w[b c] })
    end
    assert_nil report.error
    assert_equal 0, report.partition
    assert_equal @topic, report.topic_name
    assert_operator report.offset, :>=, 0
    tombstone = @pool.with { |p| p.produce_sync(topic: @topic, payload: nil, key: 'k', partition_key: 'pk') }
    assert_nil tombstone.error
  end

  def test_async_and_many
    handle = @pool.with { |p| p.produce_async(topic: @topic, payload: 'a') }
    assert_kind_of WdPool::DeliveryHandle, handle
    report = handle.wait(max_wait_timeout: 10_000)
    assert_nil report.error
    refute handle.pending?

    reports = @pool.with { |p| p.produce_many_sync([{ topic: @topic, payload: '1' }, { topic: @topic, payload: '2', key: 'x' }]) }
    assert_equal 2, reports.size
    assert(reports.all?(&:delivered?))

    many = @pool.with { |p| p.produce_many_async([{ topic: @topic, payload: '1' }, { topic: @topic, payload: '2' }]) }
    assert_equal 2, many.count
    assert_equal 2, many.wait.size
    assert(@pool.with { |p| p.flush(timeout: 10_000) })
  end

  def test_an_invalid_message_in_many_sends_nothing_and_names_its_index
    e = assert_raises(WdPool::Errors::InvalidMessageError) do
      @pool.with { |p| p.produce_many_sync([{ topic: @topic, payload: '1' }, { topic: '', payload: '2' }]) }
    end
    assert_match(/1/, e.message)
    assert_match(/topic/, e.message)
  end

  def test_a_refused_message_raises_a_produce_error_with_librdkafkas_code
    skip 'needs the mock cluster' if TestKafka::REAL
    topic = TestKafka.topic('one-partition')
    TestKafka::MOCK.create_topic(topic, partitions: 1)
    e = assert_raises(WdPool::Errors::ProduceError) do
      @pool.with { |p| p.produce_sync(topic: topic, payload: 'x', partition: 7) }
    end
    assert_equal(-190, e.kafka_code) # RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
    assert_equal :kafka, e.code
    TestKafka.assert_whole(self, @pool)
  end

  def test_deliver_false_acknowledges_without_a_broker
    pool = WdPool::ConnectionPool.new(size: 1, timeout: 1_000) do |config|
      config.kafka = { 'bootstrap.servers': '127.0.0.1:1' }
      config.deliver = false
    end
    assert_nil(pool.with { |p| p.produce_sync(topic: 'nowhere', payload: 'x') }.error)
    pool.close
  end

  def test_close_reports_and_later_calls_fail
    @pool.with { |p| p.produce_sync(topic: @topic, payload: 'x') }
    report = @pool.shutdown(force: false)
    assert_equal({ closed: 1, undelivered: 0, in_use: 0 }, report)
    assert_equal report, @pool.close
    assert @pool.closed?
    refute @pool.active?
    assert_raises(WdPool::Errors::ClosedError) { @pool.with { nil } }
  end

  def test_module_level_with_and_transaction_use_the_global_pool
    WdPool::ConnectionPool.setup(size: 1) do |config, index|
      config.kafka = { 'bootstrap.servers': TestKafka::BOOTSTRAP, 'transactional.id': "global-#{TestKafka::RUN}-#{index}" }
    end
    assert_nil(WdPool.with { |p| p.produce_sync(topic: @topic, payload: 'g') }.error)
    assert_equal :done, WdPool.transaction { |p| p.produce_async(topic: @topic, payload: 'g'); :done }
    assert_equal 1, WdPool::ConnectionPool.stats[:available]
  ensure
    WdPool::ConnectionPool.close
  end

  def test_global_pool_not_set_up
    WdPool::ConnectionPool.close
    refute WdPool::ConnectionPool.active?
    assert_raises(WdPool::Errors::ClosedError, WdPool::Errors::NotSetUpError) { WdPool.with { nil } }
  end
end
