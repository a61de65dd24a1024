package wdpool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// 64 goroutines through a pool of 4, with random errors and panics: no slot
// leaks, stats back to all-available, every message reported delivered
// counted once. Against the mock cluster; against a real broker when
// WDPOOL_KAFKA_BOOTSTRAP is set, where every delivered message is read
// back exactly once with the kafka_read tool (WDPOOL_KAFKA_READ, built by
// `cargo build --example kafka_read`).
func TestLoad(t *testing.T) {
	bootstrap := os.Getenv("WDPOOL_KAFKA_BOOTSTRAP")
	if bootstrap == "" {
		bootstrap = mock.BootstrapServers()
	}
	topic := fmt.Sprintf("go-load-%d", time.Now().UnixNano())
	p, err := New(&Options{Size: 4, Timeout: 30 * time.Second}, func(c *Config, i int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": bootstrap, "linger.ms": "1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	perGoroutine := 40
	if testing.Short() {
		perGoroutine = 10
	}
	errPlanned := errors.New("planned")
	var mu sync.Mutex
	delivered := map[string]int{}
	var wg sync.WaitGroup
	ctx := ctxTimeout(t, 90*time.Second)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; i < perGoroutine; i++ {
				key := fmt.Sprintf("g%d-%d", g, i)
				fate := rng.IntN(10)
				func() {
					defer func() {
						if r := recover(); r != nil && r != "planned panic" {
							panic(r)
						}
					}()
					err := p.With(ctx, func(pr *Producer) error {
						var d *Delivery
						var err error
						if fate%2 == 0 {
							_, err = pr.ProduceSync(ctx, &Message{Topic: topic, Key: []byte(key), Payload: []byte(key)})
						} else {
							d, err = pr.ProduceAsync(&Message{Topic: topic, Key: []byte(key), Payload: []byte(key)})
							if err == nil {
								err = d.Wait(ctx)
							}
						}
						if err == nil {
							mu.Lock()
							delivered[key]++
							mu.Unlock()
						}
						switch fate {
						case 0:
							panic("planned panic")
						case 1:
							return errPlanned
						}
						return err
					})
					if err != nil && !errors.Is(err, errPlanned) {
						t.Errorf("%s: %v", key, err)
					}
				}()
			}
		}()
	}
	wg.Wait()
	s, err := p.Stats()
	if err != nil || s.InUse != 0 || s.Waiting != 0 || s.Available() != 4 || s.Replaced != 0 {
		t.Fatalf("stats after load: %+v %v", s, err)
	}
	if len(delivered) != 64*perGoroutine {
		t.Fatalf("%d delivered of %d", len(delivered), 64*perGoroutine)
	}
	for k, n := range delivered {
		if n != 1 {
			t.Fatalf("%s reported delivered %d times", k, n)
		}
	}
	reader := os.Getenv("WDPOOL_KAFKA_READ")
	if os.Getenv("WDPOOL_KAFKA_BOOTSTRAP") == "" || reader == "" {
		t.Logf("%d messages delivered to the mock cluster (read back only against a real broker: WDPOOL_KAFKA_BOOTSTRAP, WDPOOL_KAFKA_READ)", len(delivered))
		return
	}
	seen := readBack(t, reader, bootstrap, topic, "read_uncommitted", len(delivered))
	for k := range delivered {
		if seen[k] != 1 {
			t.Errorf("%s read back %d times", k, seen[k])
		}
	}
	if len(seen) != len(delivered) {
		t.Errorf("read back %d keys, %d delivered", len(seen), len(delivered))
	}
	t.Logf("%d messages delivered to %s, each read back once", len(delivered), bootstrap)
}

