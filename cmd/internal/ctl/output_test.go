package ctl

import (
	"strings"
	"testing"
)

func TestPrintTable(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		rows   [][]string
		want   string
	}{
		{
			name: "case=header only", header: []string{"ID", "USERNAME"},
			want: "ID  USERNAME\n",
		},
		{
			name: "case=aligned with empty cells", header: []string{"ID", "ROLES", "X"},
			rows: [][]string{{"1", "", "a"}, {"12345", "admin,ops", ""}},
			want: "ID     ROLES      X\n1      -          a\n12345  admin,ops  -\n",
		},
		{
			name: "case=control characters and tabs", header: []string{"A", "B"},
			rows: [][]string{{"x\x1b[2Jy", "tab\there"}},
			want: "A       B\nx?[2Jy  tab here\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printTable(&b, tt.header, tt.rows)
			if b.String() != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestPrintAccount(t *testing.T) {
	tests := []struct {
		name string
		ac   account
		want string
	}{
		{
			name: "case=full",
			ac: account{ID: "id1", Username: "alice", AccountType: "human", Status: "active", TOTPEnabled: true,
				Roles: []string{"admin", "ops"}, CreatedAt: "2026-01-02T15:04:05Z", UpdatedAt: "2026-01-03T15:04:05Z"},
			want: "id:       id1\nusername: alice\ntype:     human\nstatus:   active\ntotp:     yes\nroles:    admin,ops\n" +
				"created:  2026-01-02T15:04:05Z\nupdated:  2026-01-03T15:04:05Z\n",
		},
		{
			name: "case=no roles",
			ac:   account{ID: "id2", Username: "deploy", AccountType: "system", Status: "inactive"},
			want: "id:       id2\nusername: deploy\ntype:     system\nstatus:   inactive\ntotp:     no\nroles:    (none)\ncreated:  \nupdated:  \n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printAccount(&b, tt.ac)
			if b.String() != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestPrintValidation(t *testing.T) {
	tests := []struct {
		name string
		v    validation
		want string
	}{
		{name: "case=invalid", v: validation{Valid: false, Sub: "ignored"}, want: "invalid\n"},
		{
			name: "case=valid",
			v:    validation{Valid: true, Sub: "s", Username: "u", AccountType: "system", Roles: []string{"r"}, ExpiresAt: "2026-01-02T15:04:05Z", JTI: "j"},
			want: "valid\nsub:      s\nusername: u\ntype:     system\nroles:    r\nexpires:  2026-01-02T15:04:05Z\njti:      j\n",
		},
		{
			// Like account get and auth me, not an empty value.
			name: "case=valid without roles",
			v:    validation{Valid: true, Sub: "s", Username: "u", AccountType: "human", Roles: []string{}, ExpiresAt: "2026-01-02T15:04:05Z", JTI: "j"},
			want: "valid\nsub:      s\nusername: u\ntype:     human\nroles:    (none)\nexpires:  2026-01-02T15:04:05Z\njti:      j\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printValidation(&b, tt.v)
			if b.String() != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestFormatDetails(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want string
	}{
		{"case=nil", nil, ""},
		{"case=sorted", map[string]string{"b": "2", "a": "1"}, "a=1 b=2"},
		{"case=quoted", map[string]string{"reason": "bad password", "eq": "a=b", "empty": ""}, `empty="" eq="a=b" reason="bad password"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatDetails(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"ünïcödé ok", "ünïcödé ok"},
		{"esc\x1b[31m", "esc?[31m"},
		{"bell\a", "bell?"},
		{"rtl\u202eoverride", "rtl?override"},
		{"zero\u200bwidth", "zero?width"},
		{"bad\xffutf8", "bad?utf8"},
		{"two\nlines", "two\nlines"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.want, func(t *testing.T) {
			if got := clean(tt.in); got != tt.want {
				t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPrintRaw(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{`{"a":1}`, "{\"a\":1}\n"},
		{"{\"a\":1}\n", "{\"a\":1}\n"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.in, func(t *testing.T) {
			var b strings.Builder
			printRaw(&b, []byte(tt.in))
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestAPIErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  APIError
		want string
	}{
		{"case=contract error", APIError{Status: 404, Code: "not_found", Message: "account not found"}, "account not found (not_found, HTTP 404)"},
		{"case=no code", APIError{Status: 502, Message: "server answered 502 Bad Gateway"}, "server answered 502 Bad Gateway (HTTP 502)"},
		{"case=retry after", APIError{Status: 429, Code: "rate_limited", Message: "too many requests", RetryAfter: "3"}, "too many requests (rate_limited, HTTP 429); retry after 3 s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"case=usage", usagef("x"), exitUsage},
		{"case=401", &APIError{Status: 401, Code: "unauthorized", Message: "m"}, exitAuth},
		{"case=403", &APIError{Status: 403, Code: "forbidden", Message: "m"}, exitAuth},
		{"case=404", &APIError{Status: 404, Code: "not_found", Message: "m"}, exitFailed},
		{"case=503", &APIError{Status: 503, Code: "unavailable", Message: "m"}, exitFailed},
		{"case=transport", &TransportError{Err: errNoToken}, exitUnreachable},
		{"case=no token", errNoToken, exitAuth},
		{"case=invalid token", &exitError{code: exitFailed}, exitFailed},
		{"case=help", errHelp, exitOK},
		{"case=other", errNotReady, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if got := report(&b, "mciasctl", tt.err); got != tt.want {
				t.Errorf("exit %d, want %d (printed %q)", got, tt.want, b.String())
			}
		})
	}
}
