package ctl

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

var keyCommands = []command{
	{name: "key list", synopsis: "", help: "list every signing key with its state, retired ones included (admin); -json output pins keys for audit verify -keys", run: keyList},
	{name: "key rotate", synopsis: "[-emergency]", help: "rotate the token signing key (admin); -emergency retires the active key now and revokes every token it signed", run: keyRotate},
}

// rotateKey is a key state in the answer of POST /v1/keys/rotate.
type rotateKey struct {
	Kid        string    `json:"kid"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	StateSince time.Time `json:"state_since"`
}

// rotateResult is the answer of POST /v1/keys/rotate.
type rotateResult struct {
	Keys          []rotateKey `json:"keys"`
	ActivatesAt   *time.Time  `json:"activates_at"`
	RevokedTokens int         `json:"revoked_tokens"`
}

func keyRotate(ctx context.Context, a *app, c *command, args []string) error {
	fs := flags(c)
	emergency := fs.Bool("emergency", false, "the active key is compromised: replace it at once and revoke every token it signed (everyone logs in again)")
	if _, err := a.parse(c, fs, args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	res, raw, err := api.RotateKeys(ctx, *emergency)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	rows := make([][]string, 0, len(res.Keys))
	for _, k := range res.Keys {
		rows = append(rows, []string{k.Kid, k.State, k.StateSince.UTC().Format(time.RFC3339)})
	}
	printTable(a.sys.Stdout, []string{"KID", "STATE", "SINCE"}, rows)
	if res.ActivatesAt != nil {
		fmt.Fprintf(a.sys.Stdout, "the next key signs from %s\n", res.ActivatesAt.UTC().Format(time.RFC3339))
	}
	if *emergency {
		fmt.Fprintln(a.sys.Stdout, "revoked tokens: "+strconv.Itoa(res.RevokedTokens))
	}
	return nil
}

func keyList(ctx context.Context, a *app, c *command, args []string) error {
	if _, err := a.parse(c, flags(c), args, 0, 0); err != nil {
		return err
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	res, raw, err := api.ListKeys(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printRaw(a.sys.Stdout, raw)
		return nil
	}
	rows := make([][]string, 0, len(res.Keys))
	for _, k := range res.Keys {
		rows = append(rows, []string{k.Kid, k.State, k.StateSince})
	}
	printTable(a.sys.Stdout, []string{"KID", "STATE", "SINCE"}, rows)
	return nil
}
