package pluginhost

import (
	"context"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	sdkplugin "github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/storage"
)

// Storage starts plugin p, opens uri in it, and returns the supervised
// store. Close on the store stops the plugin.
func (h *Host) Storage(ctx context.Context, p Plugin, uri string) (storage.Store, error) {
	s, err := start(ctx, h, p, uri, kindOps[storage.Store]{
		kind:  sdkplugin.KindStorage,
		open:  sdkplugin.OpenStorage,
		probe: func(ctx context.Context, b storage.Store) error { return b.Ping(ctx) },
		close: func(ctx context.Context, b storage.Store) error { return b.Close(ctx) },
	})
	if err != nil {
		return nil, err
	}
	w := &supervisedStore{s}
	s.mu.RLock()
	_, leases := s.cur.(storage.Leaser)
	s.mu.RUnlock()
	if leases {
		// Like the client shim, the store is a Leaser only when the
		// plugin's store is one.
		return &leasingStore{w}, nil
	}
	return w, nil
}

type supervisedStore struct{ s *supervisor[storage.Store] }

// leasingStore is the supervised store of a plugin with leases.
type leasingStore struct{ *supervisedStore }

var _ storage.Leaser = (*leasingStore)(nil)

func (w *supervisedStore) PluginStatus() Status { return w.s.status() }

func (w *supervisedStore) Accounts() storage.AccountStore       { return (*accountsW)(w) }
func (w *supervisedStore) Tokens() storage.TokenStore           { return (*tokensW)(w) }
func (w *supervisedStore) Credentials() storage.CredentialStore { return (*credsW)(w) }
func (w *supervisedStore) Audit() storage.AuditStore            { return (*auditW)(w) }

func (w *supervisedStore) Info(ctx context.Context) (storage.Info, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.Info, error) { return b.Info(ctx) })
}

func (w *supervisedStore) Ping(ctx context.Context) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error { return b.Ping(ctx) })
}

func (w *supervisedStore) Close(ctx context.Context) error {
	w.s.stop(ctx)
	return nil
}

type (
	accountsW supervisedStore
	tokensW   supervisedStore
	credsW    supervisedStore
	auditW    supervisedStore
)

func (w *accountsW) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error { return b.Accounts().CreateAccount(ctx, a, ev) })
}

func (w *accountsW) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.Account, error) {
		return b.Accounts().GetAccount(ctx, id)
	})
}

func (w *accountsW) GetAccountByUsername(ctx context.Context, username string) (storage.Account, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.Account, error) {
		return b.Accounts().GetAccountByUsername(ctx, username)
	})
}

func (w *accountsW) ListAccounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, string, error) {
	type page struct {
		as   []storage.Account
		next string
	}
	p, err := call(w.s, ctx, func(ctx context.Context, b storage.Store) (page, error) {
		as, next, err := b.Accounts().ListAccounts(ctx, f)
		return page{as, next}, err
	})
	return p.as, p.next, err
}

func (w *accountsW) UpdateAccount(ctx context.Context, a storage.Account, opts storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.Account, error) {
		return b.Accounts().UpdateAccount(ctx, a, opts, ev)
	})
}

func (w *accountsW) CountAccounts(ctx context.Context) (int, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (int, error) { return b.Accounts().CountAccounts(ctx) })
}

func (w *tokensW) CreateToken(ctx context.Context, t storage.Token, replaces string, ev audit.Event) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error { return b.Tokens().CreateToken(ctx, t, replaces, ev) })
}

func (w *tokensW) GetToken(ctx context.Context, jti string) (storage.Token, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.Token, error) {
		return b.Tokens().GetToken(ctx, jti)
	})
}

func (w *tokensW) RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error {
		return b.Tokens().RevokeToken(ctx, jti, at, reason, ev)
	})
}

func (w *tokensW) ListTokens(ctx context.Context, f storage.TokenFilter) ([]storage.Token, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) ([]storage.Token, error) {
		return b.Tokens().ListTokens(ctx, f)
	})
}

