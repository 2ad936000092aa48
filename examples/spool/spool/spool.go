// Package spool is an example MCIAS audit sink written outside the MCIAS
// tree: it writes each batch of events atomically into a spool
// directory, the classic hand-off to a separate forwarder (a log
// shipper, a batch uploader) that takes finished files, sends them on and
// deletes them.
//
// URI: spool:///var/spool/mcias (an absolute directory; created 0700 if
// missing; an existing one that others may read or write is refused).
//
// Each batch becomes one file named <first seq>-<last seq>.jsonl (20
// digits each, so names sort in storage order) holding one audit.Record
// JSON object per line. It is written under a ".tmp-" name, fsynced,
// renamed into place and the directory fsynced, so a forwarder never sees
// a partial batch: it takes *.jsonl files in name order and ignores the
// rest. A redelivered batch has the same name and content and simply
// replaces the file; an overlapping batch gets a new name, so the
// forwarder (or whoever it feeds) drops duplicate events by "id".
package spool

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// Name is the sink's name in Info.
const Name = "spool"

// Sink writes batches into one directory.
type Sink struct {
	dir    string
	logger *slog.Logger
	mu     sync.RWMutex
	closed bool
}

var _ audit.Sink = (*Sink)(nil)

// Open is the audit.Factory of the sink.
func Open(_ context.Context, uri string, logger *slog.Logger) (audit.Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "spool" || u.Host != "" || u.RawQuery != "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("spool: uri %q: %w (want spool:///abs/dir)", uri, sdk.ErrInvalidArgument)
	}
	dir := filepath.Clean(u.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w: %w", dir, sdk.ErrUnavailable, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w: %w", sdk.ErrUnavailable, err)
	}
	if !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("spool: %s must be a directory of mode 0700 or stricter: %w", dir, sdk.ErrInvalidArgument)
	}
	logger.Info("spool: writing audit batches", "dir", dir)
	return &Sink{dir: dir, logger: logger}, nil
}

// Info implements audit.Sink.
func (s *Sink) Info(context.Context) (audit.Info, error) {
	return audit.Info{Name: Name}, nil
}

// FileName is the spool file of a batch.
func FileName(events []audit.Event) string {
	return fmt.Sprintf("%020d-%020d.jsonl", events[0].Seq, events[len(events)-1].Seq)
}

// Deliver implements audit.Sink: the batch is in its spool file, on disk,
// when it returns nil.
func (s *Sink) Deliver(ctx context.Context, events []audit.Event) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("spool: deliver: %w: sink is closed", sdk.ErrUnavailable)
	}
	if len(events) == 0 {
		return nil
	}
	var buf bytes.Buffer
	for _, e := range events {
		line, err := audit.MarshalRecord(e) // pure ASCII: one line per event, whatever its text
		if err != nil {
			return fmt.Errorf("spool: encode event %s: %w", e.ID, sdk.ErrInvalidArgument)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	fail := func(op string, err error) error {
		return fmt.Errorf("spool: %s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-")
	if err != nil {
		return fail("create", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fail("write", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fail("sync", err)
	}
	if err := tmp.Close(); err != nil {
		return fail("close", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, FileName(events))); err != nil {
		return fail("rename", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fail("sync directory", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fail("sync directory", err)
	}
	return nil
}

// Close implements audit.Sink; it is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
