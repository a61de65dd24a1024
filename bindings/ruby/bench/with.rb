# frozen_string_literal: true

# An empty `with`: wdpool's against the connection_pool gem's wrapping a
# plain object, side by side in one run; 1 thread on a pool of 2, and 4
# threads on a pool of 2. Prints ns per `with` (wall clock / operations).
#
#   cd bindings/ruby && ruby -Ilib bench/with.rb [iterations per thread [rounds]]
#
# `make bench` runs one side per process instead (bench/driver.py, rows 9a-b)
# and reads the line "RESULT key=value ..." it prints:
#
#   ruby bench/with.rb --impl wdpool|connection_pool --threads T --ops N [--pool 2] [--expect-fast 1|0]
#
# N operations in all, split over the T threads, after a warm-up of N/10;
# ns_per_op is wall time / N. lib= is the libwdpool.so loaded.
$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'wdpool'
require 'connection_pool'

def measure(threads, n, &op)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Array.new(threads) { Thread.new { n.times(&op) } }.each(&:join)
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
end

def wdpool_pool(size)
  wd = WdPool::ConnectionPool.new(size: size, timeout: 5_000) { |config| config.deliver = false }
  nest = lambda do |depth|
    # every producer created: `size` owners nested (a thread each)
    wd.with { depth > 1 ? Thread.new { nest.call(depth - 1) }.join : nil }
  end
  nest.call(size)
  wd
end

def gem_pool(size)
  ConnectionPool.new(size: size, timeout: 5) { Object.new }
end

def harness(argv)
  opts = { '--impl' => nil, '--threads' => '1', '--ops' => '200000', '--pool' => '2', '--expect-fast' => nil }
  argv.each_slice(2) do |k, v|
    abort "with.rb: unknown option #{k}" unless opts.key?(k)
    abort "with.rb: #{k} needs a value" if v.nil?
    opts[k] = v
  end
  impl = opts['--impl']
  threads, ops, size = %w[--threads --ops --pool].map { |k| Integer(opts[k]) }
  abort 'with.rb: --threads, --ops and --pool at least 1' unless [threads, ops, size].all?(&:positive?)
  if opts['--expect-fast'] && (opts['--expect-fast'] == '1') != WdPool.fast_with?
    abort "with.rb: the C quick path of with is #{WdPool.fast_with? ? 'loaded' : 'not loaded'}, " \
          "against --expect-fast #{opts['--expect-fast']} (rake compile builds it; WDPOOL_RUBY_PURE=1 turns it off)"
  end
  pool = case impl
         when 'wdpool' then wdpool_pool(size)
         when 'connection_pool' then gem_pool(size)
         else abort 'with.rb: --impl wdpool|connection_pool'
         end
  per_thread = [ops / threads, 1].max
  measure(threads, [per_thread / 10, 1].max) { pool.with { nil } }
  elapsed = measure(threads, per_thread) { pool.with { nil } }
  done = per_thread * threads
  if impl == 'wdpool'
    s = pool.stats
    abort "with.rb: #{s[:in_use]} producers still in use" unless s[:in_use].zero?
    pool.close
  end
  lib = impl == 'wdpool' ? WdPool::Native::LIBRARY_PATH : '-'
  puts format('RESULT bench=with impl=%s lang=ruby threads=%d pool=%d ops=%d wall_ns_per_op=%.2f elapsed_s=%.6f ' \
              'lib=%s ruby=%s ffi=%s connection_pool=%s fast_with=%s',
              impl, threads, size, done, elapsed / done * 1e9, elapsed, lib, RUBY_VERSION, FFI::VERSION,
              ConnectionPool::VERSION, WdPool.fast_with?)
end

def side_by_side(n, rounds)
  wd = wdpool_pool(2)
  cp = gem_pool(2)
  puts "ruby #{RUBY_VERSION}, ffi #{FFI::VERSION}, connection_pool #{ConnectionPool::VERSION}, " \
       "#{n} iterations per thread, #{rounds} rounds (the order alternates); " \
       "wdpool's C quick path #{WdPool.fast_with? ? 'loaded' : 'NOT loaded (rake compile)'}"
  # pure: the pure-Ruby `with` (what runs without the C extension)
  ops = { cp: ->(_) { cp.with { nil } }, wd: ->(_) { wd.with { nil } }, pure: ->(_) { wd.__with_masked { nil } } }
  [[1, 'pool 2, 1 thread'], [4, 'pool 2, 4 threads']].each do |threads, label|
    runs = Array.new(rounds) do |round|
      order = round.odd? ? %i[pure wd cp] : %i[cp wd pure]
      ns = order.to_h { |name| [name, measure(threads, n, &ops[name]) / (threads * n) * 1e9] }
      puts format('%-18s round %d: connection_pool %7.0f ns  wdpool %7.0f ns (%.2f)  pure Ruby path %7.0f ns (%.2f)',
                  label, round, ns[:cp], ns[:wd], ns[:wd] / ns[:cp], ns[:pure], ns[:pure] / ns[:cp])
      ns
    end
    median = ->(xs) { xs.sort[xs.size / 2] }
    %i[wd pure].each do |side|
      ratios = runs.map { |r| r[side] / r[:cp] }
      puts format('%-18s median:  connection_pool %7.0f ns  %-14s %7.0f ns  ratio %.2f (%.2f to %.2f)',
                  label, median.call(runs.map { |r| r[:cp] }), side == :wd ? 'wdpool' : 'pure Ruby path',
                  median.call(runs.map { |r| r[side] }), median.call(ratios), ratios.min, ratios.max)
    end
  end
  s = wd.stats
  puts "wdpool stats after: in_use=#{s[:in_use]} waiting=#{s[:waiting]} total_wait_us=#{s[:total_wait_us]}"
  wd.close
end

if ARGV.first&.start_with?('--')
  harness(ARGV)
else
  side_by_side(Integer(ARGV[0] || 200_000), Integer(ARGV[1] || 5))
end
