// Package ctl is the administration CLI of MCIAS, shared by mciasctl
// (REST) and mciasgrpcctl (gRPC): the command table, flags, prompts,
// output and exit codes live here once, over the API interface, and each
// binary only picks its Flavor. Either speaks the public API and nothing
// else, so it needs no access to the server's database or keys.
//
// Run `mciasctl help` for commands, flags, environment and exit codes.
package ctl

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"
)

// Exit codes; documented in usage.
const (
	exitOK          = 0
	exitFailed      = 1 // operation failed, or token validate: invalid
	exitUsage       = 2
	exitUnreachable = 3 // no HTTP answer: connection, DNS, TLS, timeout
	exitAuth        = 4 // 401/403 or no token
)

// Flavor is what differs between the two CLIs: the name, how the server
// is named, and the transport.
type Flavor struct {
	Name          string // program name: "mciasctl"
	API           string // what it speaks, for the usage text: "REST API"
	DefaultServer string
	ServerEnv     string // environment variable naming the server
	ServerHelp    string // usage text of -server
	// Dial builds the client; it is called on first use, so `help` and
	// usage errors never touch the CA file or the network.
	Dial func(server, token, caFile string, timeout time.Duration) (API, error)
}

// REST is mciasctl's flavor.
var REST = Flavor{
	Name:          "mciasctl",
	API:           "REST API",
	DefaultServer: "https://127.0.0.1:8443",
	ServerEnv:     "MCIAS_SERVER",
	ServerHelp:    "server base URL",
	Dial: func(server, token, caFile string, timeout time.Duration) (API, error) {
		return NewClient(server, token, caFile, timeout)
	},
}

// GRPC is mciasgrpcctl's flavor.
var GRPC = Flavor{
	Name:          "mciasgrpcctl",
	API:           "gRPC API",
	DefaultServer: "127.0.0.1:9443",
	ServerEnv:     "MCIAS_GRPC_SERVER",
	ServerHelp:    "server address host:port",
	Dial: func(server, token, caFile string, timeout time.Duration) (API, error) {
		return NewGRPCClient(server, token, caFile, timeout)
	},
}

// Main runs the CLI of flavor f as a process and exits.
func Main(f Flavor) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, f, os.Args[1:], System{
		Getenv: os.Getenv,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		TermFD: int(os.Stdin.Fd()),
	})
	stop()
	os.Exit(code)
}

// System is what the CLI takes from the process; tests pass their own.
type System struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// TermFD is the descriptor of stdin for terminal prompts; -1 means
	// "never a terminal" (tests).
	TermFD int
}

// app is one invocation: global options plus I/O.
type app struct {
	flavor  Flavor
	server  string
	token   string
	ca      string
	json    bool
	timeout time.Duration

	sys    System
	stdin  *bufio.Reader // shared so several secrets can be read line by line
	client API
}

func (a *app) prog() string { return a.flavor.Name }

// command is one entry of the command table; usage text is built from it.
type command struct {
	name     string // "account list"
	synopsis string // flags and arguments after the name
	help     string // one line
	run      func(ctx context.Context, a *app, c *command, args []string) error
}

// commands is filled by the cmd_*.go files' tables, in usage order.
func commands() []command {
	var all []command
	all = append(all, authCommands...)
	all = append(all, accountCommands...)
	all = append(all, tokenCommands...)
	all = append(all, keyCommands...)
	all = append(all, miscCommands...)
	return all
}

