package syslog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/metacircular/mcias/internal/rsyslogtest"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/audit/audittest"
)

// transports are the URIs of both transports for a daemon.
func transports(d *rsyslogtest.Daemon) map[string]string {
	return map[string]string{
		"tcp":  "syslog+tcp://" + d.TCPAddr + "?facility=local3",
		"unix": "syslog+unix://" + d.Socket,
	}
}

func open(t *testing.T, uri string) audit.Sink {
	t.Helper()
	s, err := Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the sink suite against a real rsyslog over each
// transport, reading back what rsyslog wrote to its output file.
func TestConformance(t *testing.T) {
	for _, tr := range []string{"tcp", "unix"} {
		t.Run("transport="+tr, func(t *testing.T) {
			audittest.Run(t, func(t *testing.T) (audit.Sink, func() []audit.Event) {
				d := rsyslogtest.Start(t)
				return open(t, transports(d)[tr]), func() []audit.Event { return rsyslogtest.Events(t, d.SettledLines()) }
			})
		})
	}
}

// TestMessageFormat checks every header field of what rsyslog received.
func TestMessageFormat(t *testing.T) {
	d := rsyslogtest.Start(t)
	for tr, uri := range transports(d) {
		s := open(t, uri)
		ok, fail := audittest.Event(1), audittest.Event(2)
		ok.Outcome, ok.Type = audit.Success, audit.LoginSuccess
		if err := s.Deliver(t.Context(), []audit.Event{ok, fail}); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		s.Close(t.Context())
	}
	lines := d.SettledLines()
	if len(lines) != 4 {
		t.Fatalf("%d messages, want 4:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	host, _ := os.Hostname()
	for i, l := range lines {
		m, err := rsyslogtest.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		// rsyslog's inputs run in their own threads: order across the two
		// transports is not kept, so match by sequence number.
		want := audittest.Event(m.Event.Seq)
		wantSev, wantType := 4, want.Type
		if want.Seq == 1 {
			wantSev, wantType = 6, audit.LoginSuccess
		}
		if m.Severity != wantSev || m.AppName != "mcias" || m.ProcID != fmt.Sprint(os.Getpid()) ||
			m.MsgID != string(wantType) || m.Hostname != host || m.SDID != "mcias@32473" ||
			m.Params["id"] != want.ID || m.Params["seq"] != fmt.Sprint(want.Seq) ||
			!m.Timestamp.Equal(want.Time.Truncate(1000)) || !m.Event.Time.Equal(want.Time) {
			t.Errorf("message %d: %+v", i, m)
		}
		if !strings.HasPrefix(l, fmt.Sprintf("<%d>1 ", m.Facility*8+m.Severity)) {
			t.Errorf("message %d: %s", i, l)
		}
	}
	// Both transports used the same facility default? tcp said local3.
	facilities := map[int]bool{}
	for _, l := range lines {
		m, _ := rsyslogtest.Parse(l)
		facilities[m.Facility] = true
	}
	if !facilities[19] || !facilities[4] {
		t.Errorf("facilities %v, want local3 (19) over tcp and the default auth (4) over unix", facilities)
	}
}

// TestAttackerText: values a client or an admin chose can hold newlines,
// NUL, JSON, SD delimiters and unicode line separators; each event is
// still exactly one message whose fields decode to the original text.
func TestAttackerText(t *testing.T) {
	d := rsyslogtest.Start(t)
	nasty := []string{
		"x\n{\"type\":\"login_success\",\"id\":\"forged\"}",
		"x\r\n<13>1 2026-01-01T00:00:00Z h mcias 1 login_success - forged",
		`quote" backslash\ bracket] [mcias@32473 id="forged"]`,
		"line\u2028sep\u2029para\u0085nel",
		"nul\x00byte\x1b[31m",
		"\xff\xfe invalid utf-8",
		"emoji 🦀 and é",
	}
	for tr, uri := range transports(d) {
		s := open(t, uri)
		var evs []audit.Event
		for i, v := range nasty {
			e := audittest.Event(int64(i + 1))
			e.ID = fmt.Sprintf("%s] id=\"%d\\", e.ID, i) // even the ID is escaped
			e.IP, e.RequestID = v, v
			e.Details = map[string]string{"username": v, v: "key"}
			evs = append(evs, e)
		}
		if err := s.Deliver(t.Context(), evs); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		s.Close(t.Context())
	}
	lines := d.SettledLines()
	if len(lines) != 2*len(nasty) {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), 2*len(nasty), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		m, err := rsyslogtest.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		v := nasty[m.Event.Seq-1] // order across the two transports is not kept
		// JSON carries each invalid UTF-8 byte as U+FFFD; everything else exactly.
		want := string([]rune(v))
		if m.Event.Details["username"] != want || m.Event.IP != want || m.Event.Details[want] != "key" {
			t.Errorf("line %d: decoded %q, want %q", i, m.Event.Details["username"], want)
		}
		if m.Params["id"] != m.Event.ID {
			t.Errorf("line %d: SD id %q != event id %q", i, m.Params["id"], m.Event.ID)
		}
	}
}

// TestDaemonDown: with no daemon Deliver fails with ErrUnavailable; once
// it is back the next Deliver succeeds.
func TestDaemonDown(t *testing.T) {
	d := rsyslogtest.Start(t)
	for tr, uri := range transports(d) {
		t.Run("transport="+tr, func(t *testing.T) {
			s := open(t, uri)
			defer s.Close(t.Context())
			if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(1)}); err != nil {
				t.Fatal(err)
			}
			d.Kill()
			if tr == "unix" {
				// The socket file stays behind a killed daemon; nobody reads it.
				var err error
				for range 3 {
					if err = s.Deliver(t.Context(), []audit.Event{audittest.Event(2)}); err != nil {
						break
					}
				}
				if !errors.Is(err, sdk.ErrUnavailable) {
					t.Fatalf("Deliver with the daemon dead = %v, want ErrUnavailable", err)
				}
			} else if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(2)}); !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("Deliver with the daemon dead = %v, want ErrUnavailable", err)
			}
			d.Restart()
			if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(2), audittest.Event(3)}); err != nil {
				t.Fatalf("Deliver after the restart = %v", err)
			}
		})
	}
	got := map[string]bool{}
	for _, e := range rsyslogtest.Events(t, d.SettledLines()) {
		got[e.ID] = true
	}
	for i := int64(1); i <= 3; i++ {
		if !got[audittest.Event(i).ID] {
			t.Errorf("event %d never reached rsyslog", i)
		}
	}
}