// readBack reads topic with the kafka_read tool: how many times each key was read.
func readBack(t *testing.T, reader, bootstrap, topic, isolation string, expect int, extra ...string) map[string]int {
	t.Helper()
	args := append([]string{"--bootstrap", bootstrap, "--topic", topic, "--isolation", isolation,
		"--expect", fmt.Sprint(expect), "--timeout-ms", "60000"}, extra...)
	out, err := exec.Command(reader, args...).Output()
	if err != nil {
		t.Fatalf("kafka_read: %v", err)
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		k, _ := hex.DecodeString(f[2])
		seen[string(k)]++
	}
	return seen
}

// Against a real broker: what a committed Transaction produced is read
// back with read_committed; what an aborted, failed or panicking one
// produced is not.
func TestRealBrokerTransactions(t *testing.T) {
	bootstrap, reader := os.Getenv("WDPOOL_KAFKA_BOOTSTRAP"), os.Getenv("WDPOOL_KAFKA_READ")
	if bootstrap == "" || reader == "" {
		t.Skip("needs WDPOOL_KAFKA_BOOTSTRAP and WDPOOL_KAFKA_READ")
	}
	topic := fmt.Sprintf("go-txn-%d", time.Now().UnixNano())
	p, err := New(&Options{Size: 2, Timeout: 60 * time.Second}, func(c *Config, i int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": bootstrap, "transactional.id": fmt.Sprintf("%s-%d", topic, i)})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxTimeout(t, 120*time.Second)
	send := func(prefix string) func(*Producer) error {
		return func(pr *Producer) error {
			for i := 0; i < 5; i++ {
				if err := pr.Send(&Message{Topic: topic, Key: []byte(fmt.Sprintf("%s-%d", prefix, i)), Payload: []byte("x")}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err := p.Transaction(ctx, send("committed")); err != nil {
		t.Fatal(err)
	}
	if err := p.Transaction(ctx, func(pr *Producer) error { send("aborted")(pr); return ErrAbortTransaction }); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("failed")
	if err := p.Transaction(ctx, func(pr *Producer) error { send("failed")(pr); return failed }); err != failed {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		p.Transaction(ctx, func(pr *Producer) error { send("panicked")(pr); panic("x") })
	}()
	if err := p.Transaction(ctx, send("after")); err != nil {
		t.Fatal(err)
	}
	seen := readBack(t, reader, bootstrap, topic, "read_committed", 10)
	for k, n := range seen {
		if n != 1 || !(strings.HasPrefix(k, "committed-") || strings.HasPrefix(k, "after-")) {
			t.Errorf("read %q %d times", k, n)
		}
	}
	if len(seen) != 10 {
		t.Errorf("read %d committed keys, want 10: %v", len(seen), seen)
	}
}

func TestKafkaErrorAndDeliveryWaitDeadline(t *testing.T) {
	cluster, err := NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if err := cluster.CreateTopic("two", 2); err != nil {
		t.Fatal(err)
	}
	p, err := New(&Options{Size: 1}, func(c *Config, _ int) error {
		if err := c.SetMaxWaitTimeout(5 * time.Second); err != nil {
			return err
		}
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(), "message.timeout.ms": "2000"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(true)
	ctx := ctxTimeout(t, 30*time.Second)
	err = p.With(ctx, func(pr *Producer) error {
		_, err := pr.ProduceSync(ctx, &Message{Topic: "two", Payload: []byte("x"), Partition: Partition(9)})
		var k *KafkaError
		if !errors.As(err, &k) || k.Code == 0 {
			return fmt.Errorf("want a *KafkaError, got %v", err)
		}
		// A delivery that cannot arrive: Wait gives up at the context's
		// deadline, and the Delivery can still be closed.
		if err := cluster.SetBrokerUp(1, false); err != nil {
			return err
		}
		defer cluster.SetBrokerUp(1, true)
		d, err := pr.ProduceAsync(&Message{Topic: "two", Payload: []byte("y")})
		if err != nil {
			return err
		}
		defer d.Close()
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := d.Wait(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrDeliveryTimeout) {
			return fmt.Errorf("want deadline exceeded, got %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
