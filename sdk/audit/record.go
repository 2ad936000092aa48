package audit

import "time"

// Record is the JSON form of an event that the builtin sinks write (one
// line of the file sink, the MSG of a syslog message, an element of a
// webhook batch) and that receivers parse:
//
//	{"id":..,"seq":..,"time":..,"type":..,"actor_id":..,"account_id":..,"ip":..,"request_id":..,"outcome":..,"details":{..}}
//
// time is RFC 3339 in UTC with nanoseconds; actor_id and account_id are
// omitted when empty; details is always an object. The chain hashes are
// not part of it: a verifier reads them from storage.
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