// TestDaemonKilledWithUnreadMessages: messages the kernel accepted but
// the daemon never read are sent again after the reconnect.
func TestDaemonKilledWithUnreadMessages(t *testing.T) {
	d := rsyslogtest.Start(t)
	s, err := Open(t.Context(), transports(d)["tcp"], slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(1)}); err != nil {
		t.Fatal(err)
	}
	d.SettledLines()
	// Stopped, the daemon reads nothing; what follows sits in socket buffers.
	if err := d.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i <= 50; i++ {
		if err := s.Deliver(t.Context(), []audit.Event{audittest.Event(i)}); err != nil {
			t.Fatal(err)
		}
	}
	d.Kill()
	d.Restart()
	for range 3 { // the first write may still succeed into the dead connection
		if err = s.Deliver(t.Context(), []audit.Event{audittest.Event(51)}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range rsyslogtest.Events(t, d.SettledLines()) {
		got[e.ID] = true
	}
	for i := int64(1); i <= 51; i++ {
		if !got[audittest.Event(i).ID] {
			t.Fatalf("event %d lost when the daemon was killed:\n%s\n%s", i, strings.Join(d.Lines(), "\n"), d.Log())
		}
	}
}

func TestParseURI(t *testing.T) {
	good := map[string][3]any{
		"syslog+tcp://127.0.0.1:514":              {"tcp", "127.0.0.1:514", 4},
		"syslog+tcp://[::1]:6514?facility=local7": {"tcp", "[::1]:6514", 23},
		"syslog+unix:///dev/log?facility=daemon":  {"unixgram", "/dev/log", 3},
	}
	for uri, want := range good {
		n, a, f, err := parseURI(uri)
		if err != nil || n != want[0] || a != want[1] || f != want[2] {
			t.Errorf("parseURI(%q) = %s %s %d %v, want %v", uri, n, a, f, err, want)
		}
	}
	for _, uri := range []string{
		"syslog://127.0.0.1:514", "syslog+udp://127.0.0.1:514", "syslog+tcp://127.0.0.1",
		"syslog+tcp://127.0.0.1:514/x", "syslog+tcp://127.0.0.1:514?facility=nope",
		"syslog+tcp://127.0.0.1:514?facility=auth&facility=user", "syslog+tcp://127.0.0.1:514?tls=1",
		"syslog+unix://host/dev/log", "syslog+unix:rel/sock", "syslog+tcp://u:p@127.0.0.1:514",
	} {
		if _, _, _, err := parseURI(uri); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("parseURI(%q) = %v, want ErrInvalidArgument", uri, err)
		}
	}
}

func TestOversizedEvent(t *testing.T) {
	s := open(t, "syslog+tcp://127.0.0.1:1")
	e := audittest.Event(1)
	e.Details = map[string]string{"big": strings.Repeat("x", maxMessage)}
	if err := s.Deliver(t.Context(), []audit.Event{e}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Deliver of an oversized event = %v", err)
	}
}
