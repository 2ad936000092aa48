// Package jsonstore is an example MCIAS storage backend written outside
// the MCIAS tree: the whole state lives in memory and is written to one
// JSON file, atomically (temporary file, fsync, rename), on every change.
// It suits a lab or a handful of accounts; it shows what the storage
// contract asks of a backend, and it passes the same conformance suite as
// the builtin SQLite backend.
//
// URI: jsonstore:///abs/path/state.json or jsonstore:relative/state.json.
// The file is created (mode 0600) when missing.
package jsonstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// Name is the backend's name in Info.
const Name = "jsonstore"

// schemaVersion is the version of the file format. Version 2 added the
// audit chain (PrevHash and Hash on every event), sink cursors and leases;
// Open upgrades a version 1 file.
const schemaVersion = 2

// defaultLimit is the page size when a filter leaves Limit at 0.
const defaultLimit = 100

// state is everything stored, and the file's content.
type state struct {
	Version  int                        `json:"version"`
	Accounts map[string]storage.Account `json:"accounts"`
	Tokens   map[string]storage.Token   `json:"tokens"`
	Creds    map[string]storage.PGCreds `json:"pgcreds"`
	Events   []audit.Event              `json:"events"`            // in Seq order
	Seq      int64                      `json:"seq"`               // last Seq given
	Cursors  map[string]int64           `json:"cursors,omitempty"` // sink name -> Seq
	Leases   map[string]lease           `json:"leases,omitempty"`  // lease name -> lease
}

// lease is a held storage.Leaser lease.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// clone returns a copy a write may change without touching st. Values
// are never modified in place, only replaced, so copying the maps is
// enough; Events is appended to, which never changes st's view.
func (st *state) clone() *state {
	c := *st
	c.Accounts = maps.Clone(st.Accounts)
	c.Tokens = maps.Clone(st.Tokens)
	c.Creds = maps.Clone(st.Creds)
	c.Cursors = maps.Clone(st.Cursors)
	c.Leases = maps.Clone(st.Leases)
	c.Events = st.Events[:len(st.Events):len(st.Events)]
	return &c
}

// Store is a storage.Store over one JSON file.
type Store struct {
	path   string
	logger *slog.Logger

	mu       sync.RWMutex
	st       *state
	eventIDs map[string]bool // IDs in st.Events
	closed   bool
}

var _ storage.Store = (*Store)(nil)

// Open is the storage.Factory of the backend.
func Open(ctx context.Context, uri string, logger *slog.Logger) (storage.Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jsonstore: open: %w: %w", sdk.ErrUnavailable, err)
	}
	s := &Store{path: path, logger: logger, eventIDs: map[string]bool{}}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.st = &state{Version: schemaVersion, Accounts: map[string]storage.Account{},
			Tokens: map[string]storage.Token{}, Creds: map[string]storage.PGCreds{}}
		if err := s.persist(s.st); err != nil {
			return nil, err
		}
		logger.Info("jsonstore: created state file", "path", path)
	case err != nil:
		return nil, fmt.Errorf("jsonstore: open %s: %w: %w", path, sdk.ErrUnavailable, err)
	default:
		var st state
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("jsonstore: open %s: %w: not a state file: %v", path, sdk.ErrInternal, err)
		}
		if st.Version == 1 {
			// Link the events of a version 1 file into the chain, oldest
			// first, exactly as addEvent links every new one.
			prev := audit.GenesisHash()
			for i := range st.Events {
				st.Events[i].PrevHash = prev
				st.Events[i].Hash = audit.ChainHash(prev, st.Events[i])
				prev = st.Events[i].Hash
			}
			st.Version = schemaVersion
			if err := s.persist(&st); err != nil {
				return nil, err
			}
			logger.Info("jsonstore: upgraded state file to version 2", "path", path)
		}
		if st.Version != schemaVersion {
			return nil, fmt.Errorf("jsonstore: open %s: %w: file version %d, want %d", path, sdk.ErrInternal, st.Version, schemaVersion)
		}
		if st.Accounts == nil || st.Tokens == nil || st.Creds == nil {
			return nil, fmt.Errorf("jsonstore: open %s: %w: incomplete state file", path, sdk.ErrInternal)
		}
		for _, ev := range st.Events {
			s.eventIDs[ev.ID] = true
		}
		s.st = &st
		logger.Info("jsonstore: loaded state file", "path", path, "accounts", len(st.Accounts), "events", len(st.Events))
	}
	return s, nil
}

func parseURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != Name {
		return "", fmt.Errorf("jsonstore: uri %q: %w: want jsonstore:///path/state.json", uri, sdk.ErrInvalidArgument)
	}
	path := u.Path
	if u.Opaque != "" {
		path = u.Opaque
	}
	if path == "" || (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" {
		return "", fmt.Errorf("jsonstore: uri %q: %w: want jsonstore:///path/state.json", uri, sdk.ErrInvalidArgument)
	}
	return filepath.Clean(path), nil
}

// persist writes st to the file atomically and durably.
func (s *Store) persist(st *state) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("jsonstore: encode state: %w: %v", sdk.ErrInternal, err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("jsonstore: write state: %w: %w", sdk.ErrUnavailable, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, werr := tmp.Write(raw)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("jsonstore: write state: %w: %w", sdk.ErrUnavailable, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("jsonstore: write state: %w: %w", sdk.ErrUnavailable, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("jsonstore: write state: %w: %w", sdk.ErrUnavailable, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("jsonstore: write state: %w: %w", sdk.ErrUnavailable, err)
		}
	}
	return nil
}

// write runs fn on a copy of the state and, when it succeeds, persists the
// copy and makes it current: all or nothing.
func (s *Store) write(ctx context.Context, op string, fn func(st *state, ids map[string]bool) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("jsonstore: %s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("jsonstore: %s: %w: store is closed", op, sdk.ErrUnavailable)
	}
	next := s.st.clone()
	added := map[string]bool{}
	if err := fn(next, added); err != nil {
		return fmt.Errorf("jsonstore: %s: %w", op, err)
	}
	if err := s.persist(next); err != nil {
		return err
	}
	s.st = next
	for id := range added {
		s.eventIDs[id] = true
	}
	return nil
}

// read runs fn on the current state.
func (s *Store) read(ctx context.Context, op string, fn func(st *state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("jsonstore: %s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("jsonstore: %s: %w: store is closed", op, sdk.ErrUnavailable)
	}
	if err := fn(s.st); err != nil {
		return fmt.Errorf("jsonstore: %s: %w", op, err)
	}
	return nil
}

// addEvent appends ev to st with the next Seq and links it into the
// audit chain: PrevHash is the Hash of the last event (the genesis hash
// for the first) and Hash covers the event as stored (audit.ChainHash
// takes its Time to the microsecond). Writes hold s.mu, so the chain is
// linear.
func (s *Store) addEvent(st *state, added map[string]bool, ev audit.Event) error {
	switch {
	case ev.ID == "":
		return fmt.Errorf("%w: event has no id", sdk.ErrInvalidArgument)
	case ev.Type == "":
		return fmt.Errorf("%w: event %s has no type", sdk.ErrInvalidArgument, ev.ID)
	case s.eventIDs[ev.ID] || added[ev.ID]:
		return fmt.Errorf("%w: event %s exists", sdk.ErrConflict, ev.ID)
	}
	st.Seq++
	ev.Seq = st.Seq
	ev.Time = orNow(ev.Time)
	if len(ev.Details) == 0 {
		ev.Details = nil
	} else {
		ev.Details = maps.Clone(ev.Details)
	}
	ev.PrevHash = audit.GenesisHash()
	if n := len(st.Events); n > 0 {
		ev.PrevHash = st.Events[n-1].Hash
	}
	ev.Hash = audit.ChainHash(ev.PrevHash, ev)
	st.Events = append(st.Events, ev)
	added[ev.ID] = true
	return nil
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t.UTC()
}

func (s *Store) Accounts() storage.AccountStore       { return accounts{s} }
func (s *Store) Tokens() storage.TokenStore           { return tokens{s} }
func (s *Store) Credentials() storage.CredentialStore { return creds{s} }
func (s *Store) Audit() storage.AuditStore            { return events{s} }

// Info implements storage.Store.
func (s *Store) Info(ctx context.Context) (storage.Info, error) {
	err := s.read(ctx, "info", func(*state) error { return nil })
	return storage.Info{Name: Name, SchemaVersion: schemaVersion}, err
}

// Ping implements storage.Store: the state file must still be there.
func (s *Store) Ping(ctx context.Context) error {
	return s.read(ctx, "ping", func(*state) error {
		if _, err := os.Stat(s.path); err != nil {
			return fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
		}
		return nil
	})
}

// Close implements storage.Store; it is idempotent.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// --- accounts ---

type accounts struct{ s *Store }

func validAccount(a storage.Account) error {
	switch {
	case a.ID == "":
		return fmt.Errorf("%w: empty account id", sdk.ErrInvalidArgument)
	case a.Username == "" || a.Skeleton == "":
		return fmt.Errorf("%w: empty username or skeleton", sdk.ErrInvalidArgument)
	case a.Type != storage.Human && a.Type != storage.System:
		return fmt.Errorf("%w: account type %q", sdk.ErrInvalidArgument, a.Type)
	case a.Status != storage.Active && a.Status != storage.Inactive && a.Status != storage.Deleted:
		return fmt.Errorf("%w: account status %q", sdk.ErrInvalidArgument, a.Status)
	}
	return nil
}

// normalise returns a with sorted unique roles, nil empties and UTC times.
func normalise(a storage.Account) (storage.Account, error) {
	roles := slices.Clone(a.Roles)
	slices.Sort(roles)
	roles = slices.Compact(roles)
	if slices.Contains(roles, "") {
		return a, fmt.Errorf("%w: empty role", sdk.ErrInvalidArgument)
	}
	if len(roles) == 0 {
		roles = nil
	}
	a.Roles = roles
	if len(a.TOTPSecret) == 0 {
		a.TOTPSecret = nil
	} else {
		a.TOTPSecret = slices.Clone(a.TOTPSecret)
	}
	return a, nil
}

// unique fails when another live account holds a's username or skeleton.
func unique(st *state, a storage.Account) error {
	if a.Status == storage.Deleted {
		return nil
	}
	for _, o := range st.Accounts {
		if o.ID == a.ID || o.Status == storage.Deleted {
			continue
		}
		if o.Username == a.Username || o.Skeleton == a.Skeleton {
			return fmt.Errorf("%w: username or look-alike taken", sdk.ErrConflict)
		}
	}
	return nil
}

func (x accounts) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	return x.s.write(ctx, "create account "+a.ID, func(st *state, added map[string]bool) error {
		if err := validAccount(a); err != nil {
			return err
		}
		if a.Version != 1 {
			return fmt.Errorf("%w: version must be 1, got %d", sdk.ErrInvalidArgument, a.Version)
		}
		a, err := normalise(a)
		if err != nil {
			return err
		}
		if _, ok := st.Accounts[a.ID]; ok {
			return fmt.Errorf("%w: account exists", sdk.ErrConflict)
		}
		if err := unique(st, a); err != nil {
			return err
		}
		a.CreatedAt = orNow(a.CreatedAt)
		if a.UpdatedAt.IsZero() {
			a.UpdatedAt = a.CreatedAt
		}
		a.UpdatedAt = a.UpdatedAt.UTC()
		st.Accounts[a.ID] = a
		return x.s.addEvent(st, added, ev)
	})
}

func (x accounts) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	var out storage.Account
	err := x.s.read(ctx, "get account "+id, func(st *state) error {
		a, ok := st.Accounts[id]
		if !ok {
			return sdk.ErrNotFound
		}
		out = a
		return nil
	})
	return out, err
}

func (x accounts) GetAccountByUsername(ctx context.Context, username string) (storage.Account, error) {
	var out storage.Account
	err := x.s.read(ctx, "get account by username", func(st *state) error {
		for _, a := range st.Accounts {
			if a.Username == username && a.Status != storage.Deleted {
				out = a
				return nil
			}
		}
		return sdk.ErrNotFound
	})
	return out, err
}

// cursor is the position after the last account of a page.
func cursor(a storage.Account) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(a.CreatedAt.UnixNano(), 10) + ":" + a.ID))
}

func parseCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	num, id, ok := strings.Cut(string(b), ":")
	n, perr := strconv.ParseInt(num, 10, 64)
	if err != nil || !ok || perr != nil || id == "" {
		return 0, "", fmt.Errorf("%w: malformed cursor", sdk.ErrInvalidArgument)
	}
	return n, id, nil
}

func (x accounts) ListAccounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, string, error) {
	var (
		out  []storage.Account
		next string
	)
	err := x.s.read(ctx, "list accounts", func(st *state) error {
		limit := f.Limit
		switch {
		case limit < 0:
			return fmt.Errorf("%w: negative limit", sdk.ErrInvalidArgument)
		case limit == 0:
			limit = defaultLimit
		}
		var afterNanos int64
		var afterID string
		if f.Cursor != "" {
			var err error
			if afterNanos, afterID, err = parseCursor(f.Cursor); err != nil {
				return err
			}
		}
		for _, a := range st.Accounts {
			switch {
			case f.Type != "" && a.Type != f.Type,
				f.Status != "" && a.Status != f.Status,
				f.Status == "" && !f.IncludeDeleted && a.Status == storage.Deleted,
				f.Role != "" && !slices.Contains(a.Roles, f.Role):
				continue
			}
			if f.Cursor != "" {
				n := a.CreatedAt.UnixNano()
				if n < afterNanos || (n == afterNanos && a.ID <= afterID) {
					continue
				}
			}
			out = append(out, a)
		}
		slices.SortFunc(out, func(a, b storage.Account) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		if len(out) > limit {
			out = out[:limit]
			next = cursor(out[limit-1])
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

func (x accounts) UpdateAccount(ctx context.Context, a storage.Account, opts storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	var out storage.Account
	err := x.s.write(ctx, "update account "+a.ID, func(st *state, added map[string]bool) error {
		if err := validAccount(a); err != nil {
			return err
		}
		a, err := normalise(a)
		if err != nil {
			return err
		}
		old, ok := st.Accounts[a.ID]
		switch {
		case !ok:
			return sdk.ErrNotFound
		case old.Version != a.Version:
			return fmt.Errorf("%w: version %d is stale", sdk.ErrConflict, a.Version)
		}
		if err := unique(st, a); err != nil {
			return err
		}
		n := old
		n.Username, n.Skeleton, n.Status, n.PasswordHash = a.Username, a.Skeleton, a.Status, a.PasswordHash
		n.Roles, n.TOTPSecret, n.TOTPEnabled, n.TOTPLastStep = a.Roles, a.TOTPSecret, a.TOTPEnabled, a.TOTPLastStep
		n.UpdatedAt = orNow(a.UpdatedAt)
		n.Version++
		st.Accounts[n.ID] = n
		if n.Status == storage.Deleted {
			// A deleted account keeps its row for the audit history, not
			// its secrets.
			delete(st.Creds, n.ID)
		}
		if opts.KeepActiveAdmin && !hasActiveAdmin(st) {
			return fmt.Errorf("%w: no active admin would remain", sdk.ErrPrecondition)
		}
		if opts.RevokeTokens {
			for jti, t := range st.Tokens {
				if t.AccountID == n.ID && t.RevokedAt.IsZero() && t.ExpiresAt.After(n.UpdatedAt) && jti != opts.KeepJTI {
					t.RevokedAt, t.RevokeReason = n.UpdatedAt, opts.RevokeReason
					st.Tokens[jti] = t
				}
			}
		}
		out = n
		return x.s.addEvent(st, added, ev)
	})
	return out, err
}

func hasActiveAdmin(st *state) bool {
	for _, a := range st.Accounts {
		if a.Status == storage.Active && slices.Contains(a.Roles, "admin") {
			return true
		}
	}
	return false
}

func (x accounts) CountAccounts(ctx context.Context) (int, error) {
	var n int
	err := x.s.read(ctx, "count accounts", func(st *state) error {
		n = len(st.Accounts)
		return nil
	})
	return n, err
}

// --- tokens ---

type tokens struct{ s *Store }

func (x tokens) CreateToken(ctx context.Context, t storage.Token, replaces string, ev audit.Event) error {
	return x.s.write(ctx, "create token "+t.JTI, func(st *state, added map[string]bool) error {
		switch {
		case t.JTI == "" || t.AccountID == "":
			return fmt.Errorf("%w: empty jti or account id", sdk.ErrInvalidArgument)
		case t.Kind != storage.Session && t.Kind != storage.Service:
			return fmt.Errorf("%w: token kind %q", sdk.ErrInvalidArgument, t.Kind)
		case t.ExpiresAt.IsZero():
			return fmt.Errorf("%w: no expiry", sdk.ErrInvalidArgument)
		case replaces == t.JTI:
			return fmt.Errorf("%w: a token cannot replace itself", sdk.ErrInvalidArgument)
		}
		t.IssuedAt = orNow(t.IssuedAt)
		t.ExpiresAt = t.ExpiresAt.UTC()
		if !t.RevokedAt.IsZero() {
			t.RevokedAt = t.RevokedAt.UTC()
		}
		if replaces != "" {
			old, ok := st.Tokens[replaces]
			switch {
			case !ok:
				return fmt.Errorf("%w: replaced token %s", sdk.ErrNotFound, replaces)
			case old.AccountID != t.AccountID:
				return fmt.Errorf("%w: replaced token %s belongs to another account", sdk.ErrConflict, replaces)
			case !old.RevokedAt.IsZero():
				return fmt.Errorf("%w: replaced token %s is already revoked", sdk.ErrConflict, replaces)
			}
			old.RevokedAt, old.RevokeReason = t.IssuedAt, "renew"
			st.Tokens[replaces] = old
		}
		if _, ok := st.Accounts[t.AccountID]; !ok {
			return fmt.Errorf("%w: account %s", sdk.ErrNotFound, t.AccountID)
		}
		if _, ok := st.Tokens[t.JTI]; ok {
			return fmt.Errorf("%w: token exists", sdk.ErrConflict)
		}
		st.Tokens[t.JTI] = t
		return x.s.addEvent(st, added, ev)
	})
}

func (x tokens) GetToken(ctx context.Context, jti string) (storage.Token, error) {
	var out storage.Token
	err := x.s.read(ctx, "get token "+jti, func(st *state) error {
		t, ok := st.Tokens[jti]
		if !ok {
			return sdk.ErrNotFound
		}
		out = t
		return nil
	})
	return out, err
}

func (x tokens) RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error {
	return x.s.write(ctx, "revoke token "+jti, func(st *state, added map[string]bool) error {
		t, ok := st.Tokens[jti]
		if !ok {
			return sdk.ErrNotFound
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt, t.RevokeReason = orNow(at), reason
			st.Tokens[jti] = t
		}
		return x.s.addEvent(st, added, ev)
	})
}

func (x tokens) ListTokens(ctx context.Context, f storage.TokenFilter) ([]storage.Token, error) {
	var out []storage.Token
	err := x.s.read(ctx, "list tokens", func(st *state) error {
		if f.Limit < 0 {
			return fmt.Errorf("%w: negative limit", sdk.ErrInvalidArgument)
		}
		for _, t := range st.Tokens {
			switch {
			case f.AccountID != "" && t.AccountID != f.AccountID,
				f.RevokedOnly && t.RevokedAt.IsZero(),
				!f.ExpiresAfter.IsZero() && !t.ExpiresAt.After(f.ExpiresAfter),
				!f.RevokedAfter.IsZero() && !t.RevokedAt.After(f.RevokedAfter),
				f.KID != "" && t.KID != f.KID:
				continue
			}
			out = append(out, t)
		}
		slices.SortFunc(out, func(a, b storage.Token) int {
			if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
				return c
			}
			return strings.Compare(a.JTI, b.JTI)
		})
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return nil
	})
	return out, err
}

func (x tokens) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := x.s.write(ctx, "prune tokens", func(st *state, _ map[string]bool) error {
		for jti, t := range st.Tokens {
			if t.ExpiresAt.Before(before) {
				delete(st.Tokens, jti)
				n++
			}
		}
		return nil
	})
	return n, err
}

// --- Postgres credentials ---

type creds struct{ s *Store }

func (x creds) GetPGCreds(ctx context.Context, accountID string) (storage.PGCreds, error) {
	var out storage.PGCreds
	err := x.s.read(ctx, "get pgcreds "+accountID, func(st *state) error {
		c, ok := st.Creds[accountID]
		if !ok {
			return sdk.ErrNotFound
		}
		out = c
		return nil
	})
	return out, err
}

func (x creds) PutPGCreds(ctx context.Context, c storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	var out storage.PGCreds
	err := x.s.write(ctx, "put pgcreds "+c.AccountID, func(st *state, added map[string]bool) error {
		switch {
		case c.AccountID == "":
			return fmt.Errorf("%w: empty account id", sdk.ErrInvalidArgument)
		case c.Version < 0:
			return fmt.Errorf("%w: negative version", sdk.ErrInvalidArgument)
		case c.Password == nil:
			return fmt.Errorf("%w: no password", sdk.ErrInvalidArgument)
		}
		if _, ok := st.Accounts[c.AccountID]; !ok {
			return fmt.Errorf("%w: account %s", sdk.ErrNotFound, c.AccountID)
		}
		old, exists := st.Creds[c.AccountID]
		switch {
		case c.Version == 0 && exists:
			return fmt.Errorf("%w: credential exists", sdk.ErrConflict)
		case c.Version != 0 && (!exists || old.Version != c.Version):
			return fmt.Errorf("%w: version %d is stale", sdk.ErrConflict, c.Version)
		}
		c.Version++
		c.UpdatedAt = orNow(c.UpdatedAt)
		c.Password = slices.Clone(c.Password)
		st.Creds[c.AccountID] = c
		out = c
		return x.s.addEvent(st, added, ev)
	})
	return out, err
}

// --- audit log ---

type events struct{ s *Store }

func (x events) AppendEvent(ctx context.Context, ev audit.Event) error {
	return x.s.write(ctx, "append event "+ev.ID, func(st *state, added map[string]bool) error {
		return x.s.addEvent(st, added, ev)
	})
}

func (x events) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	var out []audit.Event
	err := x.s.read(ctx, "list events", func(st *state) error {
		limit := f.Limit
		switch {
		case limit < 0:
			return fmt.Errorf("%w: negative limit", sdk.ErrInvalidArgument)
		case limit == 0:
			limit = defaultLimit
		}
		for i := len(st.Events) - 1; i >= 0 && len(out) < limit; i-- {
			ev := st.Events[i]
			switch {
			case f.Type != "" && ev.Type != f.Type,
				f.AccountID != "" && ev.ActorID != f.AccountID && ev.AccountID != f.AccountID,
				!f.Since.IsZero() && ev.Time.Before(f.Since),
				f.BeforeSeq > 0 && ev.Seq >= f.BeforeSeq:
				continue
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

func (x events) ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	var out []audit.Event
	err := x.s.read(ctx, "read events", func(st *state) error {
		switch {
		case limit < 0:
			return fmt.Errorf("%w: negative limit", sdk.ErrInvalidArgument)
		case limit == 0:
			limit = defaultLimit
		}
		// Events are in Seq order: find the first after afterSeq.
		i, _ := slices.BinarySearchFunc(st.Events, afterSeq+1, func(ev audit.Event, seq int64) int {
			switch {
			case ev.Seq < seq:
				return -1
			case ev.Seq > seq:
				return 1
			}
			return 0
		})
		end := min(i+limit, len(st.Events))
		out = slices.Clone(st.Events[i:end])
		return nil
	})
	return out, err
}

func (x events) SinkCursor(ctx context.Context, sink string) (int64, error) {
	if err := storage.CheckName("sink name", sink); err != nil {
		return 0, fmt.Errorf("jsonstore: sink cursor: %w", err)
	}
	var seq int64
	err := x.s.read(ctx, "sink cursor", func(st *state) error {
		seq = st.Cursors[sink]
		return nil
	})
	return seq, err
}

func (x events) SetSinkCursor(ctx context.Context, sink string, seq int64) error {
	if err := storage.CheckName("sink name", sink); err != nil {
		return fmt.Errorf("jsonstore: set sink cursor: %w", err)
	}
	if seq < 0 {
		return fmt.Errorf("jsonstore: set sink cursor: %w: negative seq", sdk.ErrInvalidArgument)
	}
	return x.s.write(ctx, "set sink cursor", func(st *state, _ map[string]bool) error {
		if st.Cursors == nil {
			st.Cursors = map[string]int64{}
		}
		// A cursor never moves backwards.
		st.Cursors[sink] = max(st.Cursors[sink], seq)
		return nil
	})
}

// Leases: the optional storage.Leaser capability. One process owns the
// file, so the lock every write holds makes a lease atomic, and this
// process's clock is the only one.

var _ storage.Leaser = (*Store)(nil)

func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(name, holder, ttl); err != nil {
		return false, fmt.Errorf("jsonstore: acquire lease: %w", err)
	}
	acquired := false
	err := s.write(ctx, "acquire lease", func(st *state, _ map[string]bool) error {
		now := time.Now()
		if l, held := st.Leases[name]; held && l.Holder != holder && now.Before(l.Expires) {
			return nil // another holder's lease runs
		}
		if st.Leases == nil {
			st.Leases = map[string]lease{}
		}
		st.Leases[name] = lease{Holder: holder, Expires: now.Add(ttl)}
		acquired = true
		return nil
	})
	return acquired, err
}

func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder, 1); err != nil {
		return fmt.Errorf("jsonstore: release lease: %w", err)
	}
	return s.write(ctx, "release lease", func(st *state, _ map[string]bool) error {
		if st.Leases[name].Holder == holder {
			delete(st.Leases, name)
		}
		return nil
	})
}

func checkLease(name, holder string, ttl time.Duration) error {
	if err := storage.CheckName("lease name", name); err != nil {
		return err
	}
	if err := storage.CheckName("lease holder", holder); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl not above zero", sdk.ErrInvalidArgument)
	}
	return nil
}
