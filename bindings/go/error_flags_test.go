package wdpool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	wdpool "github.com/wdpool/wdpool-go"
)

// A commit refused with INVALID_TXN_STATE (48) is fatal for librdkafka: the
// error is ErrFatal for wdpool and a *KafkaError with Fatal() for errors.As.
// A message the broker refuses (10) inside a transaction makes the commit
// abortable: ErrTransactionAborted, TxnRequiresAbort().
func TestKafkaErrorFlags(t *testing.T) {
	cluster, err := wdpool.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	pool, err := wdpool.New(&wdpool.Options{Size: 1, Timeout: 10 * time.Second}, func(c *wdpool.Config, index int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(), "transactional.id": "flags-0"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Shutdown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(p *wdpool.Producer) error { return p.Send(&wdpool.Message{Topic: "flags", Payload: []byte("x")}) }
	if err := pool.Transaction(ctx, send); err != nil {
		t.Fatal(err)
	}

	if err := cluster.PushRequestErrors(0, 10); err != nil {
		t.Fatal(err)
	}
	err = pool.Transaction(ctx, send)
	var k *wdpool.KafkaError
	if !errors.Is(err, wdpool.ErrTransactionAborted) || !errors.As(err, &k) {
		t.Fatalf("want an aborted transaction with a *KafkaError, got %v", err)
	}
	if k.Code != 10 || !k.TxnRequiresAbort() || k.Fatal() || k.Retriable() {
		t.Fatalf("abortable: code %d, flags %b", k.Code, k.Flags)
	}

	if err := cluster.PushRequestErrors(26, 48); err != nil {
		t.Fatal(err)
	}
	err = pool.Transaction(ctx, send)
	if !errors.Is(err, wdpool.ErrFatal) || !errors.As(err, &k) {
		t.Fatalf("want a fatal error with a *KafkaError, got %v", err)
	}
	if k.Code != 48 || !k.Fatal() || k.TxnRequiresAbort() {
		t.Fatalf("fatal: code %d, flags %b", k.Code, k.Flags)
	}
	if err := cluster.PushRequestErrors(999, 10); !errors.Is(err, wdpool.ErrInvalidArgument) {
		t.Fatalf("an ApiKey a producer never sends: want ErrInvalidArgument, got %v", err)
	}
	// Two producers replaced: the one whose message the broker refused
	// (librdkafka left a gap in its sequence numbers, see the README's
	// "Failure modes") and the fatal one.
	if s, _ := pool.Stats(); s.Replaced != 2 {
		t.Fatalf("the refused and the fatal producers were not replaced: %+v", s)
	}
}