func findCommand(args []string) (command, []string, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

// Run runs one invocation and returns the exit code.
func Run(ctx context.Context, f Flavor, args []string, sys System) int {
	a := &app{flavor: f, sys: sys, stdin: bufio.NewReader(sys.Stdin)}
	fs := flag.NewFlagSet(f.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.server, "server", "", "")
	fs.StringVar(&a.token, "token", "", "")
	fs.StringVar(&a.ca, "ca", "", "")
	fs.BoolVar(&a.json, "json", false, "")
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.printUsage(sys.Stdout)
			return exitOK
		}
		return report(sys.Stderr, f.Name, usagef("%v", err))
	}
	if a.server == "" {
		a.server = sys.Getenv(f.ServerEnv)
	}
	if a.server == "" {
		a.server = f.DefaultServer
	}
	if a.token == "" {
		a.token = sys.Getenv("MCIAS_TOKEN")
	}
	if a.ca == "" {
		a.ca = sys.Getenv("MCIAS_CA")
	}
	if a.timeout <= 0 {
		return report(sys.Stderr, f.Name, usagef("-timeout must be positive"))
	}

	rest := fs.Args()
	if len(rest) == 0 {
		a.printUsage(sys.Stderr)
		return exitUsage
	}
	if rest[0] == "help" {
		a.printUsage(sys.Stdout)
		return exitOK
	}
	cmd, cmdArgs, ok := findCommand(rest)
	if !ok {
		return report(sys.Stderr, f.Name, unknownCommand(f.Name, rest))
	}
	err := cmd.run(ctx, a, &cmd, cmdArgs)
	if c, ok := a.client.(io.Closer); ok {
		_ = c.Close() // the gRPC connection; nothing is pending after the command
	}
	if err != nil {
		return report(sys.Stderr, f.Name, err)
	}
	return exitOK
}

func unknownCommand(prog string, args []string) error {
	var group []string
	for _, c := range commands() {
		if strings.HasPrefix(c.name, args[0]+" ") {
			group = append(group, prog+" "+c.name+" "+c.synopsis)
		}
	}
	if len(group) > 0 {
		what := "missing subcommand"
		if len(args) > 1 {
			what = fmt.Sprintf("unknown subcommand %q", args[0]+" "+args[1])
		}
		return &usageError{msg: what + "; one of:\n  " + strings.Join(group, "\n  ")}
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q (run '%s help')", args[0], prog)}
}

// api builds the client on first use, so `help` and usage errors never
// touch the CA file or the network.
func (a *app) api() (API, error) {
	if a.client == nil {
		c, err := a.flavor.Dial(a.server, a.token, a.ca, a.timeout)
		if err != nil {
			return nil, err
		}
		a.client = c
	}
	return a.client, nil
}

// usageError is a mistake on the command line: exit 2.
type usageError struct {
	msg string
	cmd *command // when known, its synopsis is shown
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError ends the program with a code after the command already said
// what it had to (token validate: invalid).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// errHelp: -h on a subcommand; its usage was printed, exit 0.
var errHelp = errors.New("help requested")

// report prints err as "PROG: <sentence>" and returns the exit code.
func report(w io.Writer, prog string, err error) int {
	var (
		ue *usageError
		ae *APIError
		te *TransportError
		ee *exitError
	)
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(w, "%s: %s\n", prog, clean(ue.msg))
		if ue.cmd != nil {
			fmt.Fprintf(w, "usage: %s %s %s\n", prog, ue.cmd.name, ue.cmd.synopsis)
		}
		return exitUsage
	case errors.As(err, &ae):
		fmt.Fprintf(w, "%s: %s\n", prog, clean(ae.Error()))
		if ae.authFailure() {
			return exitAuth
		}
		return exitFailed
	case errors.As(err, &te):
		msg := te.Error()
		var unknownCA x509.UnknownAuthorityError
		var verify *tls.CertificateVerificationError
		// gRPC reports TLS failures as text inside a status.
		if errors.As(err, &unknownCA) || errors.As(err, &verify) || strings.Contains(msg, "x509: ") {
			msg += " (pass -ca or set MCIAS_CA to the PEM file of the CA that signed the server certificate)"
		}
		fmt.Fprintf(w, "%s: %s\n", prog, clean(msg))
		return exitUnreachable
	case errors.Is(err, errNoToken):
		fmt.Fprintf(w, "%s: %s\n", prog, err)
		return exitAuth
	default:
		fmt.Fprintf(w, "%s: %s\n", prog, clean(err.Error()))
		return exitFailed
	}
}

// flags returns a flag set for a subcommand whose -h prints the
// subcommand's usage.
func flags(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args allowing flags and positional arguments in any order
// (`account update ID -status inactive`), checks the positional count,
// and turns flag errors into usage errors.
func (a *app) parse(cmd *command, fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(a.sys.Stdout, "usage: %s %s %s\n  %s\n", a.prog(), cmd.name, cmd.synopsis, cmd.help)
		fs.SetOutput(a.sys.Stdout)
		fs.PrintDefaults()
		return nil, errHelp
	}
	if err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok && isGlobalFlag(name) {
			msg = fmt.Sprintf("-%s is a global flag: put it before the command (%s -%s %s ...)", name, a.prog(), name, cmd.name)
		}
		return nil, &usageError{msg: msg, cmd: cmd}
	}
	switch {
	case len(pos) < minPos:
		return nil, &usageError{msg: "missing argument", cmd: cmd}
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, &usageError{msg: fmt.Sprintf("unexpected argument %q", pos[maxPos]), cmd: cmd}
	}
	return pos, nil
}

