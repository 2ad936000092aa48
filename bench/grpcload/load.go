package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
)

// loadResult holds the calls that completed inside the measured window.
type loadResult struct {
	window    time.Duration
	latencies []time.Duration // sorted
}

func (r loadResult) rate() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(len(r.latencies)) / r.window.Seconds()
}

func (r loadResult) pct(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.latencies)))) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// merge pools rounds: total calls over total time, all latencies.
func merge(rs []loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.window += r.window
		m.latencies = append(m.latencies, r.latencies...)
	}
	slices.Sort(m.latencies)
	return m
}

// drive runs one closed-loop round against addr: o.clients connections,
// each calling ValidateToken and checking valid = true, for the warm-up
// (discarded) and then o.duration (measured). Any failed call ends the
// round with an error: a benchmark of errors would measure the wrong thing.
func drive(ctx context.Context, addr string, tlsConf *tls.Config, token string, o options) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	conns := make([]*grpc.ClientConn, o.clients)
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf.Clone())))
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	start := time.Now().Add(o.warmup)
	end := start.Add(o.duration)
	lat := make([][]time.Duration, o.clients)
	req := &pb.ValidateTokenRequest{Token: token}
	var wg sync.WaitGroup
	for w := range o.clients {
		wg.Go(func() {
			client := pb.NewTokenServiceClient(conns[w])
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				resp, err := client.ValidateToken(cctx, req)
				ccancel()
				if err == nil && !resp.Valid {
					err = errors.New("token reported invalid")
				}
				if err != nil {
					cancel(err)
					return
				}
				// Count completions inside the window, as restload does.
				if t1 := time.Now(); !t1.Before(start) && t1.Before(end) {
					lat[w] = append(lat[w], t1.Sub(t0))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return loadResult{}, err
	}
	r := loadResult{window: o.duration}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	slices.Sort(r.latencies)
	if len(r.latencies) == 0 {
		return loadResult{}, errors.New("no call completed in the window")
	}
	return r, nil
}

// cpuModel and kernel describe the machine for the report (Linux; else
// "unknown" and GOOS).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

// writeReport prints the Markdown for bench/README.md.
func writeReport(w io.Writer, o options, r *results) {
	bare, mcias := merge(r.bare), merge(r.mcias)
	fmt.Fprintf(w, "| machine | |\n|---|---|\n| CPU | %s |\n| cores | %d (load generator, server and ceiling share them) |\n| Go | %s |\n| OS | %s |\n| date | %s |\n| run | `-c %d -d %s -rounds %d`, warm-up %s |\n\n",
		cpuModel(), runtime.NumCPU(), runtime.Version(), kernel(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.clients, o.duration, o.rounds, o.warmup)
	fmt.Fprintf(w, "| measure | MCIAS | ceiling | MCIAS / ceiling | target |\n|---|---:|---:|---:|---:|\n")
	what := fmt.Sprintf("ValidateToken, %d clients, %d×%s", o.clients, o.rounds, o.duration)
	fmt.Fprintf(w, "| %s: calls/s | %.0f | %.0f | **%.2f** | ≥ 0.7 |\n", what, mcias.rate(), bare.rate(), mcias.rate()/bare.rate())
	for _, q := range []float64{0.50, 0.99} {
		m, b := mcias.pct(q), bare.pct(q)
		fmt.Fprintf(w, "| %s: p%.0f latency | %s | %s | %.2f | |\n", what, q*100, fmtDur(m), fmtDur(b), float64(m)/float64(b))
	}
	fmt.Fprintf(w, "\n| round | ceiling calls/s | MCIAS calls/s |\n|---|---:|---:|\n")
	for i := range r.bare {
		fmt.Fprintf(w, "| %d | %.0f | %.0f |\n", i+1, r.bare[i].rate(), r.mcias[i].rate())
	}
}
