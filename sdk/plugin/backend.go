package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/metacircular/mcias/sdk"
)

// closer is what every backend kind has in common.
type closer interface {
	Close(ctx context.Context) error
}

// opened holds the one backend a server shim has opened, between the Open
// and Close RPCs. Calls read it without holding the lock while the backend
// works, so a slow call never blocks another.
type opened[T closer] struct {
	kind Kind
	mu   sync.Mutex
	v    T
	ok   bool
}

// open builds the backend with factory unless one is open already.
func (o *opened[T]) open(ctx context.Context, uri string, logger *slog.Logger,
	factory func(context.Context, string, *slog.Logger) (T, error)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ok {
		return fmt.Errorf("%s plugin: open %s: already open: %w", o.kind, uri, sdk.ErrPrecondition)
	}
	v, err := factory(ctx, uri, logger)
	if err != nil {
		return err
	}
	o.v, o.ok = v, true
	return nil
}

// get returns the open backend.
func (o *opened[T]) get() (T, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ok {
		var zero T
		// Not yet opened, or closed: the backend cannot serve calls now.
		return zero, fmt.Errorf("%s plugin: backend is not open: %w", o.kind, sdk.ErrUnavailable)
	}
	return o.v, nil
}

// close closes the open backend, if any; closing twice is a no-op, so the
// Close RPC and the shutdown of the plugin process may both call it.
func (o *opened[T]) close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ok {
		return nil
	}
	var zero T
	v := o.v
	o.v, o.ok = zero, false
	return v.Close(ctx)
}
