# frozen_string_literal: true

require_relative 'lib/wdpool/version'

Gem::Specification.new do |spec|
  spec.name = 'wdpool'
  spec.version = WdPool::VERSION
  spec.summary = "WaterDrop's ConnectionPool on wdpool, a native pool of librdkafka producers"
  spec.description = 'Ruby binding (ffi) of libwdpool (C ABI version 1). Finds the library through ' \
                     'pkg-config wdpool, the WDPOOL_LIB environment variable, or the source tree.'
  spec.authors = ['wdpool']
  spec.license = 'MIT'
  spec.required_ruby_version = '>= 3.1'
  spec.files = Dir['lib/**/*.rb'] + ['wdpool.gemspec']
  spec.require_paths = ['lib']
  spec.add_dependency 'connection_pool', '>= 2.2'
  spec.add_dependency 'ffi', '>= 1.15'
end
