package wdpool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestABIAndVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("no version")
	}
}

func TestWithProduceSyncOffline(t *testing.T) {
	p := newOffline(t, 2, time.Second)
	ctx := context.Background()
	err := p.With(ctx, func(pr *Producer) error {
		r, err := pr.ProduceSync(ctx, &Message{Topic: "events", Payload: []byte("my message"),
			Headers: []Header{{"a", []byte("1")}, {"a", []byte("2")}}, Key: []byte("k")})
		if err != nil {
			return err
		}
		if r.Topic != "events" || r.Err != nil {
			t.Errorf("report %+v", r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Stats()
	if err != nil || s.InUse != 0 || s.Size != 2 {
		t.Fatalf("stats %+v %v", s, err)
	}
}

func TestInvalidMessageAndConfig(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	err := p.With(context.Background(), func(pr *Producer) error {
		_, err := pr.ProduceSync(context.Background(), &Message{Topic: "bad topic!", Payload: []byte("x")})
		return err
	})
	if !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("want ErrInvalidMessage, got %v", err)
	}
	_, err = New(&Options{Size: 2}, func(c *Config, i int) error { return c.SetKafka("no.such.key", "1") })
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("want ErrInvalidConfig, got %v", err)
	}
	mine := errors.New("mine")
	_, err = New(&Options{Size: 2}, func(c *Config, i int) error {
		if i == 1 {
			return mine
		}
		return nil
	})
	if err != mine {
		t.Fatalf("want the configure error, got %v", err)
	}
}

// ProduceAsync and Send take a one-call path for messages without headers
// (the general path for the rest): both must see every field the same way.
func TestSingleMessagePathMatchesTheGeneralOne(t *testing.T) {
	topic := "single-path"
	if err := mock.CreateTopic(topic, 4); err != nil {
		t.Fatal(err)
	}
	p, err := New(&Options{Size: 1, Timeout: 5 * time.Second}, onMock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := ctxTimeout(t, 30*time.Second)
	ts := time.UnixMilli(1_700_000_000_123)
	two := Partition(2)
	long := strings.Repeat("t", 300) // past the one-call path's topic buffer
	err = p.With(ctx, func(pr *Producer) error {
		cases := []struct {
			m         Message
			partition int32 // -1: any
			stamped   bool
		}{
			{Message{Topic: topic, Payload: []byte("p"), Key: []byte("k"), Partition: two, Timestamp: ts, Headers: []Header{{"x", nil}}}, 2, true},
			{Message{Topic: topic, Payload: []byte("p"), Key: []byte("k"), Partition: two, Timestamp: ts}, 2, true},
			{Message{Topic: topic, Payload: nil, Key: []byte("tombstone"), Partition: two}, 2, false},
			{Message{Topic: topic, Payload: []byte{}, PartitionKey: []byte("pk")}, -1, false},
			{Message{Topic: topic, Payload: []byte("h"), Partition: two, Headers: []Header{{"a", nil}}}, 2, false},
		}
		var stamped time.Time
		for i, c := range cases {
			d, err := pr.ProduceAsync(&c.m)
			if err != nil {
				return fmt.Errorf("case %d: %w", i, err)
			}
			if err := d.Wait(ctx); err != nil {
				return fmt.Errorf("case %d: %w", i, err)
			}
			r := d.Report()
			if r.Topic != topic || r.Offset < 0 || (c.partition >= 0 && r.Partition != c.partition) {
				return fmt.Errorf("case %d: report %+v", i, r)
			}
			// (The mock cluster reports its own timestamp, not the
			// message's: compare the two paths with each other.)
			if c.stamped {
				if stamped.IsZero() {
					stamped = r.Timestamp
				} else if !r.Timestamp.Equal(stamped) {
					return fmt.Errorf("case %d: timestamp %v, the general path's %v", i, r.Timestamp, stamped)
				}
			}
			if err := pr.Send(&c.m); err != nil {
				return fmt.Errorf("case %d (Send): %w", i, err)
			}
		}
		for _, bad := range []Message{
			{Topic: topic, Payload: []byte("x"), Key: []byte{}}, // an empty key
			{Topic: "bad topic!", Payload: []byte("x")},
			{Topic: "nul\x00topic", Payload: []byte("x")},
			{Topic: long, Payload: []byte("x")},
			{Topic: "", Payload: []byte("x")},
		} {
			if _, err := pr.ProduceAsync(&bad); !errors.Is(err, ErrInvalidMessage) {
				return fmt.Errorf("%q: want ErrInvalidMessage, got %v", bad.Topic, err)
			}
			if err := pr.Send(&bad); !errors.Is(err, ErrInvalidMessage) {
				return fmt.Errorf("%q (Send): want ErrInvalidMessage, got %v", bad.Topic, err)
			}
		}
		return pr.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
}