func isGlobalFlag(name string) bool {
	switch strings.TrimPrefix(name, "-") {
	case "server", "token", "ca", "json", "timeout":
		return true
	}
	return false
}

func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// needFlag reports a missing required flag as a usage error.
func needFlag(cmd *command, name, value string) error {
	if value == "" {
		return &usageError{msg: "-" + name + " is required", cmd: cmd}
	}
	return nil
}

// oneOf checks an enumerated flag value; empty is allowed (unset).
func oneOf(cmd *command, name, value string, allowed ...string) error {
	if value == "" {
		return nil
	}
	for _, v := range allowed {
		if value == v {
			return nil
		}
	}
	return &usageError{msg: fmt.Sprintf("-%s must be one of %s, not %q", name, strings.Join(allowed, ", "), value), cmd: cmd}
}

// isTerminal reports whether stdin is an interactive terminal.
func (a *app) isTerminal() bool {
	return a.sys.TermFD >= 0 && term.IsTerminal(a.sys.TermFD)
}

// secret gets a secret without ever taking it from a flag (flags show in
// ps and shell history): the environment variable envName when set, else
// a prompt on the terminal without echo (asked twice when confirm), else
// one line of stdin.
func (a *app) secret(envName, prompt string, confirm bool) (string, error) {
	if v := a.sys.Getenv(envName); v != "" {
		return v, nil
	}
	if a.isTerminal() {
		s, err := a.prompt(prompt)
		if err != nil {
			return "", err
		}
		if s == "" {
			return "", errors.New("empty password")
		}
		if confirm {
			again, err := a.prompt("Repeat " + strings.ToLower(prompt[:1]) + prompt[1:])
			if err != nil {
				return "", err
			}
			if again != s {
				return "", errors.New("the two entries differ")
			}
		}
		return s, nil
	}
	line, err := a.readLine()
	if err != nil {
		return "", fmt.Errorf("read %s from stdin (or set %s): %w", strings.TrimSuffix(strings.ToLower(prompt), ": "), envName, err)
	}
	if line == "" {
		return "", fmt.Errorf("empty %s on stdin", strings.TrimSuffix(strings.ToLower(prompt), ": "))
	}
	return line, nil
}

func (a *app) prompt(prompt string) (string, error) {
	fmt.Fprint(a.sys.Stderr, prompt)
	b, err := term.ReadPassword(a.sys.TermFD)
	fmt.Fprintln(a.sys.Stderr)
	if err != nil {
		return "", fmt.Errorf("read from terminal: %w", err)
	}
	return string(b), nil
}

