// Package file is the builtin audit sink that appends events to a local
// JSON Lines file, one audit.Record per line in pure ASCII
// (audit.MarshalRecord), so attacker text in an event can never end a
// line or start a second record.
//
// URI: file:///abs/path.jsonl or file:rel/path.jsonl. The file is created
// with mode 0600 and opened O_APPEND; each Deliver writes its batch with
// one write and fsyncs before returning, so a nil error means the events
// are on disk. actor_id and account_id are omitted when empty.
//
// Rotation: the sink keeps its file open, so after logrotate (or anyone)
// renames it, events keep landing in the renamed file until Reopen is
// called; Reopen then opens the path afresh (creating it) and later
// events go there, none lost between the two files. The sink installs no
// signal handler itself: mciassrv calls Reopen on every sink that has one
// when it receives SIGHUP, and a plugin process does the same for its own
// sink (sdk/plugin). copytruncate rotation needs no Reopen (O_APPEND).
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// Name is the sink's name, as reported by Info.
const Name = "file"

// recentIDs is how many delivered event IDs the sink remembers to drop
// redeliveries. The dispatcher resends at most one batch after an error,
// so this only needs to cover a few batches.
const recentIDs = 4096

// Record is the JSON form of one line (audit.Record).
type Record = audit.Record

// Sink appends events to a file. It is safe for concurrent use.
type Sink struct {
	path   string
	logger *slog.Logger

	mu     sync.Mutex
	f      *os.File
	closed bool
	// torn is set when the file may end in a partial line (a failed write
	// or a crash before this start), so the next write starts a new line.
	torn bool
	seen map[string]struct{}
	ring []string
	next int
}

var (
	_ audit.Sink     = (*Sink)(nil)
	_ audit.Reopener = (*Sink)(nil)
)

func parseURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("file audit: parse uri: %w", sdk.ErrInvalidArgument)
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("file audit: uri scheme %q is not \"file\": %w", u.Scheme, sdk.ErrInvalidArgument)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("file audit: uri takes no query or fragment: %w", sdk.ErrInvalidArgument)
	}
	switch {
	case u.Opaque != "":
		return u.Opaque, nil // file:rel/path.jsonl
	case u.Host != "" && u.Host != "localhost":
		return "", fmt.Errorf("file audit: uri has a host %q; use file:///abs/path or file:rel/path: %w", u.Host, sdk.ErrInvalidArgument)
	case u.Path == "" || u.Path == "/":
		return "", fmt.Errorf("file audit: uri names no file: %w", sdk.ErrInvalidArgument)
	default:
		return u.Path, nil
	}
}

// Open opens (creating if needed) the audit file named by uri. It matches
// audit.Factory. An existing file that others can read or write is
// refused: audit records reveal who logged in from where.
func Open(ctx context.Context, uri string, logger *slog.Logger) (audit.Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	f, torn, err := openFile(path, logger)
	if err != nil {
		return nil, err
	}
	return &Sink{
		path: path, logger: logger, f: f, torn: torn,
		seen: make(map[string]struct{}, recentIDs), ring: make([]string, recentIDs),
	}, nil
}

// openFile opens path for appending, creating it 0600, and reports
// whether it ends in a partial line.
func openFile(path string, logger *slog.Logger) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("file audit: open %s: %w: %w", path, sdk.ErrUnavailable, err)
	}
	fail := func(err error) (*os.File, bool, error) {
		f.Close()
		return nil, false, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("file audit: stat %s: %w: %w", path, sdk.ErrUnavailable, err))
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("file audit: %s is not a regular file: %w", path, sdk.ErrInvalidArgument))
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fail(fmt.Errorf("file audit: %s has mode %#o; it must be 0600 or stricter (chmod 600 %s): %w", path, perm, path, sdk.ErrInvalidArgument))
	}
	torn, err := endsTorn(path, st.Size())
	if err != nil {
		return fail(err)
	}
	if torn {
		logger.Warn("file audit: file ends in a partial line; starting a new line", "path", path)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fail(err)
	}
	return f, torn, nil
}

// Reopen implements audit.Reopener: it opens the sink's path afresh (a
// new file when the old one was renamed away) and sends later batches
// there. It waits for a Deliver in progress, so every event is in
// exactly one of the two files. On error the sink keeps writing to the
// file it had, so nothing is lost, and the error says why.
func (s *Sink) Reopen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("file audit: reopen: sink is closed: %w", sdk.ErrUnavailable)
	}
	f, torn, err := openFile(s.path, s.logger)
	if err != nil {
		return err
	}
	old := s.f
	s.f, s.torn = f, torn
	// Every accepted batch was fsynced already; close errors cannot lose
	// an event, but say so.
	if err := old.Close(); err != nil {
		s.logger.Warn("file audit: close the previous file", "path", s.path, "error", err)
	}
	s.logger.Info("file audit: reopened", "path", s.path)
	return nil
}

// endsTorn reports whether a non-empty file does not end in a newline.
func endsTorn(path string, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	r, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("file audit: read %s: %w: %w", path, sdk.ErrUnavailable, err)
	}
	defer r.Close()
	var b [1]byte
	if _, err := r.ReadAt(b[:], size-1); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("file audit: read %s: %w: %w", path, sdk.ErrUnavailable, err)
	}
	return b[0] != '\n', nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file audit: sync directory: %w: %w", sdk.ErrUnavailable, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file audit: sync directory: %w: %w", sdk.ErrUnavailable, err)
	}
	return nil
}

// Info implements audit.Sink.
func (s *Sink) Info(ctx context.Context) (audit.Info, error) {
	return audit.Info{Name: Name}, nil
}

// Deliver implements audit.Sink: it appends the events not delivered
// recently (by ID) in one write and fsyncs. On error nothing is marked
// delivered, so the retried batch is written again in full; readers must
// drop duplicate IDs, as the audit contract says.
func (s *Sink) Deliver(ctx context.Context, events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("file audit: deliver: sink is closed: %w", sdk.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file audit: deliver: %w: %w", sdk.ErrUnavailable, err)
	}
	var buf bytes.Buffer
	if s.torn {
		buf.WriteByte('\n')
	}
	var ids []string
	batch := map[string]struct{}{}
	for _, e := range events {
		if e.ID != "" { // producers always set an ID; never merge events without one
			if _, dup := s.seen[e.ID]; dup {
				continue
			}
			if _, dup := batch[e.ID]; dup {
				continue
			}
			batch[e.ID] = struct{}{}
		}
		line, err := audit.MarshalRecord(e)
		if err != nil {
			return fmt.Errorf("file audit: encode event %s: %w", e.ID, sdk.ErrInvalidArgument)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		ids = append(ids, e.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		s.torn = true
		return fmt.Errorf("file audit: write %s: %w: %w", s.path, sdk.ErrUnavailable, err)
	}
	s.torn = false
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("file audit: sync %s: %w: %w", s.path, sdk.ErrUnavailable, err)
	}
	for _, id := range ids {
		if id != "" {
			s.remember(id)
		}
	}
	return nil
}

// remember adds id to the bounded set of recently delivered IDs.
func (s *Sink) remember(id string) {
	if old := s.ring[s.next]; old != "" {
		delete(s.seen, old)
	}
	s.ring[s.next] = id
	s.seen[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}

// Close implements audit.Sink. Closing twice is a no-op.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file audit: close %s: %w: %w", s.path, sdk.ErrUnavailable, err)
	}
	return nil
}
