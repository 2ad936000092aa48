// Command webhook-receiver receives the audit events an MCIAS server's
// webhook sink sends, verifies their signature, and appends each event
// once to a JSON Lines file. See README.md.
//
//	webhook-receiver -listen 127.0.0.1:8099 -secret-file /etc/mcias/webhook.key -out events.jsonl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/metacircular/mcias/examples/webhook-receiver/receiver"
	"github.com/metacircular/mcias/sdk/audit/webhooksig"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8099", "address to listen on")
	secretFile := flag.String("secret-file", "", "file holding the signing secret (required)")
	out := flag.String("out", "events.jsonl", "file the events are appended to")
	tolerance := flag.Duration("tolerance", webhooksig.DefaultTolerance, "how far a request's timestamp may be from this clock")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, *secretFile, *out, *tolerance, logger); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

func run(listen, secretFile, out string, tolerance time.Duration, logger *slog.Logger) error {
	if secretFile == "" {
		return errors.New("-secret-file is required")
	}
	secret, err := receiver.ReadSecret(secretFile)
	if err != nil {
		return err
	}
	h, err := receiver.New(secret, out, tolerance, logger)
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("webhook-receiver listening", "addr", ln.Addr().String(), "out", out)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
