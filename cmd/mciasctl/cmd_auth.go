package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	var tok tokenResponse
	raw, err := a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/login", Body: req}, &tok)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == "totp_required" && *code == "" && a.isTerminal() {
		// The password was right; asking for the code here saves the
		// user from typing the password again.
		if req.TOTPCode, err = a.prompt("TOTP code: "); err != nil {
			return err
		}
		raw, err = a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/login", Body: req}, &tok)
	}
	if err != nil {
		return err
	}
	return printToken(a, raw, tok)
}

// printToken prints only the token, so $(mciasctl auth login ...) is
// exactly the token; -json prints the whole response.
func printToken(a *app, raw []byte, tok tokenResponse) error {
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

// emptyBody is sent to the body-less POSTs: the contract accepts an empty
// body or {}, and {} with a JSON content type passes the strictest check.
var emptyBody = struct{}{}

func authLogout(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	raw, err := a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/logout", Body: emptyBody, Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "logged out; the token is revoked")
}

func authRenew(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	var tok tokenResponse
	raw, err := a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/renew", Body: emptyBody, Auth: true}, &tok)
	if err != nil {
		return err
	}
	return printToken(a, raw, tok)
}

func authMe(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	return getAccountLike(ctx, a, Request{Method: http.MethodGet, Path: "/v1/auth/me", Auth: true})
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
	body := map[string]string{"current_password": current, "new_password": next}
	raw, err := a.do(ctx, Request{Method: http.MethodPut, Path: "/v1/auth/password", Body: body, Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "password changed; every other token of your account is revoked")
}

func authTOTPEnroll(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	var e totpEnrollment
	raw, err := a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/totp/enroll", Body: emptyBody, Auth: true}, &e)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	printFields(a.sys.Stdout, [][2]string{{"secret", e.Secret}, {"otpauth_uri", e.OTPAuthURI}})
	fmt.Fprintln(a.sys.Stderr, "Add it to your authenticator, then: mciasctl auth totp-confirm -code CODE")
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
	raw, err := a.do(ctx, Request{Method: http.MethodPost, Path: "/v1/auth/totp/confirm", Body: map[string]string{"code": *code}, Auth: true}, nil)
	if err != nil {
		return err
	}
	return done(a, raw, "TOTP enabled; logins now need a code")
}

// done finishes a command whose success has no body (204): a short line
// for people, nothing under -json (there is no JSON to print).
func done(a *app, raw []byte, msg string) error {
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	fmt.Fprintln(a.sys.Stdout, msg)
	return nil
}

// getAccountLike fetches one account and prints it.
func getAccountLike(ctx context.Context, a *app, req Request) error {
	var ac account
	raw, err := a.do(ctx, req, &ac)
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
