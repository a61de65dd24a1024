module wdpool/bench/go

go 1.26.0

require (
	github.com/confluentinc/confluent-kafka-go/v2 v2.11.1
	github.com/twmb/franz-go v1.22.3
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
)

// wdpool's Go binding, from this tree (cgo: pkg-config wdpool, the
// release library's wdpool.pc that make bench-build writes).
require github.com/wdpool/wdpool-go v0.0.0

replace github.com/wdpool/wdpool-go => ../../bindings/go