// readLine reads one line of stdin without its line ending; spaces are
// kept since they may belong to a password.
func (a *app) readLine() (string, error) {
	line, err := a.stdin.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("nothing to read")
		}
		return "", err
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	return line, nil
}

// clean makes server-supplied text safe to print on a terminal: control
// and format characters (escape sequences, bidi overrides) become '?'.
func clean(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '?'
		}
		return r
	}, s)
}

func unsafeRune(r rune) bool {
	return r == utf8.RuneError || (r != '\n' && unicode.IsControl(r)) || unicode.Is(unicode.Cf, r)
}

func (a *app) printUsage(w io.Writer) {
	f := a.flavor
	exampleServer, statusWords := "https://mcias.example.net:8443", "HTTP 401 or 403"
	errorForm, serverArg := "(<code>, HTTP <status>)", "URL "
	if f.Name == GRPC.Name {
		exampleServer, statusWords = "mcias.example.net:9443", "gRPC Unauthenticated or PermissionDenied"
		errorForm, serverArg = "(<code>, gRPC <status>)", "ADDR"
	}
	r := strings.NewReplacer("PROG", f.Name, "APINAME", f.API, "SERVERENV", f.ServerEnv, "SERVERARG", serverArg,
		"SERVERHELP", f.ServerHelp, "DEFAULTSERVER", f.DefaultServer, "EXAMPLESERVER", exampleServer,
		"AUTHSTATUS", statusWords, "ERRORFORM", errorForm)
	var b strings.Builder
	b.WriteString(r.Replace(`PROG: administer an MCIAS identity server over its APINAME.

usage: PROG [global flags] COMMAND [flags] [arguments]

Global flags (before COMMAND):
  -server SERVERARG   SERVERHELP (default: $SERVERENV, else DEFAULTSERVER)
  -token TOKEN   bearer token (default: $MCIAS_TOKEN; prefer the variable, flags show in ps)
  -ca FILE       PEM bundle of CA certificates to trust besides the system roots
                 (default: $MCIAS_CA)
  -json          print the server's JSON response unchanged instead of text
  -timeout DUR   timeout of each request (default 30s)

Commands:
`))
	group := ""
	for _, c := range commands() {
		if g, _, _ := strings.Cut(c.name, " "); g != group && group != "" {
			b.WriteString("\n")
			group = g
		} else {
			group = g
		}
		fmt.Fprintf(&b, "  %s\n        %s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.help)
	}
	b.WriteString(r.Replace(`  help
        this text; "PROG COMMAND -h" shows a command's flags

Secrets are never read from flags. Passwords come from an environment
variable when set, else from a prompt on the terminal (no echo), else from
one line of standard input:
  MCIAS_PASSWORD      auth login; the current password of auth password
  MCIAS_NEW_PASSWORD  account create, account set-password, the new password
                      of auth password
  MCIAS_PG_PASSWORD   pgcreds set

Tokens: the bearer token comes from $MCIAS_TOKEN; a token to validate or
revoke is best given as "-" and written to standard input, since command
arguments show in ps:
  echo "$TOKEN" | PROG token validate -

Exit status:
  0  success; token validate: the token is valid
  1  the operation failed; token validate: the token is invalid
  2  usage error
  3  could not reach the server (connection, DNS, TLS verification, timeout)
  4  authentication needed or refused (no token, AUTHSTATUS)
  5  audit verify: the audit chain is broken (the line names the first
     broken link: seq, event id, what is wrong)

Errors are printed to stderr as "PROG: <sentence> ERRORFORM".

Example:
  export SERVERENV=EXAMPLESERVER MCIAS_CA=/etc/mcias/ca.pem
  export MCIAS_TOKEN=$(PROG auth login -username admin)
  PROG account create -username deploy -type system -no-password
  PROG token issue -account ACCOUNT_ID -ttl 720h -audience ci
`))
	fmt.Fprint(w, b.String())
}
