package ctl

import (
	"context"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

// runOffline runs the CLI against a server address nothing listens on;
// the cases here must fail (or succeed) before any request.
func runOffline(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := run(t.Context(), append([]string{"-server", "https://127.0.0.1:1"}, args...), System{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		TermFD: -1,
	})
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	tok := map[string]string{"MCIAS_TOKEN": "t"}
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"case=no command", nil, nil, exitUsage, "usage: mciasctl [global flags]"},
		{"case=unknown global flag", nil, []string{"-nope", "health"}, exitUsage, "mciasctl: flag provided but not defined: -nope"},
		{"case=unknown command", nil, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"case=missing subcommand", nil, []string{"account"}, exitUsage, "missing subcommand; one of:\n  mciasctl account list"},
		{"case=unknown subcommand", nil, []string{"role", "add"}, exitUsage, `unknown subcommand "role add"`},
		{"case=login without username", nil, []string{"auth", "login"}, exitUsage, "-username is required\nusage: mciasctl auth login -username U [-totp CODE]\n"},
		{"case=login stray argument", nil, []string{"auth", "login", "-username", "a", "extra"}, exitUsage, `unexpected argument "extra"`},
		{"case=unknown subcommand flag", tok, []string{"account", "list", "-colour"}, exitUsage, "flag provided but not defined: -colour"},
		{"case=global flag after the command", tok, []string{"account", "list", "-json"}, exitUsage, "-json is a global flag: put it before the command (mciasctl -json account list ...)"},
		{"case=bad type", tok, []string{"account", "list", "-type", "robot"}, exitUsage, `-type must be one of human, system, not "robot"`},
		{"case=bad status filter", tok, []string{"account", "list", "-status", "gone"}, exitUsage, "-status must be one of active, inactive, deleted"},
		{"case=limit too big", tok, []string{"account", "list", "-limit", "501"}, exitUsage, "-limit must be between 1 and 500, not 501"},
		{"case=limit negative", tok, []string{"audit", "list", "-limit", "-1"}, exitUsage, "-limit must be between 1 and 500"},
		{"case=limit not a number", tok, []string{"audit", "list", "-limit", "ten"}, exitUsage, `invalid value "ten" for flag -limit`},
		{"case=bad since", tok, []string{"audit", "list", "-since", "yesterday"}, exitUsage, "-since must be an RFC 3339 time"},
		{"case=create without type", tok, []string{"account", "create", "-username", "a"}, exitUsage, "-type is required"},
		{"case=no-password for a human", tok, []string{"account", "create", "-username", "a", "-type", "human", "-no-password"}, exitUsage, "-no-password is only for system accounts"},
		{"case=get without id", tok, []string{"account", "get"}, exitUsage, "missing argument\nusage: mciasctl account get ID"},
		{"case=get two ids", tok, []string{"account", "get", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{"case=update without status", tok, []string{"account", "update", "id"}, exitUsage, "-status is required"},
		{"case=update to deleted", tok, []string{"account", "update", "id", "-status", "deleted"}, exitUsage, "-status must be one of active, inactive"},
		{"case=role set without roles", tok, []string{"role", "set", "id"}, exitUsage, "missing argument"},
		{"case=pgcreds bad port", tok, []string{"pgcreds", "set", "id", "-host", "h", "-database", "d", "-username", "u", "-port", "70000"}, exitUsage, "-port must be between 1 and 65535"},
		{"case=pgcreds missing host", tok, []string{"pgcreds", "set", "id", "-database", "d", "-username", "u"}, exitUsage, "-host is required"},
		{"case=issue without account", tok, []string{"token", "issue"}, exitUsage, "-account is required"},
		{"case=issue sub-second ttl", tok, []string{"token", "issue", "-account", "a", "-ttl", "1500ms"}, exitUsage, "-ttl must be whole seconds"},
		{"case=issue tiny ttl", tok, []string{"token", "issue", "-account", "a", "-ttl", "1ms"}, exitUsage, "-ttl must be at least 1s"},
		{"case=validate without token", nil, []string{"token", "validate"}, exitUsage, "missing argument"},
		{"case=totp confirm without code", tok, []string{"auth", "totp-confirm"}, exitUsage, "-code is required"},
		{"case=zero timeout", nil, []string{"-timeout", "0s", "health"}, exitUsage, "-timeout must be positive"},
		{"case=plain http to a remote host", nil, []string{"-server", "http://mcias.example.net", "health"}, exitUsage, "refusing plain http"},
		{"case=no token for me", nil, []string{"auth", "me"}, exitAuth, "mciasctl: no token: set MCIAS_TOKEN or pass -token"},
		{"case=no token, no password prompt", nil, []string{"auth", "password"}, exitAuth, "no token"},
		{"case=verify page too big", tok, []string{"audit", "verify", "-page", "501"}, exitUsage, "-page must be from 1 to 500"},
		{"case=verify bad from", tok, []string{"audit", "verify", "-from", "12"}, exitUsage, "-from must be SEQ:HASH"},
		{"case=verify from short hash", tok, []string{"audit", "verify", "-from", "12:abcd"}, exitUsage, "is not a hex chain hash"},
		{"case=verify stray argument", tok, []string{"audit", "verify", "x"}, exitUsage, `unexpected argument "x"`},
		{"case=verify without token", nil, []string{"audit", "verify"}, exitAuth, "no token"},
		{"case=no token for pgcreds set", nil, []string{"pgcreds", "set", "id", "-host", "h", "-database", "d", "-username", "u"}, exitAuth, "no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runOffline(t, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-json", "help"}} {
		t.Run("case="+strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runOffline(t, nil, args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d stderr %q", code, stderr)
			}
			for _, c := range commands() {
				if !strings.Contains(stdout, "  "+strings.TrimSpace(c.name+" "+c.synopsis)+"\n") {
					t.Errorf("usage does not list %q", c.name)
				}
			}
			for _, want := range []string{"-server URL", "-token TOKEN", "-ca FILE", "-json", "-timeout DUR",
				"MCIAS_SERVER", "MCIAS_TOKEN", "MCIAS_CA", "MCIAS_PASSWORD", "MCIAS_NEW_PASSWORD", "MCIAS_PG_PASSWORD",
				"0  success", "1  the operation failed", "2  usage error", "3  could not reach the server", "4  authentication needed", "5  audit verify"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("usage lacks %q", want)
				}
			}
		})
	}

	t.Run("case=subcommand -h", func(t *testing.T) {
		code, stdout, stderr := runOffline(t, nil, "account", "list", "-h")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
		for _, want := range []string{"usage: mciasctl account list [-type human|system]", "-limit int", "-cursor string"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout %q lacks %q", stdout, want)
			}
		}
	})
}

