// Package wdpool is the Go binding of wdpool: a pool of Kafka producers
// (librdkafka) with the semantics of WaterDrop's ConnectionPool, over the C
// ABI of libwdpool (ABI version 1, checked when the package loads: a
// library of another ABI version makes the program panic at init with a
// message saying so).
//
// # Finding the library
//
// cgo finds the header and the library with pkg-config (`wdpool.pc`,
// installed by `make install`; PKG_CONFIG_PATH for another prefix). For the
// build tree, `make test-go` writes a wdpool.pc pointing at include/ and
// target/debug/ under .cache/go/pkgconfig. Without pkg-config, build with
// `-tags wdpool_nopkgconfig` and
//
//	CGO_CFLAGS=-I<repo>/include
//	CGO_LDFLAGS="-L<repo>/target/debug -Wl,-rpath,<repo>/target/debug"
//
// # Goroutines, owners and contexts
//
// Every method of Pool, and the package-level global-pool functions, may be
// called from any goroutine. A Producer is valid only while the function
// given to With or Transaction runs, and may be shared with goroutines that
// this function starts and waits for.
//
// wdpool's re-entrancy is per owner, and an owner here is a context: With
// carries a fresh owner token in the context it gives the producer
// (Producer.Context). A nested With or Transaction called with that context
// (or one derived from it) gets the same producer and joins its
// transaction, so a pool of 1 never deadlocks on itself; a With called with
// any other context is a new owner and waits for a free producer like any
// other goroutine. Goroutines are not threads: two goroutines never share
// a producer unless the code hands one the other's producer or context.
//
// # Deadlines and cancellation
//
// A context's deadline bounds the wait for a free producer (else the
// pool's Timeout), produce calls, Flush, Delivery.Wait and a transaction's
// commit; rollbacks always run, bounded by the producer's
// max_wait_timeout.
//
// A context cancelled while a call waits makes that call return ctx.Err()
// at once (errors.Is(err, context.Canceled)): the wait for a free producer
// in With and Transaction, ProduceSync, ProduceManySync, Flush and
// Delivery.Wait. wdpool's C calls cannot be interrupted, so a wait that a
// context can cancel runs in C on a goroutine of the package while the
// caller waits for it or for ctx.Done(); a call given up ends there by
// itself, within its timeout: a producer it gets afterwards goes straight
// back to the pool, and a message already handed to librdkafka may still
// be delivered (a Delivery given up on can be waited on again). A free
// producer is taken in one C call that never waits, whatever the context;
// when none is free, the call yields its P a few times (looking again)
// before it waits in C, and a context that nothing can cancel
// (context.Background) waits in place. A
// Transaction's commit cannot be abandoned half-way: when its function
// returns nil with ctx already done, the transaction is rolled back and
// Transaction returns ctx.Err() (as database/sql does); a commit under way
// runs to its end, bounded by ctx's deadline.
//
// # Delivery reports
//
// ProduceSync and ProduceManySync wait for their reports; ProduceAsync and
// ProduceManyAsync return a *Delivery to Wait on; Send keeps no report.
// For throughput, ProduceTagged sends each report, with a tag of the
// caller's, into a ReportQueue that any goroutines drain in batches with
// Take: nothing is kept per message on the Go side (confluent-kafka-go's
// Events channel is the same idea). Take's wait ends when a report comes,
// when ctx is done (noticed within 20 ms) or when the queue is closed.
//
// Pool.Send, Pool.ProduceTagged and Pool.ProduceAsync produce one message
// with the With around it (a checkout, the produce, the checkin): exactly
// that With, in one cgo call instead of three when a producer is free at
// once.
//
// # Errors and panics
//
// Failed calls return an *Error that errors.Is matches
// against ErrPoolTimeout, ErrPoolClosed, ErrNotTransactional,
// ErrInvalidMessage, ErrInvalidConfig, ErrEarlyExit and the other
// sentinels; errors.As finds a *KafkaError with librdkafka's code and its
// Retriable, Fatal and TxnRequiresAbort flags. The
// error returned by the function given to With or Transaction comes back
// unchanged. A panic or runtime.Goexit in that function is let through
// once the producer is back in the pool and its transaction rolled back:
// user code never runs inside a call from C, so nothing unwinds over
// wdpool's Rust frames. Configure functions and event subscribers, which C
// calls back, run on goroutines of their own while the C callback waits.
package wdpool
