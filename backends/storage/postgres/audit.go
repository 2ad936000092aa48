package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectEvent = `SELECT seq, id, time, type, actor_id, account_id, ip, request_id, outcome,
	details::text, prev_hash, hash FROM audit_events`

type auditStore struct{ s *Store }

var _ storage.AuditStore = auditStore{}

// insertEvent stores ev inside the transaction of the change it records
// and links it into the chain: it takes the next Seq from the identity
// sequence, reads the newest event's Hash as PrevHash, and stores the
// event with both hashes. Every write transaction holds the write lock
// (Store.write), on every node, so the chain is linear and Seq follows
// commit order. A rolled-back write may leave a Seq unused; the chain has
// no gap, since the next event links to the newest one stored. Time is
// kept to the microsecond, the precision of timestamptz and of the chain
// hash, so what is stored is exactly what is hashed.
func insertEvent(ctx context.Context, tx pgx.Tx, ev audit.Event) error {
	switch {
	case ev.ID == "":
		return fmt.Errorf("%w: event has no id", sdk.ErrInvalidArgument)
	case ev.Type == "":
		return fmt.Errorf("%w: event %s has no type", sdk.ErrInvalidArgument, ev.ID)
	}
	details := []byte("{}")
	if len(ev.Details) > 0 {
		var err error
		if details, err = json.Marshal(ev.Details); err != nil {
			return fmt.Errorf("%w: event details: %v", sdk.ErrInvalidArgument, err)
		}
	}
	prev := audit.GenesisHash()
	err := tx.QueryRow(ctx, `SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&prev)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		prev = audit.GenesisHash()
	case err != nil:
		return err
	}
	if err := tx.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('audit_events', 'seq'))`).Scan(&ev.Seq); err != nil {
		return err
	}
	ev.Time = orNow(ev.Time).Truncate(time.Microsecond)
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (seq, id, time, type, actor_id, account_id,
		ip, request_id, outcome, details, prev_hash, hash) OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)`,
		ev.Seq, ev.ID, ev.Time, string(ev.Type), ev.ActorID, ev.AccountID, ev.IP,
		ev.RequestID, string(ev.Outcome), string(details), prev, audit.ChainHash(prev, ev))
	return err
}

func scanEvent(row pgx.Row) (audit.Event, error) {
	var (
		ev              audit.Event
		typ, outcome, d string
	)
	if err := row.Scan(&ev.Seq, &ev.ID, &ev.Time, &typ, &ev.ActorID, &ev.AccountID, &ev.IP,
		&ev.RequestID, &outcome, &d, &ev.PrevHash, &ev.Hash); err != nil {
		return audit.Event{}, err
	}
	ev.Time = utc(ev.Time)
	ev.Type = audit.Type(typ)
	ev.Outcome = audit.Outcome(outcome)
	if err := json.Unmarshal([]byte(d), &ev.Details); err != nil {
		return audit.Event{}, fmt.Errorf("%w: details of event %s: %v", sdk.ErrInternal, ev.ID, err)
	}
	if len(ev.Details) == 0 {
		ev.Details = nil
	}
	return ev, nil
}

// AppendEvent implements storage.AuditStore.
func (st auditStore) AppendEvent(ctx context.Context, ev audit.Event) error {
	return st.s.write(ctx, "append event "+ev.ID, func(tx pgx.Tx) error {
		return insertEvent(ctx, tx, ev)
	})
}

// ListEvents implements storage.AuditStore.
func (st auditStore) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	const op = "list events"
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("postgres: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	var (
		where []string
		p     args
	)
	if f.Type != "" {
		where = append(where, `type = `+p.add(string(f.Type)))
	}
	if f.AccountID != "" {
		n := p.add(f.AccountID)
		where = append(where, `(actor_id = `+n+` OR account_id = `+n+`)`)
	}
	if !f.Since.IsZero() {
		where = append(where, `time >= `+p.add(bound(f.Since)))
	}
	if f.BeforeSeq > 0 {
		where = append(where, `seq < `+p.add(f.BeforeSeq))
	}
	q := selectEvent
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY seq DESC LIMIT ` + p.add(limit)
	return st.query(ctx, op, q, p...)
}

// ReadEvents implements storage.AuditStore.
func (st auditStore) ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	const op = "read events"
	switch {
	case limit < 0:
		return nil, fmt.Errorf("postgres: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	return st.query(ctx, op, selectEvent+` WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
}

func (st auditStore) query(ctx context.Context, op, q string, p ...any) ([]audit.Event, error) {
	if err := st.s.read(op); err != nil {
		return nil, err
	}
	rows, err := st.s.pool.Query(ctx, q, p...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return out, nil
}

// SinkCursor implements storage.AuditStore.
func (st auditStore) SinkCursor(ctx context.Context, sink string) (int64, error) {
	const op = "sink cursor"
	if err := storage.CheckName("sink name", sink); err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if err := st.s.read(op); err != nil {
		return 0, err
	}
	var seq int64
	err := st.s.pool.QueryRow(ctx, `SELECT seq FROM sink_cursors WHERE sink = $1`, sink).Scan(&seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("postgres: %s %q: %w", op, sink, classify(err))
	}
	return seq, nil
}

// SetSinkCursor implements storage.AuditStore with one upsert; GREATEST
// keeps the cursor from moving backwards, and the row lock the upsert
// takes orders concurrent setters.
func (st auditStore) SetSinkCursor(ctx context.Context, sink string, seq int64) error {
	const op = "set sink cursor"
	if err := storage.CheckName("sink name", sink); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if seq < 0 {
		return fmt.Errorf("postgres: %s: %w: negative seq", op, sdk.ErrInvalidArgument)
	}
	if err := st.s.read(op); err != nil {
		return err
	}
	if _, err := st.s.pool.Exec(ctx, `INSERT INTO sink_cursors AS c (sink, seq) VALUES ($1, $2)
		ON CONFLICT (sink) DO UPDATE SET seq = GREATEST(c.seq, EXCLUDED.seq)`, sink, seq); err != nil {
		return fmt.Errorf("postgres: %s %q: %w", op, sink, classify(err))
	}
	return nil
}
