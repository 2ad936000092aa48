// Package syslog is the builtin audit sink that sends each event as one
// RFC 5424 syslog message to a local syslog daemon (rsyslog, syslog-ng).
//
// URIs:
//
//	syslog+tcp://127.0.0.1:514?facility=auth    TCP, RFC 6587 octet counting
//	syslog+unix:///run/mcias/syslog.sock        unix datagram socket (/dev/log style)
//
// facility is one of kern user mail daemon auth syslog lpr news uucp cron
// authpriv ftp local0..local7 (default auth). A message looks like
//
//	<110>1 2026-01-02T03:04:05.123456Z host mcias 4242 login_failure [mcias@32473 id="…" seq="7"] {"id":…}
//
// PRI is facility*8 + severity (info for a success, warning for a
// failure), the timestamp is the event's time (microseconds, UTC),
// PROCID the server's process ID, MSGID the event type, the structured
// data the event ID and sequence number (RFC 5424 SD-PARAM escaping of
// `"`, `\` and `]`), and MSG the event as one audit.Record JSON object
// in pure ASCII (audit.MarshalRecord: every other character \u-escaped,
// so no BOM is needed and no control character, newline or U+2028 can
// reach the daemon raw). The SD-ID uses 32473, the private enterprise
// number RFC 5612 sets aside for documentation; MCIAS has none of its
// own. The unix transport is datagram only (what /dev/log and rsyslog's
// imuxsock speak); stream unix sockets are not supported.
//
// Delivery: Deliver returns nil once every message of the batch has been
// written to the socket. That means the kernel accepted it, not that the
// daemon stored it: plain syslog has no acknowledgement (RELP would; it is
// not implemented). So the sink guards against the daemon dying with
// messages unread or unwritten: before each TCP batch it checks that the
// connection is still open (syslog daemons never send on it, so readable
// means closed), and whenever it has to reconnect after a failed or closed
// connection it first sends again the last replayBytes of messages it had
// written. Receivers drop the repeats by the event ID, as the audit
// contract says. Any failure closes the connection and returns
// sdk.ErrUnavailable, so the server retries the batch; the next Deliver
// reconnects. A daemon that is only paused (SIGSTOP, a full queue) makes
// writes block until ctx's deadline, which the server's retry absorbs.
//
// Messages are at most maxMessage bytes; configure the daemon to accept
// them whole (rsyslog: global(maxMessageSize="64k"); its default of 8k
// would cut long events).
package syslog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

// Name is the sink's name, as reported by Info.
const Name = "syslog"

const (
	// maxMessage bounds one syslog message (the header is short; the
	// rest is the event JSON).
	maxMessage = 64 << 10
	// replayBytes is how much of what was last written is sent again
	// after the connection broke: more than the socket buffers and a
	// daemon's in-memory queue usually hold unwritten.
	replayBytes = 4 << 20
	// ioTimeout bounds a dial or a batch write when ctx has no deadline.
	ioTimeout = 10 * time.Second
	// sdID names the structured data element.
	sdID = "mcias@32473"
)

var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

const (
	sevWarning = 4
	sevInfo    = 6
)

// Sink sends events to a syslog daemon. It is safe for concurrent use;
// batches are sent one at a time, in call order.
type Sink struct {
	network, addr string // "tcp" or "unixgram"
	facility      int
	hostname      string
	procID        string
	logger        *slog.Logger

	mu     sync.Mutex
	conn   net.Conn
	closed bool
	broken bool     // the last connection failed; replay on the next
	recent [][]byte // frames (TCP) or datagrams last written, oldest first
	size   int      // bytes in recent
}

var _ audit.Sink = (*Sink)(nil)

func parseURI(uri string) (network, addr string, facility int, err error) {
	bad := func(why string) (string, string, int, error) {
		return "", "", 0, fmt.Errorf("syslog audit: uri %s: %w (want syslog+tcp://host:port?facility=auth or syslog+unix:///path)", why, sdk.ErrInvalidArgument)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return bad("is not a URL")
	}
	if u.User != nil || u.Fragment != "" {
		return bad("has user info or a fragment")
	}
	facility = facilities["auth"]
	for k, v := range u.Query() {
		if k != "facility" || len(v) != 1 {
			return bad(fmt.Sprintf("has an unknown or repeated parameter %q (known: facility)", k))
		}
		f, ok := facilities[v[0]]
		if !ok {
			return bad(fmt.Sprintf("names an unknown facility %q", v[0]))
		}
		facility = f
	}
	switch u.Scheme {
	case "syslog+tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" {
			return bad("needs host:port and no path")
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return bad("needs a port")
		}
		return "tcp", u.Host, facility, nil
	case "syslog+unix":
		if u.Host != "" || u.Path == "" || u.Opaque != "" {
			return bad("needs an absolute socket path and no host")
		}
		return "unixgram", u.Path, facility, nil
	default:
		return bad(fmt.Sprintf("has scheme %q", u.Scheme))
	}
}

// Open is the audit.Factory of the sink. It does not connect: the daemon
// may start after the server, and the first Deliver connects.
func Open(_ context.Context, uri string, logger *slog.Logger) (audit.Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	network, addr, facility, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil || !printASCII(host, 255) {
		host = "-"
	}
	return &Sink{network: network, addr: addr, facility: facility, hostname: host,
		procID: strconv.Itoa(os.Getpid()), logger: logger}, nil
}

