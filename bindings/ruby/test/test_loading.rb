# frozen_string_literal: true

require_relative 'test_helper'
require 'open3'
require 'tmpdir'
require 'fileutils'

# Where the library is looked for: pkg-config, WDPOOL_LIB, the build tree.
class LoadingTest < Minitest::Test
  LIB = File.expand_path('../lib', __dir__)

  def run_ruby(env, code, lib: LIB)
    Open3.capture3(env, RbConfig.ruby, '-I', lib, '-e', code)
  end

  # `with`'s C quick path (ext/wdpool_fast): loaded unless WDPOOL_RUBY_PURE=1.
  # The test command runs the suite both ways and says which it expects
  # (WDPOOL_EXPECT_FAST), so an extension that silently fails to build or
  # load fails here.
  def test_the_c_quick_path_of_with_is_loaded_as_expected
    expect = ENV.fetch('WDPOOL_EXPECT_FAST', nil)
    skip 'WDPOOL_EXPECT_FAST not set' if expect.nil?
    assert_equal expect == '1', WdPool.fast_with?
    assert_equal(expect == '1', WdPool::ConnectionPool.instance_method(:with).source_location.nil?,
                 'the C `with` has no Ruby source location')
    out, err, status = run_ruby({ 'WDPOOL_RUBY_PURE' => '1' }, 'require "wdpool"; print WdPool.fast_with?')
    assert status.success?, err
    assert_equal 'false', out
  end

  # `gem build` makes a gem that installs (compiling the C extension when
  # Ruby's headers are there, as they are where the tests run) and loads
  # the library through WDPOOL_LIB.
  def test_the_built_gem_installs_and_loads_with_its_extension
    Dir.mktmpdir('wdpool-gem') do |dir|
      root = File.expand_path('..', __dir__)
      out, status = Open3.capture2e('gem', 'build', File.join(root, 'wdpool.gemspec'), '--output',
                                    File.join(dir, 'wdpool.gem'), chdir: root)
      assert status.success?, out
      out, status = Open3.capture2e('gem', 'install', '--local', '--ignore-dependencies', '--no-document',
                                    '--install-dir', File.join(dir, 'gems'), File.join(dir, 'wdpool.gem'))
      assert status.success?, out
      # the new gem first, then where Debian's gems (ffi, connection_pool) are
      env = { 'GEM_PATH' => [File.join(dir, 'gems'), *Gem.path].join(File::PATH_SEPARATOR), 'PKG_CONFIG_LIBDIR' => '/nonexistent',
              'WDPOOL_LIB' => WdPool.library_path, 'WDPOOL_RUBY_PURE' => nil }
      out, err, status = Open3.capture3(env, RbConfig.ruby, '-e',
                                        'require "wdpool"; print $LOADED_FEATURES.grep(/wdpool\/wdpool_fast/).size, " ", ' \
                                        'WdPool.fast_with?, " ", WdPool::ConnectionPool.new(size: 1) { |c| c.deliver = false }.with { :ok }')
      assert status.success?, err
      assert_equal '1 true ok', out
      assert_match(%r{#{Regexp.escape(File.join(dir, 'gems'))}/}, Open3.capture2(env, RbConfig.ruby, '-e',
                                                                                   'require "wdpool"; print $LOADED_FEATURES.grep(/wdpool_fast/).first')[0])
    end
  end

  def test_wdpool_lib_is_used_and_reported
    out, err, status = run_ruby({ 'PKG_CONFIG_LIBDIR' => '/nonexistent', 'WDPOOL_LIB' => File.dirname(WdPool.library_path) },
                                'require "wdpool"; print WdPool::Native::LIBRARY_SOURCE, " ", WdPool.library_path')
    assert status.success?, err
    assert_equal "WDPOOL_LIB #{WdPool.library_path}", out
  end

  def test_nothing_found_lists_what_was_tried
    Dir.mktmpdir do |dir|
      FileUtils.cp_r(LIB, dir) # a gem outside the source tree
      _, err, status = run_ruby({ 'PKG_CONFIG_LIBDIR' => '/nonexistent', 'WDPOOL_LIB' => nil },
                                'require "wdpool"', lib: File.join(dir, 'lib'))
      refute status.success?
      assert_match(/libwdpool not found\. Tried, in order:/, err)
      assert_match(/pkg-config wdpool: no wdpool\.pc/, err)
      assert_match(/WDPOOL_LIB: not set/, err)
      assert_match(%r{build tree \(release\): .*target/release/libwdpool\.so does not exist}, err)
      assert_match(%r{build tree \(debug\): .*target/debug/libwdpool\.so does not exist}, err)
    end
  end

  def test_the_abi_version_is_checked
    assert_equal 1, WdPool::Native.wdpool_abi_version
    assert_equal WdPool::ABI_VERSION, WdPool::Native.wdpool_abi_version
  end
end
