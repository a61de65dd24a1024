package wdpool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The secured real broker (scripts/kafka.sh start --secure): `make
// test-real` sets WDPOOL_KAFKA_SECURE_DIR to its KAFKA_CLIENT_CONFIG_DIR,
// which holds client-<user>.properties (TLS + SASL/SCRAM-SHA-512).
func secureDir(t *testing.T) (dir, reader string) {
	dir, reader = os.Getenv("WDPOOL_KAFKA_SECURE_DIR"), os.Getenv("WDPOOL_KAFKA_READ")
	if dir == "" || reader == "" {
		t.Skip("needs the secured broker: WDPOOL_KAFKA_SECURE_DIR and WDPOOL_KAFKA_READ (make test-real)")
	}
	return dir, reader
}

func clientProperties(t *testing.T, dir, user string) map[string]string {
	f, err := os.Open(filepath.Join(dir, "client-"+user+".properties"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	props := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			props[k] = v
		}
	}
	return props
}

// alice over TLS + SCRAM: a Send outside a transaction, a committed and an
// aborted Transaction; exactly the committed messages are read back.
func TestRealBrokerSecureTransactions(t *testing.T) {
	dir, reader := secureDir(t)
	alice := clientProperties(t, dir, "alice")
	topic := fmt.Sprintf("wdpool-go-secure-%d", time.Now().UnixNano())
	p, err := New(&Options{Size: 2, Timeout: 60 * time.Second}, func(c *Config, i int) error {
		if err := c.SetKafkaMap(alice); err != nil {
			return err
		}
		return c.SetKafka("transactional.id", fmt.Sprintf("alice-go-%s-%d", topic, i))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxTimeout(t, 120*time.Second)
	send := func(keys ...string) func(*Producer) error {
		return func(pr *Producer) error {
			for _, k := range keys {
				if err := pr.Send(&Message{Topic: topic, Key: []byte(k), Payload: []byte("x")}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err := p.With(ctx, send("with")); err != nil {
		t.Fatal(err)
	}
	if err := p.Transaction(ctx, send("txn-1", "txn-2")); err != nil {
		t.Fatal(err)
	}
	if err := p.Transaction(ctx, func(pr *Producer) error { send("aborted")(pr); return ErrAbortTransaction }); err != nil {
		t.Fatal(err)
	}
	seen := readBack(t, reader, alice["bootstrap.servers"], topic, "read_committed", 3,
		"--config-file", filepath.Join(dir, "client-alice.properties"))
	if len(seen) != 3 || seen["with"] != 1 || seen["txn-1"] != 1 || seen["txn-2"] != 1 {
		t.Errorf("read back %v, want with, txn-1, txn-2 once each", seen)
	}
}

// A wrong password: the produce fails within message.timeout.ms with a
// KafkaError naming the cause, and shows no password.
func TestRealBrokerSecureWrongPassword(t *testing.T) {
	dir, _ := secureDir(t)
	props := clientProperties(t, dir, "alice")
	secret := props["sasl.password"]
	props["sasl.password"] = "not-the-password"
	props["message.timeout.ms"] = "5000"
	p, err := New(&Options{Size: 1, Timeout: 10 * time.Second}, func(c *Config, _ int) error { return c.SetKafkaMap(props) })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := ctxTimeout(t, 60*time.Second)
	started := time.Now()
	err = p.With(ctx, func(pr *Producer) error {
		_, err := pr.ProduceSync(ctx, &Message{Topic: fmt.Sprintf("wdpool-go-refused-%d", started.UnixNano()), Payload: []byte("never")})
		return err
	})
	took := time.Since(started)
	var k *KafkaError
	if !errors.As(err, &k) || !strings.Contains(err.Error(), "Authentication failed") {
		t.Fatalf("want a KafkaError saying the authentication failed, got %v", err)
	}
	if took > 9*time.Second {
		t.Errorf("failing took %v", took)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("the error shows a password: %v", err)
	}
}