func TestCommandTable(t *testing.T) {
	// The names the README and the lead's end-to-end test rely on.
	want := []string{
		"auth login", "auth logout", "auth renew", "auth me", "auth password", "auth totp-enroll", "auth totp-confirm",
		"account list", "account create", "account get", "account update", "account delete", "account set-password", "account remove-totp",
		"role get", "role set", "pgcreds get", "pgcreds set",
		"token issue", "token revoke", "token validate", "key list", "key rotate",
		"audit list", "audit verify", "health", "ready", "jwks", "pubkey",
	}
	var got []string
	for _, c := range commands() {
		got = append(got, c.name)
		if c.run == nil || c.help == "" {
			t.Errorf("%q lacks run or help", c.name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("commands:\n%q\nwant:\n%q", got, want)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos []string
		wantS   string
		wantB   bool
		wantErr string
	}{
		{name: "case=empty"},
		{name: "case=flags only", args: []string{"-s", "x", "-b"}, wantS: "x", wantB: true},
		{name: "case=positional first", args: []string{"id", "-s", "x"}, wantPos: []string{"id"}, wantS: "x"},
		{name: "case=mixed", args: []string{"-b", "id", "-s=x", "roles"}, wantPos: []string{"id", "roles"}, wantS: "x", wantB: true},
		{name: "case=empty positional", args: []string{"id", ""}, wantPos: []string{"id", ""}},
		{name: "case=dash is positional", args: []string{"-s", "a", "-"}, wantPos: []string{"-"}, wantS: "a"},
		{name: "case=double dash ends flags", args: []string{"id", "--", "-s", "x"}, wantPos: []string{"id", "-s", "x"}},
		{name: "case=unknown flag", args: []string{"id", "-z"}, wantErr: "flag provided but not defined: -z"},
		{name: "case=missing value", args: []string{"-s"}, wantErr: "flag needs an argument: -s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			s := fs.String("s", "", "")
			b := fs.Bool("b", false, "")
			pos, err := parseInterspersed(fs, tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || *s != tt.wantS || *b != tt.wantB {
				t.Errorf("pos %q s %q b %v; want %q %q %v", pos, *s, *b, tt.wantPos, tt.wantS, tt.wantB)
			}
		})
	}
}

func TestTTLSeconds(t *testing.T) {
	tests := []struct {
		in      time.Duration
		want    int64
		wantErr bool
	}{
		{0, 0, false},
		{time.Second, 1, false},
		{24 * time.Hour, 86400, false},
		{90 * 24 * time.Hour, 7776000, false},
		{-time.Hour, 0, true},
		{999 * time.Millisecond, 0, true},
		{1500 * time.Millisecond, 0, true},
	}
	for _, tt := range tests {
		t.Run("case="+tt.in.String(), func(t *testing.T) {
			got, err := ttlSeconds(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ttlSeconds(%s) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "2026-01-02T15:04:05Z", want: "2026-01-02T15:04:05Z"},
		{in: "2026-01-02T15:04:05+02:00", want: "2026-01-02T13:04:05Z"},
		{in: "2026-01-02T15:04:05.5Z", want: "2026-01-02T15:04:05.5Z"},
		{in: "24h", want: "2026-03-03T12:00:00Z"},
		{in: "90m", want: "2026-03-04T10:30:00Z"},
		{in: "-1h", wantErr: true},
		{in: "2026-01-02", wantErr: true},
		{in: "yesterday", wantErr: true},
	}
	for _, tt := range tests {
		t.Run("case="+tt.in, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSince(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseRoles(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"admin", []string{"admin"}},
		{"admin,ops", []string{"admin", "ops"}},
		{" admin , ops ,, ", []string{"admin", "ops"}},
		{",", []string{}},
	}
	for _, tt := range tests {
		t.Run("case="+tt.in, func(t *testing.T) {
			got := parseRoles(tt.in)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("parseRoles(%q) = %#v, want %#v (never nil: nil would encode as null)", tt.in, got, tt.want)
			}
		})
	}
}

// run is mciasctl: the REST flavor, which most tests here exercise
// against a fake server; grpc_test.go runs the gRPC flavor against the
// real one.
func run(ctx context.Context, args []string, sys System) int {
	return Run(ctx, REST, args, sys)
}
