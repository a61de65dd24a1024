package wdpool

import (
	"context"
	"errors"
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
