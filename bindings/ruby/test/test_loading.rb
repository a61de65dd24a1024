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
