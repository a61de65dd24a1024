package wdpool

import (
	"context"
	"runtime"
)

// Send produces one message without waiting for its delivery (fire and
// forget): exactly
//
//	p.With(ctx, func(pr *Producer) error { return pr.Send(m) })
//
// with the same owners, errors and outcome, made cheaper. When a producer
// is free at once (or ctx carries an owner that holds one, see
// Producer.Context), the checkout, the produce and the checkin are one
// cgo call instead of three; otherwise (every producer in use, a message
// with headers or a topic of 256 bytes or more) it is that With, which
// waits for a producer as With does. A message refused (invalid, queue
// full for the producer's max_wait_timeout) returns its error and the
// producer goes back to the pool either way.
//
// On a transactional producer outside a transaction, the message gets a
// transaction of its own, as Producer.Send's does.
func (p *Pool) Send(ctx context.Context, m *Message) error {
	return poolSend(ctx, p, m, nil, 0)
}

// ProduceTagged is p.With with Producer.ProduceTagged(m, q, tag) inside,
// made cheaper as Send is: one cgo call when a producer is free at once.
// The report comes to q with tag, as Producer.ProduceTagged's does.
func (p *Pool) ProduceTagged(ctx context.Context, m *Message, q *ReportQueue, tag uint64) error {
	if q == nil {
		return errNilQueue()
	}
	return poolSend(ctx, p, m, q, tag)
}

// ProduceAsync is p.With with Producer.ProduceAsync(m) inside, made
// cheaper as Send is: one cgo call when a producer is free at once (or ctx
// carries an owner that holds one); otherwise that With, which waits for a
// producer as With does. Wait on the returned Delivery for the report, or
// Close it, as for Producer.ProduceAsync's. On an error (the pool's, the
// context's, or the message's) no Delivery is returned and nothing was
// produced, except when the error is the checkin's: the message went, and
// its Delivery comes with the error.
func (p *Pool) ProduceAsync(ctx context.Context, m *Message) (*Delivery, error) {
	return poolProduceAsync(ctx, p, m)
}

// ProduceAsync is Pool.ProduceAsync on the global pool (ErrNotSetUp
// before Setup).
func ProduceAsync(ctx context.Context, m *Message) (*Delivery, error) {
	return poolProduceAsync(ctx, nil, m)
}

// poolProduceAsync is ProduceAsync on p or (nil) the global pool.
func poolProduceAsync(ctx context.Context, p *Pool, m *Message) (*Delivery, error) {
	ctx, err := liveCtx(ctx)
	if err != nil {
		return nil, err
	}
	withPath := func() (*Delivery, error) {
		var d *Delivery
		err := run(ctx, p, false, func(pr *Producer) error {
			var err error
			d, err = pr.ProduceAsync(m)
			return err
		})
		return d, err
	}
	if !canProduceOne(m) {
		return withPath()
	}
	d, hs, err := reserveSlot(m.Topic)
	if err != nil {
		return nil, err
	}
	sent, err := sendOne(ctx, p, m, hs.slots, d.slot, 0, 0)
	switch {
	case !sent && err == nil:
		// No producer free at once: wait for one as With does. (d's slot
		// was never armed: it stays EMPTY, and d is never handed out.)
		return withPath()
	case err != nil && !sent:
		return nil, err
	case err != nil:
		if t, _ := d.target(); !t.armed() {
			return nil, err // refused: nothing was produced
		}
	}
	return d, err
}

// Send is Pool.Send on the global pool (ErrNotSetUp before Setup).
func Send(ctx context.Context, m *Message) error {
	return poolSend(ctx, nil, m, nil, 0)
}

// ProduceTagged is Pool.ProduceTagged on the global pool.
func ProduceTagged(ctx context.Context, m *Message, q *ReportQueue, tag uint64) error {
	if q == nil {
		return errNilQueue()
	}
	return poolSend(ctx, nil, m, q, tag)
}

// poolSend is Send (q nil) and ProduceTagged, on p or (nil) the global
// pool.
func poolSend(ctx context.Context, p *Pool, m *Message, q *ReportQueue, tag uint64) error {
	ctx, err := liveCtx(ctx)
	if err != nil {
		return err
	}
	withPath := func() error {
		return run(ctx, p, false, func(pr *Producer) error {
			if q != nil {
				return pr.ProduceTagged(m, q, tag)
			}
			return pr.Send(m)
		})
	}
	if !canProduceOne(m) {
		return withPath()
	}
	var queue uintptr
	if q != nil {
		if q.closed.Load() {
			return q.closedError()
		}
		queue = q.h
	}
	sent, err := sendOne(ctx, p, m, 0, 0, queue, tag)
	runtime.KeepAlive(q)
	if !sent && err == nil {
		// No producer free at once: wait for one as With does.
		return withPath()
	}
	if q != nil {
		return q.staleIsClosed(err)
	}
	return err
}
