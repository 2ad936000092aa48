package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Record is the JSON form of an event that the builtin sinks write (one
// line of the file sink, the MSG of a syslog message, an element of a
// webhook batch) and that receivers parse:
//
//	{"id":..,"seq":..,"time":..,"type":..,"actor_id":..,"account_id":..,"ip":..,"request_id":..,"outcome":..,"details":{..}}
//
// time is RFC 3339 in UTC with nanoseconds; actor_id and account_id are
// omitted when empty; details is always an object. The chain hashes are
// not part of it: a verifier reads them from storage. Sinks encode it
// with MarshalRecord.
type Record struct {
	ID        string            `json:"id"`
	Seq       int64             `json:"seq"`
	Time      time.Time         `json:"time"`
	Type      Type              `json:"type"`
	ActorID   string            `json:"actor_id,omitempty"`
	AccountID string            `json:"account_id,omitempty"`
	IP        string            `json:"ip"`
	RequestID string            `json:"request_id"`
	Outcome   Outcome           `json:"outcome"`
	Details   map[string]string `json:"details"`
}

// NewRecord converts an event to its JSON form.
func NewRecord(e Event) Record {
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	return Record{
		ID: e.ID, Seq: e.Seq, Time: e.Time.UTC(), Type: e.Type, ActorID: e.ActorID,
		AccountID: e.AccountID, IP: e.IP, RequestID: e.RequestID, Outcome: e.Outcome, Details: d,
	}
}

// Event converts a record back to an event.
func (r Record) Event() Event {
	return Event{
		ID: r.ID, Seq: r.Seq, Time: r.Time, Type: r.Type, ActorID: r.ActorID,
		AccountID: r.AccountID, IP: r.IP, RequestID: r.RequestID, Outcome: r.Outcome, Details: r.Details,
	}
}

// MarshalRecord encodes e's Record as one line of JSON in pure ASCII
// (no trailing newline). encoding/json already escapes control
// characters, U+2028 and U+2029; MarshalRecord \u-escapes every other
// non-ASCII character too (NEL U+0085 and the other C1 controls, which
// Unicode-aware line readers such as Python's splitlines break on, and
// anything a downstream system might reinterpret), so no value in an
// event can end a line or forge a record in a line-based sink. Any JSON
// parser reads back the exact text.
func MarshalRecord(e Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(NewRecord(e)); err != nil {
		return nil, err
	}
	return EscapeNonASCII(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// EscapeNonASCII \u-escapes every non-ASCII character of a JSON text
// (as UTF-16, with surrogate pairs above U+FFFF). Outside strings JSON is
// ASCII, so the result is the same JSON value.
func EscapeNonASCII(js []byte) []byte {
	out := make([]byte, 0, len(js))
	for len(js) > 0 {
		r, n := utf8.DecodeRune(js)
		switch {
		case r < utf8.RuneSelf:
			out = append(out, js[0])
		case r > 0xffff:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default: // encoding/json wrote valid UTF-8; RuneError is U+FFFD itself
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		js = js[n:]
	}
	return out
}
