# frozen_string_literal: true

module WdPool
  # The gem's version (the library's own is WdPool.library_version).
  VERSION = '0.1.0'
  # The C ABI this binding was written for (WDPOOL_ABI_VERSION in wdpool.h).
  ABI_VERSION = 1
end
