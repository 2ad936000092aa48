package ctl

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

var tokenCommands = []command{
	{name: "token issue", synopsis: "-account ID [-ttl DURATION] [-audience A]", help: "issue a service token for a system account; prints only the token", run: tokenIssue},
	{name: "token revoke", synopsis: "JTI|TOKEN|-", help: "revoke a token by its jti, or the token itself ('-' reads it from stdin)", run: tokenRevoke},
	{name: "token validate", synopsis: "[-audience A] TOKEN|-", help: "validate a token ('-' reads it from stdin); exit 0 valid, 1 invalid", run: tokenValidate},
}

type issueRequest struct {
	AccountID  string `json:"account_id"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
	Audience   string `json:"audience,omitempty"`
}

// ttlSeconds converts -ttl to the API's whole seconds; 0 means "server
// default" and is left out of the request.
func ttlSeconds(d time.Duration) (int64, error) {
	switch {
	case d == 0:
		return 0, nil
	case d < time.Second:
		return 0, fmt.Errorf("-ttl must be at least 1s, not %s", d)
	case d%time.Second != 0:
		return 0, fmt.Errorf("-ttl must be whole seconds, not %s", d)
	}
	return int64(d / time.Second), nil
}

func tokenIssue(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	accountID := fs.String("account", "", "id of the system account")
	ttl := fs.Duration("ttl", 0, "lifetime, e.g. 24h or 720h (default: the server's, 24h)")
	audience := fs.String("audience", "", "audience (aud) of the token; it then validates only for that audience")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	if err := needFlag(c, "account", *accountID); err != nil {
		return err
	}
	secs, err := ttlSeconds(*ttl)
	if err != nil {
		return &usageError{msg: err.Error(), cmd: c}
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	tok, raw, err := api.IssueToken(ctx, issueRequest{AccountID: *accountID, TTLSeconds: secs, Audience: *audience})
	if err != nil {
		return err
	}
	return printToken(a, raw, tok)
}

func tokenRevoke(ctx context.Context, a *app, c *command, args []string) error {
	pos, err := a.parse(c, flags(c), args, 1, 1)
	if err != nil {
		return err
	}
	arg, err := a.tokenArg(c, pos[0])
	if err != nil {
		return err
	}
	jti, err := jtiOf(arg)
	if err != nil {
		return err
	}
	return done(a, "token "+jti+" revoked", func(api API) (Raw, error) { return api.RevokeToken(ctx, jti) })
}

// jtiOf accepts a jti, or a compact JWS whose unverified payload names
// one. Reading the claim without verifying is safe here: the server
// revokes only a jti it issued, and only for an admin.
func jtiOf(arg string) (string, error) {
	parts := strings.Split(arg, ".")
	if len(parts) != 3 {
		return arg, nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", usagef("token revoke: the argument looks like a token but its payload is not base64url")
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI == "" {
		return "", usagef("token revoke: the token carries no jti")
	}
	return claims.JTI, nil
}

// tokenArg is the token (or jti) argument of validate and revoke; "-"
// reads it from one line of stdin, which keeps it out of ps and shell
// history (echo and printf are shell builtins).
func (a *app) tokenArg(c *command, arg string) (string, error) {
	if arg == "-" {
		line, err := a.readLine()
		if err != nil {
			return "", fmt.Errorf("read token from stdin: %w", err)
		}
		arg = line
	}
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return "", &usageError{msg: "empty token", cmd: c}
	}
	return arg, nil
}

type validateRequest struct {
	Token    string `json:"token"`
	Audience string `json:"audience,omitempty"`
}

func tokenValidate(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	audience := fs.String("audience", "", "your audience; required to accept a token that carries aud")
	pos, err := a.parse(c, fs, args, 1, 1)
	if err != nil {
		return err
	}
	token, err := a.tokenArg(c, pos[0])
	if err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	v, raw, err := api.ValidateToken(ctx, validateRequest{Token: token, Audience: *audience})
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
	} else {
		printValidation(a.sys.Stdout, v)
	}
	if !v.Valid {
		return &exitError{code: exitFailed}
	}
	return nil
}
