# frozen_string_literal: true

# The optional C extension behind WdPool::ConnectionPool#with (see
# wdpool_fast.c). It needs Ruby's headers (Debian: ruby-dev). Without them
# this writes a Makefile that builds nothing, the gem still installs, and
# `with` takes its pure-Ruby path (WdPool.fast_with? is false).
require 'rbconfig'

hdr = RbConfig::CONFIG['rubyhdrdir']
if hdr && File.exist?(File.join(hdr, 'ruby.h'))
  require 'mkmf'
  $CFLAGS << ' -std=c99 -O2 -Wall -Wextra -Wno-unused-parameter'
  create_makefile('wdpool/wdpool_fast')
else
  warn "wdpool: Ruby's C headers are not installed (#{hdr || 'rubyhdrdir unset'}/ruby.h); " \
       'building without the C extension: `with` takes its pure-Ruby path'
  File.write('Makefile', "all install clean distclean:\n\t@:\n")
end
