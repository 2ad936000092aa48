package ctl

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

var errNotReady = errors.New("server is not ready")

var miscCommands = []command{
	{name: "audit list", synopsis: "[-type T] [-account ID] [-since RFC3339|DURATION] [-limit 1..500] [-cursor C]", help: "list audit events, newest first (admin)", run: auditList},
	{name: "audit verify", synopsis: "[-keys FILE] [-from SEQ:HASH] [-page 1..500]", help: "check the audit chain and its signed checkpoints (admin); exit 5 naming the first broken link", run: auditVerify},
	{name: "health", synopsis: "", help: "is the server process alive", run: health},
	{name: "ready", synopsis: "", help: "are all backends up; exit 1 when not", run: ready},
	{name: "jwks", synopsis: "", help: "list the keys verifiers should accept (/.well-known/jwks.json)", run: showJWKS},
	{name: "pubkey", synopsis: "", help: "show the current signing key (/v1/keys/public)", run: showPublicKey},
}

// parseSince accepts an RFC 3339 time or a duration meaning "that long
// ago", and returns RFC 3339 in UTC for the query.
func parseSince(s string, now time.Time) (string, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC().Format(time.RFC3339), nil
	}
	return "", fmt.Errorf("-since must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (24h), not %q", s)
}

func auditList(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	typ := fs.String("type", "", "only events of this type (login_success, account_create, ...)")
	accountID := fs.String("account", "", "only events about this account id")
	since := fs.String("since", "", "only events at or after this RFC 3339 time, or this long ago (24h)")
	limit := fs.Int("limit", 0, "page size, 1..500 (server default 100)")
	cursor := fs.String("cursor", "", "next_cursor of the previous page")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	q := auditQuery{Type: *typ, AccountID: *accountID, Cursor: *cursor, Limit: *limit}
	if *since != "" {
		s, err := parseSince(*since, time.Now())
		if err != nil {
			return &usageError{msg: err.Error(), cmd: c}
		}
		q.Since = s
	}
	if err := checkLimit(c, *limit); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	page, raw, err := api.ListAudit(ctx, q)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printTable(a.sys.Stdout, auditHeader, auditRows(page.Events))
	nextPage(a, "audit list", page.NextCursor)
	return nil
}

func health(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	h, raw, err := api.Health(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	fmt.Fprintln(a.sys.Stdout, clean(h.Status))
	return nil
}

// ready prints the readiness report whether the server is ready or not,
// and fails when it is not.
func ready(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	r, raw, err := api.Ready(ctx)
	if err != nil {
		return err
	}
	notReady := r.Status != "ready"
	if a.json {
		printRaw(a.sys.Stdout, raw)
	} else {
		fmt.Fprintln(a.sys.Stdout, clean(r.Status))
		header, rows := readyTable(r)
		printTable(a.sys.Stdout, header, rows)
	}
	if notReady {
		down := []string{}
		for _, role := range slices.Sorted(maps.Keys(r.Backends)) {
			if r.Backends[role].holdsDown() {
				down = append(down, role)
			}
		}
		return fmt.Errorf("%w; down: %s (unavailable)", errNotReady, strings.Join(down, ", "))
	}
	return nil
}

func showJWKS(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	set, raw, err := api.JWKS(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printTable(a.sys.Stdout, jwkHeader, jwkRows(set.Keys))
	return nil
}

func showPublicKey(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	k, raw, err := api.PublicKey(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printTable(a.sys.Stdout, jwkHeader, jwkRows([]jwk{k}))
	return nil
}

var jwkHeader = []string{"KID", "KTY", "CRV", "ALG", "USE", "X"}

func jwkRows(keys []jwk) [][]string {
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, []string{k.Kid, k.Kty, k.Crv, k.Alg, k.Use, k.X})
	}
	return rows
}
