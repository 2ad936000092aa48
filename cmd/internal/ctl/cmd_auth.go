package ctl

import (
	"context"
	"errors"
	"fmt"
)

var authCommands = []command{
	{name: "auth login", synopsis: "-username U [-totp CODE]", help: "log in; prints only the token ($MCIAS_PASSWORD, prompt or stdin)", run: authLogin},
	{name: "auth logout", synopsis: "", help: "revoke the current token", run: authLogout},
	{name: "auth renew", synopsis: "", help: "exchange the current token for a fresh one; prints only the new token", run: authRenew},
	{name: "auth me", synopsis: "", help: "show the account of the current token", run: authMe},
	{name: "auth password", synopsis: "", help: "change your password (prompts current and new); your other tokens die", run: authPassword},
	{name: "auth totp-enroll", synopsis: "", help: "start TOTP enrollment; prints the secret and otpauth URI once", run: authTOTPEnroll},
	{name: "auth totp-confirm", synopsis: "-code C", help: "confirm TOTP enrollment with a current code", run: authTOTPConfirm},
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTPCode string `json:"totp_code,omitempty"`
}

func authLogin(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	username := fs.String("username", "", "account name")
	code := fs.String("totp", "", "current TOTP code, when the account has TOTP enabled")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if err := needFlag(c, "username", *username); err != nil {
		return err
	}
	password, err := a.secret("MCIAS_PASSWORD", "Password: ", false)
	if err != nil {
		return err
	}
	req := loginRequest{Username: *username, Password: password, TOTPCode: *code}
	api, err := a.api()
	if err != nil {
		return err
	}
	tok, raw, err := api.Login(ctx, req)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == "totp_required" && *code == "" && a.isTerminal() {
		// The password was right; asking for the code here saves the
		// user from typing the password again.
		if req.TOTPCode, err = a.prompt("TOTP code: "); err != nil {
			return err
		}
		tok, raw, err = api.Login(ctx, req)
	}
	if err != nil {
		return err
	}
	return printToken(a, raw, tok)
}

// printToken prints only the token, so $(mciasctl auth login ...) is
// exactly the token; -json prints the whole response.
func printToken(a *app, raw Raw, tok tokenResponse) error {
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	if tok.Token == "" {
		return errors.New("server sent no token")
	}
	fmt.Fprintln(a.sys.Stdout, tok.Token)
	return nil
}

func authLogout(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	return done(a, "logged out; the token is revoked", func(api API) (Raw, error) { return api.Logout(ctx) })
}

func authRenew(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	tok, raw, err := api.Renew(ctx)
	if err != nil {
		return err
	}
	return printToken(a, raw, tok)
}

func authMe(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	return showAccount(a, func(api API) (account, Raw, error) { return api.Me(ctx) })
}

func authPassword(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	if a.token == "" {
		return errNoToken // before asking for two passwords
	}
	current, err := a.secret("MCIAS_PASSWORD", "Current password: ", false)
	if err != nil {
		return err
	}
	next, err := a.secret("MCIAS_NEW_PASSWORD", "New password: ", true)
	if err != nil {
		return err
	}
	return done(a, "password changed; every other token of your account is revoked",
		func(api API) (Raw, error) { return api.ChangePassword(ctx, current, next) })
}

func authTOTPEnroll(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	e, raw, err := api.EnrollTOTP(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printFields(a.sys.Stdout, [][2]string{{"secret", e.Secret}, {"otpauth_uri", e.OTPAuthURI}})
	fmt.Fprintf(a.sys.Stderr, "Add it to your authenticator, then: %s auth totp-confirm -code CODE\n", a.prog())
	return nil
}

func authTOTPConfirm(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	code := fs.String("code", "", "the current 6-digit code")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if err := needFlag(c, "code", *code); err != nil {
		return err
	}
	return done(a, "TOTP enabled; logins now need a code", func(api API) (Raw, error) { return api.ConfirmTOTP(ctx, *code) })
}

// done runs a call whose success has no body (REST 204, an empty gRPC
// message) and finishes the command: a short line for people, nothing
// under -json (there is no JSON to print).
func done(a *app, msg string, call func(API) (Raw, error)) error {
	api, err := a.api()
	if err != nil {
		return err
	}
	raw, err := call(api)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	fmt.Fprintln(a.sys.Stdout, msg)
	return nil
}

// showAccount runs a call that answers one account and prints it.
func showAccount(a *app, call func(API) (account, Raw, error)) error {
	api, err := a.api()
	if err != nil {
		return err
	}
	ac, raw, err := call(api)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printAccount(a.sys.Stdout, ac)
	return nil
}
