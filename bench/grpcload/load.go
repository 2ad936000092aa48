package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// drive runs one closed-loop round against addr: o.clients connections,
// each calling ValidateToken and checking valid = true, for the warm-up
// (discarded) and then o.duration (measured). Any failed call ends the
// round with an error: a benchmark of errors would measure the wrong thing.
func drive(ctx context.Context, addr string, tlsConf *tls.Config, token string, o options) (loadkit.Result, error) {
	req := &pb.ValidateTokenRequest{Token: token}
	return loadkit.Drive(ctx, loadkit.Round{Clients: o.clients, Warmup: o.warmup, Duration: o.duration},
		func(int) (func(context.Context) error, func(), error) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf.Clone())))
			if err != nil {
				return nil, nil, err
			}
			client := pb.NewTokenServiceClient(conn)
			return func(ctx context.Context) error {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				resp, err := client.ValidateToken(cctx, req)
				if err == nil && !resp.Valid {
					err = errors.New("token reported invalid")
				}
				return err
			}, func() { _ = conn.Close() }, nil
		})
}

// writeReport prints the Markdown for bench/README.md.
func writeReport(w io.Writer, o options, r *results) {
	bare, mcias := loadkit.Merge(r.bare), loadkit.Merge(r.mcias)
	m := loadkit.DescribeMachine()
	fmt.Fprintf(w, "| machine | |\n|---|---|\n| CPU | %s |\n| cores | %d (load generator, server and ceiling share them) |\n| Go | %s |\n| OS | %s |\n| date | %s |\n| run | `-c %d -d %s -rounds %d`, warm-up %s |\n\n",
		m.CPU, m.Cores, m.Go, m.Kernel, m.Date, o.clients, o.duration, o.rounds, o.warmup)
	fmt.Fprintf(w, "| measure | MCIAS | ceiling | MCIAS / ceiling | target |\n|---|---:|---:|---:|---:|\n")
	what := fmt.Sprintf("ValidateToken, %d clients, %d×%s", o.clients, o.rounds, o.duration)
	fmt.Fprintf(w, "| %s: calls/s | %.0f | %.0f | **%.2f** | ≥ 0.7 |\n", what, mcias.Rate(), bare.Rate(), mcias.Rate()/bare.Rate())
	for _, q := range []float64{0.50, 0.99} {
		mm, b := mcias.Pct(q), bare.Pct(q)
		fmt.Fprintf(w, "| %s: p%.0f latency | %s | %s | %.2f | |\n", what, q*100, loadkit.FmtDur(mm), loadkit.FmtDur(b), float64(mm)/float64(b))
	}
	fmt.Fprintf(w, "\n| round | ceiling calls/s | MCIAS calls/s |\n|---|---:|---:|\n")
	for i := range r.bare {
		fmt.Fprintf(w, "| %d | %.0f | %.0f |\n", i+1, r.bare[i].Rate(), r.mcias[i].Rate())
	}
}
