//go:build !wdpool_nopkgconfig

package wdpool

// The header and the library are found with pkg-config (wdpool.pc, from
// `make install`; `make test-go` writes one for the build tree). Build
// with -tags wdpool_nopkgconfig to give the paths in CGO_CFLAGS and
// CGO_LDFLAGS instead.

// #cgo pkg-config: wdpool
import "C"
