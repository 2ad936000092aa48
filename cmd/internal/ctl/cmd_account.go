package ctl

import (
	"context"
	"fmt"
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

// checkLimit validates -limit (0 = server default).
func checkLimit(c *command, limit int) error {
	if limit != 0 && (limit < 1 || limit > 500) {
		return &usageError{msg: fmt.Sprintf("-limit must be between 1 and 500, not %d", limit), cmd: c}
	}
	return nil
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
	if err := checkLimit(c, *limit); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	page, raw, err := api.ListAccounts(ctx, accountQuery{Type: *typ, Status: *status, Role: *role, Cursor: *cursor, Limit: *limit})
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
		fmt.Fprintf(a.sys.Stderr, "more results: %s %s -cursor %s\n", a.prog(), cmd, clean(cursor))
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
	return showAccount(a, func(api API) (account, Raw, error) { return api.CreateAccount(ctx, req) })
}

func accountGet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return showAccount(a, func(api API) (account, Raw, error) { return api.GetAccount(ctx, pos[0]) })
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
	return showAccount(a, func(api API) (account, Raw, error) { return api.UpdateAccount(ctx, pos[0], *status) })
}

func accountDelete(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return done(a, "account "+pos[0]+" deleted; its tokens are revoked", func(api API) (Raw, error) { return api.DeleteAccount(ctx, pos[0]) })
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
	return done(a, "password set; every token of the account is revoked", func(api API) (Raw, error) { return api.SetPassword(ctx, pos[0], pw) })
}

func accountRemoveTOTP(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return done(a, "TOTP removed from account "+pos[0], func(api API) (Raw, error) { return api.RemoveTOTP(ctx, pos[0]) })
}

func roleGet(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	return doRoles(a, func(api API) (rolesBody, Raw, error) { return api.GetRoles(ctx, pos[0]) })
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
	return doRoles(a, func(api API) (rolesBody, Raw, error) { return api.SetRoles(ctx, pos[0], parseRoles(pos[1])) })
}

func doRoles(a *app, call func(API) (rolesBody, Raw, error)) error {
	api, err := a.api()
	if err != nil {
		return err
	}
	r, raw, err := call(api)
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
	api, err := a.api()
	if err != nil {
		return err
	}
	pc, raw, err := api.GetPGCreds(ctx, pos[0])
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
	pc := pgCreds{Host: *host, Port: *port, Database: *database, Username: *username, Password: pw}
	return done(a, "Postgres credentials stored for account "+pos[0], func(api API) (Raw, error) { return api.SetPGCreds(ctx, pos[0], pc) })
}
