# frozen_string_literal: true

require_relative 'test_helper'

# Exceptions come back unchanged; non-local exits never jump over Rust frames.
class ExitsTest < Minitest::Test
  class Boom < StandardError; end

  def setup
    @pool = TestKafka.pool(size: 2, timeout: 2_000, deliver: false)
    @tx = TestKafka.pool(size: 2, timeout: 5_000, transactional: 'exits')
    @aborted = []
    @committed = []
    @subs = [
      WdPool.monitor.subscribe('transaction.aborted') { |e| @aborted << e[:pool_id] },
      WdPool.monitor.subscribe('transaction.committed') { |e| @committed << e[:pool_id] }
    ]
  end

  def teardown
    @subs.each { |s| WdPool.monitor.unsubscribe(s) }
    @pool.close
    @tx.close
  end

  def test_exception_in_with_is_the_same_object_and_the_pool_stays_whole
    boom = Boom.new('x')
    raised = assert_raises(Boom) { @pool.with { raise boom } }
    assert_same boom, raised
    TestKafka.assert_whole(self, @pool)
  end

  def test_exception_in_transaction_is_the_same_object_and_aborts
    boom = Boom.new('x')
    raised = assert_raises(Boom) { @tx.transaction { |p| p.produce_async(topic: TestKafka.topic('exits'), payload: 'x'); raise boom } }
    assert_same boom, raised
    assert_equal [@tx.id], @aborted
    assert_empty @committed
    TestKafka.assert_whole(self, @tx)
  end

  def test_abort_transaction_rolls_back_without_an_error
    assert_nil(@tx.transaction { |p| p.produce_async(topic: TestKafka.topic('exits'), payload: 'x'); raise WdPool::AbortTransaction })
    assert_equal [@tx.id], @aborted
    TestKafka.assert_whole(self, @tx)
  end

  def test_commit_returns_the_blocks_value
    assert_equal :value, @tx.transaction { |p| p.produce_sync(topic: TestKafka.topic('exits'), payload: 'x'); :value }
    assert_equal [@tx.id], @committed
  end

  def helper_return_from_with
    @pool.with { return :returned }
    :not_reached
  end

  def helper_return_from_transaction
    @tx.transaction { |p| p.produce_async(topic: TestKafka.topic('exits'), payload: 'x'); return :returned }
    :not_reached
  end

  def test_break_return_next_throw_out_of_with_leave_the_pool_whole
    assert_equal :broke, @pool.with { break :broke }
    assert_equal :broke, [1].each { @pool.with { @pool.with { break :broke } } ; break :broke }
    assert_equal :returned, helper_return_from_with
    assert_equal :nexted, @pool.with { next :nexted }
    assert_equal :thrown, catch(:out) { @pool.with { throw :out, :thrown } }
    # nested levels too
    assert_equal :thrown, catch(:out) { @pool.with { @pool.with { throw :out, :thrown } } }
    TestKafka.assert_whole(self, @pool)
  end

  def test_break_out_of_transaction_aborts_and_raises_early_exit
    assert_raises(WdPool::Errors::EarlyTransactionExit) do
      [1].each { @tx.transaction { |p| p.produce_async(topic: TestKafka.topic('exits'), payload: 'x'); break } }
    end
    assert_equal [@tx.id], @aborted
    TestKafka.assert_whole(self, @tx)
  end

  def test_return_out_of_transaction_aborts_and_raises_early_exit
    assert_raises(WdPool::Errors::EarlyTransactionExit) { helper_return_from_transaction }
    assert_equal [@tx.id], @aborted
    TestKafka.assert_whole(self, @tx)
  end

  def test_throw_out_of_transaction_aborts_and_raises_early_exit
    assert_raises(WdPool::Errors::EarlyTransactionExit) do
      catch(:out) { @tx.transaction { throw :out } }
    end
    assert_equal [@tx.id], @aborted
    # also from a nested level: the outer level reports it
    assert_raises(WdPool::Errors::EarlyTransactionExit) do
      @tx.with do |p|
        p.transaction { catch(:out) { p.transaction { throw :out } } }
      end
    end
    assert_empty @committed
    TestKafka.assert_whole(self, @tx)
  end

  # `next` is an ordinary end of the block in Ruby: the transaction commits,
  # as in WaterDrop.
  def test_next_out_of_transaction_commits
    assert_equal :nexted, @tx.transaction { next :nexted }
    assert_equal [@tx.id], @committed
  end

  def test_nested_transactions_follow_wdpools_rules
    # an abort requested inside rolls the whole transaction back, no error
    @tx.with do |p|
      p.transaction do
        p.produce_async(topic: TestKafka.topic('exits'), payload: 'outer')
        p.transaction { raise WdPool::AbortTransaction }
      end
    end
    assert_equal [@tx.id], @aborted
    # a failure rescued between two levels still rolls back, and is reported
    assert_raises(WdPool::Errors::TransactionAbortedError) do
      @tx.with do |p|
        p.transaction do
          begin
            p.transaction { raise Boom }
          rescue Boom
            nil
          end
        end
      end
    end
    assert_empty @committed
    TestKafka.assert_whole(self, @tx)
  end

  def test_transaction_on_a_non_transactional_producer
    assert_raises(WdPool::Errors::NotTransactionalError) { @pool.transaction { :x } }
    TestKafka.assert_whole(self, @pool)
  end

  def test_producer_kept_beyond_its_lease_is_stale
    kept = @pool.with { |p| p }
    assert_raises(WdPool::Errors::StaleHandleError) { kept.produce_sync(topic: 'x', payload: 'y') }
  end

  def test_configure_block_errors_come_back_after_the_native_call
    boom = Boom.new('cfg')
    assert_same boom, assert_raises(Boom) { WdPool::ConnectionPool.new(size: 2) { raise boom } }
    e = assert_raises(WdPool::Errors::InvalidConfigurationError) do
      WdPool::ConnectionPool.new(size: 1) { |c| c.kafka = { 'bootstrap.servers' => 'x:1', 'no.such.key' => 1 } }
    end
    assert_equal 'no.such.key', e.key
    assert_match(/no\.such\.key/, e.message)
    e = assert_raises(WdPool::Errors::InvalidConfigurationError) { WdPool::ConnectionPool.new(size: 1) { |c| c.kafka = { acks: 'sometimes' } } }
    assert_equal 'acks', e.key
    assert_raises(WdPool::Errors::NonLocalExitError) { catch(:cfg) { WdPool::ConnectionPool.new(size: 1) { throw :cfg } } }
    assert_raises(WdPool::Errors::NonLocalExitError) { [1].each { WdPool::ConnectionPool.new(size: 1) { break } } }
  end

  def test_invalid_messages_name_the_field
    @pool.with do |p|
      e = assert_raises(WdPool::Errors::InvalidMessageError) { p.produce_sync(topic: 'ok', payload: 'x', partition_key: '') }
      assert_match(/partition_key/, e.message)
      e = assert_raises(WdPool::Errors::InvalidMessageError) { p.produce_sync(topic: 'a b', payload: 'x') }
      assert_match(/topic/, e.message)
    end
    TestKafka.assert_whole(self, @pool)
  end

  def test_subscriber_exceptions_come_back_after_the_call
    boom = Boom.new('subscriber')
    sub = WdPool.monitor.subscribe('connection_pool.reload') { raise boom }
    assert_same boom, assert_raises(Boom) { @pool.reload }
    WdPool.monitor.unsubscribe(sub)
    sub = WdPool.monitor.subscribe('connection_pool.reload') { throw :nope }
    assert_raises(WdPool::Errors::NonLocalExitError) { catch(:nope) { @pool.reload } }
    WdPool.monitor.unsubscribe(sub)
    @pool.reload
    @pool.with { |p| p.produce_sync(topic: 'after', payload: 'x') }
  end
end
