package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/pluginhost"
	"github.com/metacircular/mcias/sdk"
)

// reseal is `mciassrv reseal -from-config OLD -config NEW`: it moves every
// secret at rest from the custodian of OLD to the custodian of NEW (see
// core.Reseal). Both configurations must name the same storage. Run it
// with the server stopped, then start the server with NEW.
func reseal(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reseal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	newPath := fs.String("config", "", "configuration with the new [custody] (the one the server will run with)")
	oldPath := fs.String("from-config", "", "configuration with the old [custody]")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *newPath == "" || *oldPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: mciassrv reseal -from-config OLD.toml -config NEW.toml")
		return 2
	}
	newCfg, err := loadConfig(*newPath, builtinSchemes())
	if err != nil {
		fmt.Fprintln(stderr, "mciassrv:", err)
		return 2
	}
	oldCfg, err := loadConfig(*oldPath, builtinSchemes())
	if err != nil {
		fmt.Fprintln(stderr, "mciassrv:", err)
		return 2
	}
	if newCfg.Storage != oldCfg.Storage {
		fmt.Fprintln(stderr, "mciassrv: reseal: both configurations must name the same [storage]")
		return 2
	}
	if err := runReseal(context.Background(), oldCfg, newCfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "mciassrv: reseal:", err)
		return 1
	}
	return 0
}

func runReseal(ctx context.Context, oldCfg, newCfg Config, stdout, stderr io.Writer) error {
	logger := newLogger(newCfg.Log, stderr)
	host := pluginhost.New(hostOptions(newCfg.Plugins), logger)
	defer host.Close(context.Background())
	oldHost := pluginhost.New(hostOptions(oldCfg.Plugins), logger)
	defer oldHost.Close(context.Background())
	store, err := open(ctx, storageBackends, newCfg.Storage, newCfg.Plugins, host.Storage, logger.With("backend", "storage"))
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer closeLogged(logger, "storage", store.Close)
	from, err := open(ctx, custodyBackends, oldCfg.Custody, oldCfg.Plugins, oldHost.Custodian, logger.With("backend", "old custody"))
	if err != nil {
		return fmt.Errorf("old custody: %w", err)
	}
	defer closeLogged(logger, "old custody", from.Close)
	to, err := open(ctx, custodyBackends, newCfg.Custody, newCfg.Plugins, host.Custodian, logger.With("backend", "new custody"))
	if err != nil {
		return fmt.Errorf("new custody: %w", err)
	}
	defer closeLogged(logger, "new custody", to.Close)
	rep, err := core.Reseal(ctx, store, from, to, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "resealed %d TOTP secrets and %d Postgres passwords (%d were already sealed by the new custodian)\n", rep.TOTP, rep.PGCreds, rep.Already)
	n, err := core.ImportKeys(ctx, from, to, nil)
	switch {
	case errors.Is(err, sdk.ErrNotImplemented):
		fmt.Fprintln(stdout, "the new custodian cannot import the old signing keys: tokens signed before the move will not verify")
	case err != nil:
		return err
	default:
		fmt.Fprintf(stdout, "published %d old signing keys as retiring in the new custodian: tokens signed before the move verify until keys.retire_after\n", n)
	}
	return nil
}
