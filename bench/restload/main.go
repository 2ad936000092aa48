// Command restload measures what MCIAS's REST frontend costs on top of the
// cryptography it cannot avoid, and prints a Markdown table for
// bench/README.md.
//
//	make build && go run ./bench/restload -bin bin
//
// It lays out a throwaway instance with `mciassrv init`, raises the per-IP
// login limit so the limiter never answers 429, serves it, and compares:
//
//   - POST /v1/token/validate against a ceiling: a bare Gin handler over
//     TLS, in a separate process, that decodes the JSON, splits the JWS and
//     does one ed25519.Verify. Same certificate, same clients, same token,
//     alternating rounds.
//   - POST /v1/auth/login against bare argon2.IDKey at the configured
//     parameters, in a separate process: sequential latency, and throughput
//     with every core busy.
//
// The load is closed-loop: each client sends its next request when the
// previous answer arrived, so latencies are service times under that
// concurrency, not an open-loop arrival model.
//
// Progress goes to stderr, the table to stdout. Any error (a failed or
// unexpected response included) exits non-zero. Child processes are
// stopped on every exit path.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// Hidden modes: the program re-executes itself to run the ceilings in
// processes of their own.
const (
	bareFlag     = "-bare"
	bareHashFlag = "-bare-hash"
)

type options struct {
	bin      string
	clients  int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	logins   int
	keep     bool
	// plugins runs every backend as a subprocess plugin
	// (plugins.builtins = "subprocess", binaries from bin/plugins).
	plugins bool
	// sinks runs the audit-sink comparison instead of the ceilings.
	sinks bool
	// storage replaces the instance's SQLite URI (a postgres:// URI for
	// the Postgres comparison); empty keeps SQLite.
	storage string
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case bareFlag:
			os.Exit(bareMain(os.Args[2:]))
		case bareHashFlag:
			os.Exit(bareHashMain(os.Args[2:]))
		}
	}
	os.Exit(driverMain(os.Args[1:], os.Stdout, os.Stderr))
}

func driverMain(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("restload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the mciassrv binary (make build)")
	fs.IntVar(&o.clients, "c", 16, "concurrent keep-alive HTTPS clients for token validation")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each validation round and of each login/hash saturation run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each timed run")
	fs.IntVar(&o.rounds, "rounds", 2, "validation rounds per target (bare and mcias alternate)")
	fs.IntVar(&o.logins, "logins", 20, "sequential logins (and sequential bare hashes) for the latency comparison")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary instance directory")
	fs.BoolVar(&o.plugins, "plugins", false, "run every backend as a subprocess plugin (BIN/plugins, make build)")
	fs.BoolVar(&o.sinks, "sinks", false, "instead of the ceilings: login and token-issue throughput with two audit sinks attached against none")
	fs.StringVar(&o.storage, "storage", "", "storage URI to run on instead of the instance's SQLite file (postgres://..., an empty database)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench/restload [-bin bin] [-plugins] [-sinks] [-storage URI] [-c 16] [-d 10s] [-rounds 2] [-logins 20]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.clients < 1 || o.rounds < 1 || o.logins < 1 || o.duration <= 0 || o.warmup < 0 {
		fs.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	procs := &loadkit.Children{Log: stderr}
	// Stop the children on every way out: normal return, error, panic in
	// this goroutine. Signals cancel ctx, which makes run return. A panic
	// elsewhere kills the process; the children then get SIGKILL from
	// the kernel (Pdeathsig, Linux).
	defer func() {
		r := recover()
		procs.StopAll()
		if r != nil {
			panic(r)
		}
	}()

	if o.sinks {
		res, err := runAudit(ctx, o, procs, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "restload:", err)
			procs.DumpLogs(stderr)
			return 1
		}
		writeAuditReport(stdout, o, res)
		return 0
	}
	res, err := run(ctx, o, procs, stderr)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintln(stderr, "restload:", err)
		procs.DumpLogs(stderr)
		return 1
	}
	writeReport(stdout, o, res)
	return 0
}

// results is everything the report needs.
type results struct {
	machine     loadkit.Machine
	argon       argonParams
	bareRounds  []loadkit.Result
	mciasRound  []loadkit.Result
	loginSeq    []time.Duration
	hashSeq     []time.Duration
	loginRounds []loadkit.Result
	loginConc   int
	hashRounds  []hashSatResult
}

