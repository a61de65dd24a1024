# frozen_string_literal: true

require_relative 'lib/wdpool/version'

Gem::Specification.new do |spec|
  spec.name = 'wdpool'
  spec.version = WdPool::VERSION
  spec.summary = "WaterDrop's ConnectionPool on wdpool, a native pool of librdkafka producers"
  spec.description = 'Ruby binding (ffi) of libwdpool (C ABI version 1), with an optional C extension for ' \
                     "`with`'s quick path. Finds the library through pkg-config wdpool, the WDPOOL_LIB " \
                     'environment variable, or the source tree.'
  spec.authors = ['wdpool']
  spec.license = 'MIT'
  spec.required_ruby_version = '>= 3.1'
  spec.files = Dir['lib/**/*.rb'] + Dir['ext/**/*.{c,rb}'] + ['wdpool.gemspec']
  # Optional: `with`'s quick path in C. Built at install when Ruby's headers
  # are there (Debian: ruby-dev); without them the gem installs anyway and
  # `with` takes its pure-Ruby path.
  spec.extensions = ['ext/wdpool_fast/extconf.rb']
  spec.require_paths = ['lib']
  spec.add_dependency 'connection_pool', '>= 2.2'
  spec.add_dependency 'ffi', '>= 1.15'
end
