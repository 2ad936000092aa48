package ctl

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Wire shapes of DESIGN.md "REST JSON shapes" / api/openapi.yaml, as far
// as the CLI reads them. Unknown fields are ignored on purpose: a newer
// server may add some.

type account struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	AccountType string   `json:"account_type"`
	Status      string   `json:"status"`
	TOTPEnabled bool     `json:"totp_enabled"`
	Roles       []string `json:"roles"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
}

type accountPage struct {
	Accounts   []account `json:"accounts"`
	NextCursor string    `json:"next_cursor"`
}

type tokenResponse struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

type validation struct {
	Valid       bool     `json:"valid"`
	Sub         string   `json:"sub"`
	Username    string   `json:"username"`
	AccountType string   `json:"account_type"`
	Roles       []string `json:"roles"`
	ExpiresAt   string   `json:"expires_at"`
	JTI         string   `json:"jti"`
}

type rolesBody struct {
	Roles []string `json:"roles"`
}

type totpEnrollment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
}

type pgCreds struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type auditEvent struct {
	ID        string            `json:"id"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	ActorID   string            `json:"actor_id"`
	AccountID string            `json:"account_id"`
	IP        string            `json:"ip"`
	RequestID string            `json:"request_id"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
}

type auditPage struct {
	Events     []auditEvent `json:"events"`
	NextCursor string       `json:"next_cursor"`
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

type backendState struct {
	Name   string     `json:"name"`
	Status string     `json:"status"`
	Error  string     `json:"error"`
	Sink   *sinkState `json:"sink"`
}

// sinkState is an audit sink's delivery, as far as the table shows it.
type sinkState struct {
	State       string  `json:"state"`
	Required    bool    `json:"required"`
	LagEvents   int64   `json:"lag_events"`
	LagSeconds  float64 `json:"lag_seconds"`
	LagExceeded bool    `json:"lag_exceeded"`
}

// holdsDown: this backend is a reason the server is not ready (a sink
// only when required and beyond its bound).
func (b backendState) holdsDown() bool {
	return b.Status != "up" && (b.Sink == nil || b.Sink.LagExceeded)
}

type readiness struct {
	Status   string                  `json:"status"`
	Backends map[string]backendState `json:"backends"`
}

// printRaw writes the server's JSON unchanged, plus a final newline when
// the server sent none, so shells do not glue the prompt to it.
func printRaw(w io.Writer, raw []byte) {
	if len(raw) == 0 {
		return
	}
	w.Write(raw)
	if raw[len(raw)-1] != '\n' {
		io.WriteString(w, "\n")
	}
}

// printTable writes aligned columns; every cell is cleaned of terminal
// control characters, and empty cells show as "-" so columns stay
// parseable by awk.
func printTable(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if c == "" {
				c = "-"
			}
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, clean(strings.ReplaceAll(c, "\t", " ")))
		}
		io.WriteString(tw, "\n")
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	tw.Flush()
}

// printFields writes "key: value" lines with the values aligned.
func printFields(w io.Writer, fields [][2]string) {
	width := 0
	for _, f := range fields {
		width = max(width, len(f[0]))
	}
	for _, f := range fields {
		fmt.Fprintf(w, "%-*s %s\n", width+1, f[0]+":", clean(f[1]))
	}
}

func joinRoles(roles []string) string {
	return strings.Join(roles, ",")
}

func accountRows(accts []account) [][]string {
	rows := make([][]string, 0, len(accts))
	for _, ac := range accts {
		rows = append(rows, []string{ac.ID, ac.Username, ac.AccountType, ac.Status, yesNo(ac.TOTPEnabled), joinRoles(ac.Roles)})
	}
	return rows
}

var accountHeader = []string{"ID", "USERNAME", "TYPE", "STATUS", "TOTP", "ROLES"}

// rolesField is the roles value of a key: value listing.
func rolesField(roles []string) string {
	if len(roles) == 0 {
		return "(none)"
	}
	return joinRoles(roles)
}

func printAccount(w io.Writer, ac account) {
	printFields(w, [][2]string{
		{"id", ac.ID},
		{"username", ac.Username},
		{"type", ac.AccountType},
		{"status", ac.Status},
		{"totp", yesNo(ac.TOTPEnabled)},
		{"roles", rolesField(ac.Roles)},
		{"created", ac.CreatedAt},
		{"updated", ac.UpdatedAt},
	})
}

func printValidation(w io.Writer, v validation) {
	if !v.Valid {
		fmt.Fprintln(w, "invalid")
		return
	}
	fmt.Fprintln(w, "valid")
	printFields(w, [][2]string{
		{"sub", v.Sub},
		{"username", v.Username},
		{"type", v.AccountType},
		{"roles", rolesField(v.Roles)},
		{"expires", v.ExpiresAt},
		{"jti", v.JTI},
	})
}

func auditRows(events []auditEvent) [][]string {
	rows := make([][]string, 0, len(events))
	for _, e := range events {
		rows = append(rows, []string{e.Time, e.Type, e.Outcome, e.ActorID, e.AccountID, e.IP, formatDetails(e.Details)})
	}
	return rows
}

var auditHeader = []string{"TIME", "TYPE", "OUTCOME", "ACTOR", "ACCOUNT", "IP", "DETAILS"}

// formatDetails renders details as sorted k=v pairs, quoting values that
// contain spaces or '=' so the column stays one field per pair.
func formatDetails(d map[string]string) string {
	parts := make([]string, 0, len(d))
	for _, k := range slices.Sorted(maps.Keys(d)) {
		v := d[k]
		if v == "" || strings.ContainsAny(v, " =\"") {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// readyTable is the readiness report as a table; with audit sinks it has
// a DELIVERY column (state, events behind, age of the oldest of them).
func readyTable(r readiness) (header []string, rows [][]string) {
	header = []string{"BACKEND", "NAME", "STATUS", "ERROR"}
	sinks := false
	for _, b := range r.Backends {
		sinks = sinks || b.Sink != nil
	}
	if sinks {
		header = append(header, "DELIVERY")
	}
	for _, role := range slices.Sorted(maps.Keys(r.Backends)) {
		b := r.Backends[role]
		row := []string{role, b.Name, b.Status, b.Error}
		if sinks {
			d := ""
			if sk := b.Sink; sk != nil {
				d = fmt.Sprintf("%s, %d behind", sk.State, sk.LagEvents)
				if sk.LagSeconds > 0 {
					d += fmt.Sprintf(" (%s)", time.Duration(sk.LagSeconds*float64(time.Second)).Round(time.Second))
				}
				if sk.Required {
					d += ", required"
				}
				if sk.LagExceeded {
					d += ", beyond bound"
				}
			}
			row = append(row, d)
		}
		rows = append(rows, row)
	}
	return header, rows
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
