# frozen_string_literal: true

# An empty `with`: wdpool's against the connection_pool gem's wrapping a
# plain object, side by side in one run; 1 thread on a pool of 2, and 4
# threads on a pool of 2. Prints ns per `with` (wall clock / operations).
#
#   cd bindings/ruby && ruby -Ilib bench/with.rb [iterations per thread]
$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'wdpool'
require 'connection_pool'

N = Integer(ARGV[0] || 200_000)

def measure(threads, n)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Array.new(threads) { Thread.new { n.times { yield } } }.each(&:join)
  (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) / (threads * n) * 1e9
end

wd = WdPool::ConnectionPool.new(size: 2, timeout: 5_000) { |config| config.deliver = false }
cp = ConnectionPool.new(size: 2, timeout: 5) { Object.new }
wd.with { nil } # create the producers
wd.with { wd.with { nil } }

puts "ruby #{RUBY_VERSION}, ffi #{FFI::VERSION}, connection_pool #{ConnectionPool::VERSION}, #{N} iterations per thread"
[[1, 'pool 2, 1 thread'], [4, 'pool 2, 4 threads']].each do |threads, label|
  3.times do |round|
    c = measure(threads, N) { cp.with { nil } }
    w = measure(threads, N) { wd.with { nil } }
    puts format('%-18s round %d: connection_pool %7.0f ns  wdpool %7.0f ns  ratio %.2f', label, round, c, w, w / c)
  end
end
s = wd.stats
puts "wdpool stats after: in_use=#{s[:in_use]} waiting=#{s[:waiting]} total_wait_us=#{s[:total_wait_us]}"
wd.close
