package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

var accountCommands = []command{
	{name: "account list", synopsis: "[-type human|system] [-status active|inactive|deleted] [-role R] [-limit 1..500] [-cursor C]", help: "list accounts (admin)", run: accountList},
	{name: "account create", synopsis: "-username U -type human|system [-no-password]", help: "create an account; password from $MCIAS_NEW_PASSWORD, prompt or stdin", run: accountCreate},
	{name: "account get", synopsis: "ID", help: "show an account", run: accountGet},
	{name: "account update", synopsis: "ID -status active|inactive", help: "enable or disable an account (disable revokes its tokens)", run: accountUpdate},
	{name: "account delete", synopsis: "ID", help: "delete an account; all its tokens die", run: accountDelete},
	{name: "account set-password", synopsis: "ID", help: "set an account's password ($MCIAS_NEW_PASSWORD, prompt or stdin); all its tokens die", run: accountSetPassword},
	{name: "account remove-totp", synopsis: "ID", help: "remove an account's TOTP factor", run: accountRemoveTOTP},
	{name: "role get", synopsis: "ID", help: "show an account's roles, comma-separated", run: roleGet},
	{name: "role set", synopsis: "ID ROLE[,ROLE...]", help: `replace an account's roles ("" clears them)`, run: roleSet},
	{name: "pgcreds get", synopsis: "ID", help: "show an account's Postgres credentials, password included", run: pgcredsGet},
	{name: "pgcreds set", synopsis: "ID -host H -port P -database D -username U", help: "store Postgres credentials; password from $MCIAS_PG_PASSWORD, prompt or stdin", run: pgcredsSet},
}

func accountPath(id string, sub ...string) string {
	p := "/v1/accounts/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

// addLimit validates -limit (0 = server default) and adds it to q.
func addLimit(c *command, q url.Values, limit int) error {
	if limit == 0 {
		return nil
	}
	if limit < 1 || limit > 500 {
		return &usageError{msg: fmt.Sprintf("-limit must be between 1 and 500, not %d", limit), cmd: c}
	}
	q.Set("limit", strconv.Itoa(limit))
	return nil
}

func setIf(q url.Values, key, value string) {
	if value != "" {
		q.Set(key, value)
	}
}

func accountList(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	typ := fs.String("type", "", "only accounts of this type: human or system")
	status := fs.String("status", "", "only accounts in this status: active, inactive or deleted")
	role := fs.String("role", "", "only accounts holding this role")
	limit := fs.Int("limit", 0, "page size, 1..500 (server default 100)")
	cursor := fs.String("cursor", "", "next_cursor of the previous page")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if err := oneOf(c, "type", *typ, "human", "system"); err != nil {
		return err
	}
	if err := oneOf(c, "status", *status, "active", "inactive", "deleted"); err != nil {
		return err
	}
	q := url.Values{}
	setIf(q, "type", *typ)
	setIf(q, "status", *status)
	setIf(q, "role", *role)
	setIf(q, "cursor", *cursor)
	if err := addLimit(c, q, *limit); err != nil {
		return err
	}
	var page accountPage
	raw, err := a.do(ctx, Request{Method: http.MethodGet, Path: "/v1/accounts", Query: q, Auth: true}, &page)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printTable(a.sys.Stdout, accountHeader, accountRows(page.Accounts))
	nextPage(a, "account list", page.NextCursor)
	return nil
}

// nextPage tells a person how to fetch the next page, on stderr so that
// stdout stays a clean table.
func nextPage(a *app, cmd, cursor string) {
	if cursor != "" {
		fmt.Fprintf(a.sys.Stderr, "more results: mciasctl %s -cursor %s\n", cmd, clean(cursor))
	}
}

type createAccountRequest struct {
	Username    string `json:"username"`
	AccountType string `json:"account_type"`
	Password    string `json:"password,omitempty"`
}

func accountCreate(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	username := fs.String("username", "", "the new account's name (canonicalised by the server)")
	typ := fs.String("type", "", "human or system")
	noPassword := fs.Bool("no-password", false, "system accounts only: create without a password (they use service tokens)")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if err := needFlag(c, "username", *username); err != nil {
		return err
	}
	if err := needFlag(c, "type", *typ); err != nil {
		return err
	}
	if err := oneOf(c, "type", *typ, "human", "system"); err != nil {
		return err
	}
	if *noPassword && *typ != "system" {
		return &usageError{msg: "-no-password is only for system accounts; a human account needs a password", cmd: c}
	}
	req := createAccountRequest{Username: *username, AccountType: *typ}
	if !*noPassword {
		if a.token == "" {
			return errNoToken // before prompting
		}
		pw, err := a.secret("MCIAS_NEW_PASSWORD", "New account's password: ", true)
		if err != nil {
			return err
		}
		req.Password = pw
	}
	return getAccountLike(ctx, a, Request{Method: http.MethodPost, Path: "/v1/accounts", Body: req, Auth: true})
}

func accountGet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return getAccountLike(ctx, a, Request{Method: http.MethodGet, Path: accountPath(pos[0]), Auth: true})
}

