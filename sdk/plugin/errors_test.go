package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin"
)

// scriptedSink is an audit.Sink whose Deliver fails as told. The real
// builtins live outside the sdk module and cannot be made to fail with
// every kind on demand; this exercises the shims and the error table, and
// the builtins run the full suites over the same shims in plugins/*.
type scriptedSink struct {
	mu    sync.Mutex
	err   error         // returned by Deliver
	block bool          // Deliver waits for ctx to end
	ended chan error    // receives ctx.Err() when a blocked Deliver returns
	calls []audit.Event // delivered events
}

func (s *scriptedSink) Info(context.Context) (audit.Info, error) {
	return audit.Info{Name: "scripted"}, nil
}

func (s *scriptedSink) Deliver(ctx context.Context, evs []audit.Event) error {
	s.mu.Lock()
	err, block := s.err, s.block
	s.calls = append(s.calls, evs...)
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		s.ended <- ctx.Err()
		return fmt.Errorf("scripted: deliver: %w", ctx.Err())
	}
	return err
}

func (s *scriptedSink) Close(context.Context) error { return nil }

// overGRPC serves sink over the in-process gRPC shims.
func overGRPC(t *testing.T, sink *scriptedSink) audit.Sink {
	t.Helper()
	factory := func(_ context.Context, uri string, _ *slog.Logger) (audit.Sink, error) {
		if uri != "scripted:" {
			return nil, fmt.Errorf("scripted: bad uri %q: %w", uri, sdk.ErrInvalidArgument)
		}
		return sink, nil
	}
	s, stop, err := plugin.AuditOverGRPC(t.Context(), factory, "scripted:", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

func TestErrorKindsCrossTheWire(t *testing.T) {
	for _, kind := range sdk.Kinds {
		t.Run("kind="+kind.Error(), func(t *testing.T) {
			msg := fmt.Sprintf("scripted: deliver 42: %v", kind)
			sink := &scriptedSink{err: fmt.Errorf("scripted: deliver 42: %w", kind)}
			err := overGRPC(t, sink).Deliver(t.Context(), []audit.Event{{ID: "e1"}})
			if !errors.Is(err, kind) {
				t.Fatalf("Deliver = %v, want errors.Is %v", err, kind)
			}
			for _, other := range sdk.Kinds {
				if other != kind && errors.Is(err, other) {
					t.Errorf("Deliver = %v also matches %v", err, other)
				}
			}
			if got := err.Error(); got != msg && got != "audit plugin: deliver: "+msg {
				t.Errorf("message = %q, want the backend's %q", got, msg)
			}
			if sdk.KindOf(err) != kind {
				t.Errorf("KindOf = %v, want %v", sdk.KindOf(err), kind)
			}
		})
	}
	t.Run("kind=none", func(t *testing.T) {
		// An error wrapping no kind is a backend bug: Internal.
		sink := &scriptedSink{err: errors.New("scripted: something odd")}
		err := overGRPC(t, sink).Deliver(t.Context(), nil)
		if !errors.Is(err, sdk.ErrInternal) || err.Error() != "scripted: something odd" {
			t.Fatalf("Deliver = %v, want ErrInternal with the message kept", err)
		}
	})
	t.Run("kind=success", func(t *testing.T) {
		sink := &scriptedSink{}
		if err := overGRPC(t, sink).Deliver(t.Context(), []audit.Event{{ID: "e1"}, {ID: "e2"}}); err != nil {
			t.Fatal(err)
		}
		if len(sink.calls) != 2 || sink.calls[0].ID != "e1" || sink.calls[1].ID != "e2" {
			t.Fatalf("delivered %+v", sink.calls)
		}
	})
}

func TestDeadlineCrossesTheWire(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		wantCtx error
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			sink := &scriptedSink{block: true, ended: make(chan error, 1)}
			s := overGRPC(t, sink)
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			err := s.Deliver(ctx, []audit.Event{{ID: "e1"}})
			if !errors.Is(err, tt.wantCtx) || !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("Deliver = %v, want both %v and ErrUnavailable", err, tt.wantCtx)
			}
			// The plugin side saw its context end too: the call did not
			// keep running after the host gave up.
			select {
			case got := <-sink.ended:
				if got == nil {
					t.Fatal("backend ctx ended without an error")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("backend context never ended")
			}
		})
	}
}

func TestOpenAndClose(t *testing.T) {
	sink := &scriptedSink{}
	factory := func(_ context.Context, uri string, _ *slog.Logger) (audit.Sink, error) {
		if uri != "scripted:" {
			return nil, fmt.Errorf("scripted: bad uri %q: %w", uri, sdk.ErrInvalidArgument)
		}
		return sink, nil
	}
	t.Run("case=bad uri", func(t *testing.T) {
		_, _, err := plugin.AuditOverGRPC(t.Context(), factory, "nope:", nil)
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("open = %v, want ErrInvalidArgument", err)
		}
	})
	t.Run("case=after close", func(t *testing.T) {
		s, stop, err := plugin.AuditOverGRPC(t.Context(), factory, "scripted:", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatalf("second Close = %v, want nil", err)
		}
		if err := s.Deliver(t.Context(), nil); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Deliver after Close = %v, want ErrUnavailable", err)
		}
	})
	t.Run("case=server gone", func(t *testing.T) {
		s, stop, err := plugin.AuditOverGRPC(t.Context(), factory, "scripted:", nil)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if err := s.Deliver(t.Context(), nil); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("Deliver after the server stopped = %v, want ErrUnavailable", err)
		}
	})
}