func (w *tokensW) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (int, error) { return b.Tokens().PruneTokens(ctx, before) })
}

func (w *credsW) GetPGCreds(ctx context.Context, accountID string) (storage.PGCreds, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.PGCreds, error) {
		return b.Credentials().GetPGCreds(ctx, accountID)
	})
}

func (w *credsW) PutPGCreds(ctx context.Context, c storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (storage.PGCreds, error) {
		return b.Credentials().PutPGCreds(ctx, c, ev)
	})
}

func (w *auditW) AppendEvent(ctx context.Context, ev audit.Event) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error { return b.Audit().AppendEvent(ctx, ev) })
}

func (w *auditW) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) ([]audit.Event, error) { return b.Audit().ListEvents(ctx, f) })
}

func (w *auditW) ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) ([]audit.Event, error) {
		return b.Audit().ReadEvents(ctx, afterSeq, limit)
	})
}

func (w *auditW) SinkCursor(ctx context.Context, sink string) (int64, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (int64, error) { return b.Audit().SinkCursor(ctx, sink) })
}

func (w *auditW) SetSinkCursor(ctx context.Context, sink string, seq int64) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error { return b.Audit().SetSinkCursor(ctx, sink, seq) })
}

// WatchChanges implements storage.ChangeFeed through the plugin process
// running now. A watch lasts, so the call timeout does not bound it; it
// ends when that process dies, and the caller watches again after the
// restart.
func (w *supervisedStore) WatchChanges(ctx context.Context) (<-chan storage.Change, error) {
	w.s.mu.RLock()
	up, b := w.s.up, w.s.cur
	w.s.mu.RUnlock()
	if !up {
		return nil, fmt.Errorf("plugin %s is down: %w", w.s.p.Name, sdk.ErrUnavailable)
	}
	feed, ok := b.(storage.ChangeFeed)
	if !ok {
		return nil, fmt.Errorf("plugin %s: watch changes: %w", w.s.p.Name, sdk.ErrNotImplemented)
	}
	ch, err := feed.WatchChanges(ctx)
	w.s.observe(err)
	return ch, err
}

// TakeLoginAttempt implements storage.LoginLimiter through the plugin
// process, bounded by the call timeout like any other call.
func (w *supervisedStore) TakeLoginAttempt(ctx context.Context, key string, ratePerMinute float64, burst int, now time.Time) (bool, time.Duration, error) {
	type took struct {
		ok   bool
		wait time.Duration
	}
	r, err := call(w.s, ctx, func(ctx context.Context, b storage.Store) (took, error) {
		l, ok := b.(storage.LoginLimiter)
		if !ok {
			return took{}, fmt.Errorf("plugin %s: take login attempt: %w", w.s.p.Name, sdk.ErrNotImplemented)
		}
		allowed, wait, err := l.TakeLoginAttempt(ctx, key, ratePerMinute, burst, now)
		return took{allowed, wait}, err
	})
	return r.ok, r.wait, err
}

// AcquireLease implements storage.Leaser through the plugin process,
// bounded by the call timeout like any other call. A plugin restarted
// without leases answers sdk.ErrNotImplemented.
func (w *leasingStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	return call(w.s, ctx, func(ctx context.Context, b storage.Store) (bool, error) {
		l, ok := b.(storage.Leaser)
		if !ok {
			return false, fmt.Errorf("plugin %s: acquire lease: %w", w.s.p.Name, sdk.ErrNotImplemented)
		}
		return l.AcquireLease(ctx, name, holder, ttl)
	})
}

// ReleaseLease implements storage.Leaser through the plugin process.
func (w *leasingStore) ReleaseLease(ctx context.Context, name, holder string) error {
	return call0(w.s, ctx, func(ctx context.Context, b storage.Store) error {
		l, ok := b.(storage.Leaser)
		if !ok {
			return fmt.Errorf("plugin %s: release lease: %w", w.s.p.Name, sdk.ErrNotImplemented)
		}
		return l.ReleaseLease(ctx, name, holder)
	})
}
