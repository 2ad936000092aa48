package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk/storage"
)

// changeChannel is the LISTEN/NOTIFY channel of the change feed. Writes
// that update an account or revoke tokens NOTIFY it, with the account ID
// as payload, inside their transaction: PostgreSQL delivers the
// notification when (and only when) the transaction commits.
const changeChannel = "mcias_changes"

// Reconnect backoff of a lost feed connection.
const (
	feedBackoffMin = 100 * time.Millisecond
	feedBackoffMax = 5 * time.Second
)

var _ storage.ChangeFeed = (*Store)(nil)

// notify queues a change notification for the account in tx.
func notify(ctx context.Context, tx pgx.Tx, accountID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, changeChannel, accountID)
	return err
}

// WatchChanges implements storage.ChangeFeed with LISTEN on a dedicated
// connection (outside the pool, which never holds a connection for
// long). A lost connection is re-established with backoff, and an empty
// Change then tells the receiver to re-read what it may have missed.
func (s *Store) WatchChanges(ctx context.Context) (<-chan storage.Change, error) {
	if err := s.read("watch changes"); err != nil {
		return nil, err
	}
	out := make(chan storage.Change, 64)
	go s.watch(ctx, out)
	return out, nil
}

func (s *Store) watch(ctx context.Context, out chan<- storage.Change) {
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := feedBackoffMin
	for {
		err := s.listen(ctx, out, func() { backoff = feedBackoffMin })
		if ctx.Err() != nil {
			return
		}
		s.logger.Warn("postgres: change feed connection lost; reconnecting", "err", classify(err), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedBackoffMax)
	}
}

// listen runs one feed connection until it fails or ctx ends.
func (s *Store) listen(ctx context.Context, out chan<- storage.Change, established func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+changeChannel); err != nil {
		return err
	}
	established()
	// Blocking sends: PostgreSQL queues notifications for a slow
	// listener, so nothing is dropped here.
	send := func(c storage.Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send(storage.Change{}) {
		return ctx.Err()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if !send(storage.Change{AccountID: n.Payload}) {
			return ctx.Err()
		}
	}
}
