package core

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// Leases make one node of several on one store do a job: deliver to a
// sink ("audit-sink:<name>"), write checkpoints ("audit-checkpoint"),
// rotate keys ("key-rotation"). The holder renews every ttl/3; a node
// that cannot renew stops the job before its lease can have expired
// (2/3 of ttl after the last renewal), so two nodes never run it at once
// as long as clocks run at the same rate. A holder that stops releases the
// lease, so another node takes over at its next try rather than after ttl.
// Without a storage.Leaser the process is taken to be alone and runs the
// job itself.

// Lease names.
const (
	leaseRotation   = "key-rotation"
	leaseCheckpoint = "audit-checkpoint"
	leaseSinkPrefix = "audit-sink:"
)

// leased runs job while this process holds the lease name, until ctx
// ends; held (if not nil) says whether it does. job must return soon
// after its context ends.
func (s *Service) leased(ctx context.Context, name string, held *atomic.Bool, job func(context.Context)) {
	set := func(v bool) {
		if held != nil {
			held.Store(v)
		}
	}
	l, ok := s.store.(storage.Leaser)
	if !ok {
		set(true)
		job(ctx)
		set(false)
		return
	}
	ttl := s.cfg.LeaseTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	var (
		cancel context.CancelFunc
		done   chan struct{}
		lastOK time.Time
	)
	stop := func() {
		if cancel == nil {
			return
		}
		cancel()
		<-done
		cancel, done = nil, nil
		set(false)
	}
	for {
		start := time.Now()
		ok, err := l.AcquireLease(ctx, name, s.holder, ttl)
		switch {
		case ctx.Err() != nil:
		case err == nil && ok:
			lastOK = start
			if cancel == nil {
				s.log.Info("core: lease acquired", "lease", name, "holder", s.holder)
				var jctx context.Context
				jctx, cancel = context.WithCancel(ctx)
				done = make(chan struct{})
				set(true)
				go func() {
					defer close(done)
					job(jctx)
				}()
			}
		case errors.Is(err, sdk.ErrNotImplemented) && cancel == nil:
			// A plugin store whose backend has no leases: alone, as
			// without a Leaser.
			s.log.Info("core: the store has no leases; running the job here", "lease", name)
			set(true)
			job(ctx)
			set(false)
			return
		case err == nil:
			if cancel != nil {
				s.log.Warn("core: lease lost to another node", "lease", name, "holder", s.holder)
				stop()
			}
		default:
			if cancel != nil && time.Since(lastOK) >= ttl*2/3 {
				s.log.Warn("core: lease not renewed in time; stopping its job", "lease", name, "err", err)
				stop()
			} else if cancel == nil {
				s.log.Debug("core: lease", "lease", name, "err", err)
			}
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
		}
		wasHeld := cancel != nil
		stop()
		if wasHeld {
			rctx := s.finalContext()
			if rctx == nil {
				var c context.CancelFunc
				rctx, c = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer c()
			}
			if err := l.ReleaseLease(rctx, name, s.holder); err != nil {
				s.log.Warn("core: release lease", "lease", name, "err", err)
			}
		}
		return
	}
}
