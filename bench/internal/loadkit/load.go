package loadkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Result holds the calls that completed inside a measured window, with
// their latencies.
type Result struct {
	Window    time.Duration
	Latencies []time.Duration // sorted
}

// Rate is completions per second of window.
func (r Result) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Window.Seconds()
}

// Pct is the nearest-rank percentile q (0..1) of the latencies.
func (r Result) Pct(q float64) time.Duration { return Pct(r.Latencies, q) }

// Merge pools rounds: total calls over total time, all latencies.
func Merge(rs []Result) Result {
	var m Result
	for _, r := range rs {
		m.Window += r.Window
		m.Latencies = append(m.Latencies, r.Latencies...)
	}
	slices.Sort(m.Latencies)
	return m
}

// Pct is the nearest-rank percentile q (0..1) of samples.
func Pct(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	if !slices.IsSorted(samples) {
		samples = slices.Sorted(slices.Values(samples))
	}
	i := int(math.Ceil(q*float64(len(samples)))) - 1
	return samples[max(0, min(i, len(samples)-1))]
}

// Round is one closed-loop load round: Clients workers each make a call,
// wait for its answer and make the next, for Warmup (discarded) and then
// Duration (measured).
type Round struct {
	Clients          int
	Warmup, Duration time.Duration
}

// Drive runs the round. newWorker is called once per worker, before the
// clock starts, and returns the worker's call (which must check its
// answer) and a function that releases the worker's connection. Any
// failed call ends the round with that error: a benchmark of error
// answers would measure the wrong thing.
//
// Throughput counts the calls that complete inside the window whatever
// their latency; counting only calls that also started inside it would
// drop up to one per worker at each edge, which for 400 ms logins biases
// the rate low by several percent.
func Drive(ctx context.Context, r Round, newWorker func(w int) (call func(context.Context) error, release func(), err error)) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	calls := make([]func(context.Context) error, r.Clients)
	for w := range r.Clients {
		call, release, err := newWorker(w)
		if err != nil {
			return Result{}, err
		}
		defer release()
		calls[w] = call
	}
	start := time.Now().Add(r.Warmup)
	end := start.Add(r.Duration)
	lat := make([][]time.Duration, r.Clients)
	var wg sync.WaitGroup
	for w := range r.Clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				if err := calls[w](ctx); err != nil {
					cancel(err)
					return
				}
				if t1 := time.Now(); !t1.Before(start) && !t1.After(end) {
					lat[w] = append(lat[w], t1.Sub(t0))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	res := Result{Window: r.Duration}
	for _, l := range lat {
		res.Latencies = append(res.Latencies, l...)
	}
	if len(res.Latencies) == 0 {
		return Result{}, errors.New("no call completed inside the measured window")
	}
	slices.Sort(res.Latencies)
	return res, nil
}

// Machine describes where a run happened, for its report.
type Machine struct {
	CPU, Kernel, Go, Date string
	Cores                 int
}

// DescribeMachine reads the CPU model and kernel (Linux; "unknown" and
// GOOS elsewhere).
func DescribeMachine() Machine {
	m := Machine{
		CPU:    "unknown",
		Kernel: runtime.GOOS,
		Go:     runtime.Version(),
		Date:   time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Cores:  runtime.NumCPU(),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// FmtDur prints a latency in the unit that suits it.
func FmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}
