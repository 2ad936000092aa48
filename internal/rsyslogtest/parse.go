package rsyslogtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
)

// Message is one parsed RFC 5424 message as the MCIAS syslog sink writes
// it.
type Message struct {
	Facility, Severity int
	Timestamp          time.Time
	Hostname, AppName  string
	ProcID, MsgID      string
	SDID               string
	Params             map[string]string // unescaped SD-PARAM values
	Msg                string
	Event              audit.Event // Msg decoded
}

// Parse parses line strictly: the RFC 5424 header, exactly one SD
// element, and a MSG that is one audit.Record JSON object, in pure ASCII
// with no field unknown.
func Parse(line string) (Message, error) {
	var m Message
	bad := func(f string, a ...any) (Message, error) {
		return Message{}, fmt.Errorf("syslog message %q: %s", line, fmt.Sprintf(f, a...))
	}
	for i := 0; i < len(line); i++ {
		if line[i] < 0x20 || line[i] > 0x7e {
			return bad("byte %#x at %d is not printable ASCII", line[i], i)
		}
	}
	rest, ok := strings.CutPrefix(line, "<")
	if !ok {
		return bad("no PRI")
	}
	pri, rest, ok := strings.Cut(rest, ">")
	p, err := strconv.Atoi(pri)
	if !ok || err != nil || p < 0 || p > 191 {
		return bad("bad PRI")
	}
	m.Facility, m.Severity = p/8, p%8
	f := strings.SplitN(rest, " ", 7)
	if len(f) != 7 || f[0] != "1" {
		return bad("header is not VERSION 1 and six fields")
	}
	if m.Timestamp, err = time.Parse(time.RFC3339Nano, f[1]); err != nil {
		return bad("timestamp: %v", err)
	}
	m.Hostname, m.AppName, m.ProcID, m.MsgID = f[2], f[3], f[4], f[5]
	rest = f[6]
	// [SD-ID SP name="value" ...]
	if !strings.HasPrefix(rest, "[") {
		return bad("no structured data")
	}
	rest = rest[1:]
	id, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return bad("SD element has no parameters")
	}
	m.SDID, m.Params = id, map[string]string{}
	for {
		name, after, ok := strings.Cut(rest, "=\"")
		if !ok {
			return bad("SD-PARAM without a value")
		}
		var v strings.Builder
		i := 0
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' && i+1 < len(after) && strings.IndexByte(`"\]`, after[i+1]) >= 0 {
				i++
			} else if after[i] == ']' {
				return bad("unescaped ] in a PARAM-VALUE")
			}
			v.WriteByte(after[i])
		}
		if i == len(after) {
			return bad("unterminated PARAM-VALUE")
		}
		m.Params[name] = v.String()
		rest = after[i+1:]
		if r, ok := strings.CutPrefix(rest, "] "); ok {
			rest = r
			break
		}
		if r, ok := strings.CutPrefix(rest, " "); ok {
			rest = r
			continue
		}
		return bad("SD element not closed")
	}
	m.Msg = rest
	var r audit.Record
	dec := json.NewDecoder(bytes.NewReader([]byte(rest)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return bad("MSG: %v", err)
	}
	if dec.More() {
		return bad("MSG holds more than one JSON value")
	}
	m.Event = r.Event()
	return m, nil
}

// Events parses lines and returns their events in order; it fails the
// test on a line that does not parse.
func Events(t interface {
	Helper()
	Fatal(...any)
}, lines []string) []audit.Event {
	t.Helper()
	out := make([]audit.Event, 0, len(lines))
	for _, l := range lines {
		m, err := Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Event)
	}
	return out
}
