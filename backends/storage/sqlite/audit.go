package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

const selectEvent = `SELECT seq, id, time, type, actor_id, account_id, ip, request_id, outcome, details,
	prev_hash, hash FROM audit_events`

type auditStore struct{ s *Store }

var _ storage.AuditStore = auditStore{}

// insertEvent stores ev inside the transaction of the change it records
// and links it into the chain: the database assigns its Seq, then its
// PrevHash (the newest event's Hash) and Hash are set. The write lock the
// transaction holds keeps the chain linear. Time is stored in
// nanoseconds; the hash covers it to the microsecond (audit.ChainHash),
// so the event read back hashes to its Hash.
func insertEvent(ctx context.Context, tx *sql.Tx, ev audit.Event) error {
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
	err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		prev = audit.GenesisHash()
	case err != nil:
		return err
	}
	ev.Time = orNow(ev.Time)
	if err := tx.QueryRowContext(ctx, `INSERT INTO audit_events (id, time, type, actor_id, account_id,
		ip, request_id, outcome, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		ev.ID, nanos(ev.Time), string(ev.Type), ev.ActorID, ev.AccountID, ev.IP,
		ev.RequestID, string(ev.Outcome), string(details)).Scan(&ev.Seq); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`,
		prev, audit.ChainHash(prev, ev), ev.Seq)
	return err
}

func scanEvent(row rowScanner) (audit.Event, error) {
	var (
		ev              audit.Event
		t               int64
		typ, outcome, d string
	)
	if err := row.Scan(&ev.Seq, &ev.ID, &t, &typ, &ev.ActorID, &ev.AccountID, &ev.IP,
		&ev.RequestID, &outcome, &d, &ev.PrevHash, &ev.Hash); err != nil {
		return audit.Event{}, err
	}
	ev.Time = fromNanos(t)
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
	return st.s.write(ctx, "append event "+ev.ID, func(tx *sql.Tx) error {
		return insertEvent(ctx, tx, ev)
	})
}

// ListEvents implements storage.AuditStore.
func (st auditStore) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	const op = "list events"
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("sqlite: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	var (
		where []string
		args  []any
	)
	if f.Type != "" {
		where = append(where, `type = ?`)
		args = append(args, string(f.Type))
	}
	if f.AccountID != "" {
		where = append(where, `(actor_id = ? OR account_id = ?)`)
		args = append(args, f.AccountID, f.AccountID)
	}
	if !f.Since.IsZero() {
		where = append(where, `time >= ?`)
		args = append(args, boundNanos(f.Since))
	}
	if f.BeforeSeq > 0 {
		where = append(where, `seq < ?`)
		args = append(args, f.BeforeSeq)
	}
	q := selectEvent
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	return st.query(ctx, op, q, args...)
}

// ReadEvents implements storage.AuditStore.
func (st auditStore) ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	const op = "read events"
	switch {
	case limit < 0:
		return nil, fmt.Errorf("sqlite: %s: %w: negative limit", op, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultLimit
	}
	return st.query(ctx, op, selectEvent+` WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
}

func (st auditStore) query(ctx context.Context, op, q string, args ...any) ([]audit.Event, error) {
	if err := st.s.read(op); err != nil {
		return nil, err
	}
	rows, err := st.s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return out, nil
}

// SinkCursor implements storage.AuditStore.
func (st auditStore) SinkCursor(ctx context.Context, sink string) (int64, error) {
	const op = "sink cursor"
	if err := storage.CheckName("sink name", sink); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := st.s.read(op); err != nil {
		return 0, err
	}
	var seq int64
	err := st.s.db.QueryRowContext(ctx, `SELECT seq FROM sink_cursors WHERE sink = ?`, sink).Scan(&seq)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("sqlite: %s %q: %w", op, sink, classify(err))
	}
	return seq, nil
}

// SetSinkCursor implements storage.AuditStore; MAX keeps the cursor from
// moving backwards.
func (st auditStore) SetSinkCursor(ctx context.Context, sink string, seq int64) error {
	const op = "set sink cursor"
	if err := storage.CheckName("sink name", sink); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if seq < 0 {
		return fmt.Errorf("sqlite: %s: %w: negative seq", op, sdk.ErrInvalidArgument)
	}
	return st.s.write(ctx, op+" "+sink, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sink_cursors (sink, seq) VALUES (?, ?)
			ON CONFLICT (sink) DO UPDATE SET seq = MAX(seq, excluded.seq)`, sink, seq)
		return err
	})
}
