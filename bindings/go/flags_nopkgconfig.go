//go:build wdpool_nopkgconfig

package wdpool

// Without pkg-config: CGO_CFLAGS=-I<repo>/include and
// CGO_LDFLAGS="-L<repo>/target/debug -Wl,-rpath,<repo>/target/debug".

// #cgo LDFLAGS: -lwdpool
import "C"