func accountUpdate(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	status := fs.String("status", "", "active or inactive")
	pos, err := a.parse(c, fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := needFlag(c, "status", *status); err != nil {
		return err
	}
	if err := oneOf(c, "status", *status, "active", "inactive"); err != nil {
		return err
	}
	body := map[string]string{"status": *status}
	return getAccountLike(ctx, a, Request{Method: http.MethodPatch, Path: accountPath(pos[0]), Body: body, Auth: true})
}

func accountDelete(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	raw, err := a.do(ctx, Request{Method: http.MethodDelete, Path: accountPath(pos[0]), Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "account "+pos[0]+" deleted; its tokens are revoked")
}

func accountSetPassword(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	if a.token == "" {
		return errNoToken
	}
	pw, err := a.secret("MCIAS_NEW_PASSWORD", "New password: ", true)
	if err != nil {
		return err
	}
	raw, err := a.do(ctx, Request{Method: http.MethodPut, Path: accountPath(pos[0], "password"), Body: map[string]string{"password": pw}, Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "password set; every token of the account is revoked")
}

func accountRemoveTOTP(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	raw, err := a.do(ctx, Request{Method: http.MethodDelete, Path: accountPath(pos[0], "totp"), Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "TOTP removed from account "+pos[0])
}

func roleGet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return doRoles(ctx, a, Request{Method: http.MethodGet, Path: accountPath(pos[0], "roles"), Auth: true})
}

// parseRoles splits "a, b,,c" into [a b c]; "" gives an empty (not nil)
// list so the body is {"roles":[]}, which clears.
func parseRoles(s string) []string {
	roles := []string{}
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	return roles
}

func roleSet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 2, 2)
	if err != nil {
		return err
	}
	body := rolesBody{Roles: parseRoles(pos[1])}
	return doRoles(ctx, a, Request{Method: http.MethodPut, Path: accountPath(pos[0], "roles"), Body: body, Auth: true})
}

func doRoles(ctx context.Context, a *app, req Request) error {
	var r rolesBody
	raw, err := a.do(ctx, req, &r)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	fmt.Fprintln(a.sys.Stdout, formatRoles(r.Roles))
	return nil
}

func formatRoles(roles []string) string {
	if len(roles) == 0 {
		return "(none)"
	}
	return clean(joinRoles(roles))
}

func pgcredsGet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	var pc pgCreds
	raw, err := a.do(ctx, Request{Method: http.MethodGet, Path: accountPath(pos[0], "pgcreds"), Auth: true}, &pc)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printFields(a.sys.Stdout, [][2]string{
		{"host", pc.Host},
		{"port", strconv.Itoa(pc.Port)},
		{"database", pc.Database},
		{"username", pc.Username},
		{"password", pc.Password},
	})
	return nil
}

func pgcredsSet(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	host := fs.String("host", "", "Postgres host")
	port := fs.Int("port", 5432, "Postgres port")
	database := fs.String("database", "", "database name")
	username := fs.String("username", "", "Postgres role name")
	pos, err := a.parse(c, fs, args, 1, 1)
	if err != nil {
		return err
	}
	for _, f := range [][2]string{{"host", *host}, {"database", *database}, {"username", *username}} {
		if err := needFlag(c, f[0], f[1]); err != nil {
			return err
		}
	}
	if *port < 1 || *port > 65535 {
		return &usageError{msg: fmt.Sprintf("-port must be between 1 and 65535, not %d", *port), cmd: c}
	}
	if a.token == "" {
		return errNoToken
	}
	pw, err := a.secret("MCIAS_PG_PASSWORD", "Postgres password: ", false)
	if err != nil {
		return err
	}
	body := pgCreds{Host: *host, Port: *port, Database: *database, Username: *username, Password: pw}
	raw, err := a.do(ctx, Request{Method: http.MethodPut, Path: accountPath(pos[0], "pgcreds"), Body: body, Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "Postgres credentials stored for account "+pos[0])
}
