package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectEvent = `SELECT seq, id, time, type, actor_id, account_id, ip, request_id, outcome,
	details::text FROM audit_events`

type auditStore struct{ s *Store }

var _ storage.AuditStore = auditStore{}

// insertEvent stores ev inside the transaction of the change it records;
// the database assigns its Seq.
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
	_, err := tx.Exec(ctx, `INSERT INTO audit_events (id, time, type, actor_id, account_id,
		ip, request_id, outcome, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)`,
		ev.ID, orNow(ev.Time), string(ev.Type), ev.ActorID, ev.AccountID, ev.IP,
		ev.RequestID, string(ev.Outcome), string(details))
	return err
}

func scanEvent(row pgx.Row) (audit.Event, error) {
	var (
		ev              audit.Event
		typ, outcome, d string
	)
	if err := row.Scan(&ev.Seq, &ev.ID, &ev.Time, &typ, &ev.ActorID, &ev.AccountID, &ev.IP,
		&ev.RequestID, &outcome, &d); err != nil {
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