func run(ctx context.Context, o options, procs *loadkit.Children, log io.Writer) (*results, error) {
	res := &results{machine: loadkit.DescribeMachine()}

	inst, err := startInstance(ctx, o, procs, log, nil)
	if err != nil {
		return nil, err
	}
	res.argon = inst.argon

	bare, err := startBare(ctx, inst, procs, log)
	if err != nil {
		return nil, err
	}

	// 1. Token validation, alternating bare and mcias.
	validateBody := []byte(`{"token":"` + inst.token + `"}`)
	for r := 1; r <= o.rounds; r++ {
		for _, t := range []struct {
			name, url string
			dst       *[]loadkit.Result
		}{
			{"bare", bare.url, &res.bareRounds},
			{"mcias", inst.url, &res.mciasRound},
		} {
			fmt.Fprintf(log, "validate round %d/%d: %s, %d clients, %s warm-up + %s ...\n",
				r, o.rounds, t.name, o.clients, o.warmup, o.duration)
			lr, err := drive(ctx, driveSpec{
				url:      t.url + "/v1/token/validate",
				body:     validateBody,
				check:    checkValid,
				clients:  o.clients,
				warmup:   o.warmup,
				duration: o.duration,
				tls:      inst.tlsConfig,
			})
			if err != nil {
				return nil, fmt.Errorf("validate (%s, round %d): %w", t.name, r, err)
			}
			fmt.Fprintf(log, "  %.0f req/s, p50 %s, p99 %s\n", lr.Rate(), loadkit.FmtDur(lr.Pct(0.50)), loadkit.FmtDur(lr.Pct(0.99)))
			*t.dst = append(*t.dst, lr)
		}
	}
	// The ceiling is not needed any more; free its core share.
	procs.Stop(bare.proc)

	// 2a. Login latency, sequential.
	loginBody := inst.loginBody()
	fmt.Fprintf(log, "login latency: %d sequential logins ...\n", o.logins)
	seq, err := sequential(ctx, inst.url+"/v1/auth/login", loginBody, checkToken, o.logins, inst.tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("sequential logins: %w", err)
	}
	res.loginSeq = seq

	// 2b. Login throughput (2*NumCPU clients) against bare hashes/s
	// (NumCPU goroutines), alternating rounds like validation so that
	// noise on a shared machine falls on both sides.
	res.loginConc = 2 * runtime.NumCPU()
	for r := 1; r <= o.rounds; r++ {
		fmt.Fprintf(log, "login round %d/%d: %d clients, %s warm-up + %s ...\n", r, o.rounds, res.loginConc, o.warmup, o.duration)
		sat, err := drive(ctx, driveSpec{
			url:      inst.url + "/v1/auth/login",
			body:     loginBody,
			check:    checkToken,
			clients:  res.loginConc,
			warmup:   o.warmup,
			duration: o.duration,
			tls:      inst.tlsConfig,
		})
		if err != nil {
			return nil, fmt.Errorf("login saturation: %w", err)
		}
		res.loginRounds = append(res.loginRounds, sat)
		fmt.Fprintf(log, "  %.1f logins/s, p50 %s, p99 %s\n", sat.Rate(), loadkit.FmtDur(sat.Pct(0.5)), loadkit.FmtDur(sat.Pct(0.99)))

		// 2c. The Argon2id ceiling, in its own process, while the
		// server sits idle.
		fmt.Fprintf(log, "bare argon2id round %d/%d (t=%d m=%d KiB p=%d): %d sequential, then %d goroutines for %s ...\n",
			r, o.rounds, inst.argon.Time, inst.argon.MemoryKiB, inst.argon.Threads, o.logins, runtime.NumCPU(), o.duration)
		hr, err := runBareHash(ctx, inst.argon, o, procs)
		if err != nil {
			return nil, fmt.Errorf("bare argon2id: %w", err)
		}
		res.hashSeq = append(res.hashSeq, hr.seq()...)
		res.hashRounds = append(res.hashRounds, hr.Sat)
		fmt.Fprintf(log, "  one hash p50 %s; %.1f hashes/s\n", loadkit.FmtDur(loadkit.Pct(hr.seq(), 0.5)), hr.Sat.rate())
	}
	slices.Sort(res.hashSeq)
	return res, nil
}