// printASCII reports whether s is 1..max characters of RFC 5424
// PRINTUSASCII (33..126).
func printASCII(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// Info implements audit.Sink.
func (s *Sink) Info(context.Context) (audit.Info, error) {
	return audit.Info{Name: Name}, nil
}

// message formats one event as an RFC 5424 message (without framing).
func (s *Sink) message(e audit.Event) ([]byte, error) {
	sev := sevInfo
	if e.Outcome != audit.Success {
		sev = sevWarning
	}
	msgID := string(e.Type)
	if !printASCII(msgID, 32) {
		msgID = "-"
	}
	body, err := audit.MarshalRecord(e)
	if err != nil {
		return nil, fmt.Errorf("syslog audit: encode event %s: %w", e.ID, sdk.ErrInvalidArgument)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s mcias %s %s [%s id=\"", s.facility*8+sev,
		e.Time.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z"),
		s.hostname, s.procID, msgID, sdID)
	b.WriteString(sdEscape(e.ID))
	fmt.Fprintf(&b, "\" seq=\"%d\"] ", e.Seq)
	b.Write(body)
	if b.Len() > maxMessage {
		return nil, fmt.Errorf("syslog audit: event %s is %d bytes as a message, over %d: %w", e.ID, b.Len(), maxMessage, sdk.ErrInvalidArgument)
	}
	return b.Bytes(), nil
}

// sdEscape escapes an SD-PARAM value (RFC 5424 section 6.3.3) and
// replaces what a PARAM-VALUE cannot hold raw (control characters,
// invalid UTF-8) with U+FFFD.
func sdEscape(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r == '"' || r == '\\' || r == ']':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError || r == '\u2028' || r == '\u2029':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Deliver implements audit.Sink: it sends one message per event, in
// order, and returns nil once all are written.
func (s *Sink) Deliver(ctx context.Context, events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs := make([][]byte, 0, len(events))
	for _, e := range events {
		m, err := s.message(e)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("syslog audit: deliver: sink is closed: %w", sdk.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("syslog audit: deliver: %w: %w", sdk.ErrUnavailable, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(ioTimeout)
	}
	if err := s.send(ctx, deadline, msgs); err != nil {
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		s.broken = true
		return fmt.Errorf("syslog audit: deliver %d events to %s %s: %w: %w", len(events), s.network, s.addr, sdk.ErrUnavailable, err)
	}
	return nil
}

// send writes msgs, connecting (and, over TCP after a broken connection,
// replaying) first when needed. Called with s.mu held.
func (s *Sink) send(ctx context.Context, deadline time.Time, msgs [][]byte) error {
	if s.conn != nil && s.network == "tcp" && peerClosed(s.conn) {
		s.logger.Warn("syslog audit: the daemon closed the connection; reconnecting", "addr", s.addr)
		s.conn.Close()
		s.conn, s.broken = nil, true
	}
	if s.conn == nil {
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(ctx, s.network, s.addr)
		if err != nil {
			return err
		}
		s.conn = c
		if s.broken && len(s.recent) > 0 {
			s.logger.Info("syslog audit: resending recent messages after a reconnect", "messages", len(s.recent))
			if err := s.write(deadline, s.recent); err != nil {
				return err
			}
		}
		s.broken = false
	}
	if s.network == "tcp" {
		frames := make([][]byte, len(msgs))
		for i, m := range msgs {
			frames[i] = append(strconv.AppendInt(nil, int64(len(m)), 10), ' ')
			frames[i] = append(frames[i], m...)
		}
		msgs = frames
	}
	if err := s.write(deadline, msgs); err != nil {
		return err
	}
	s.keep(msgs)
	return nil
}

// write sends each buffer: over TCP as one stream, over a datagram
// socket one datagram each.
func (s *Sink) write(deadline time.Time, bufs [][]byte) error {
	if err := s.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if s.network == "tcp" {
		// WriteTo consumes (nils) the slice it is given; bufs are kept
		// for a replay.
		nb := append(net.Buffers(nil), bufs...)
		_, err := nb.WriteTo(s.conn)
		return err
	}
	for _, b := range bufs {
		if _, err := s.conn.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// keep remembers frames for a replay, dropping the oldest beyond
// replayBytes.
func (s *Sink) keep(frames [][]byte) {
	for _, f := range frames {
		s.recent = append(s.recent, f)
		s.size += len(f)
	}
	drop := 0
	for s.size > replayBytes && drop < len(s.recent) {
		s.size -= len(s.recent[drop])
		drop++
	}
	s.recent = s.recent[drop:]
}

// peerClosed reports whether the daemon closed (or reset) the
// connection: a syslog receiver never sends, so anything but a read
// timeout means the connection is gone.
func peerClosed(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return true
	}
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Close implements audit.Sink. Closing twice is a no-op.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn != nil {
		err := s.conn.Close()
		s.conn = nil
		if err != nil {
			return fmt.Errorf("syslog audit: close: %w: %w", sdk.ErrUnavailable, err)
		}
	}
	return nil
}
