package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// writeReport prints the Markdown for bench/README.md.
func writeReport(w io.Writer, o options, r *results) {
	m := r.machine
	bare, mcias := loadkit.Merge(r.bareRounds), loadkit.Merge(r.mciasRound)
	a := r.argon

	fmt.Fprintf(w, "#### restload, %s\n\n", m.Date)
	fmt.Fprintln(w, "| machine | |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| CPU | %s |\n", m.CPU)
	fmt.Fprintf(w, "| cores | %d (load generator, server and ceiling share them) |\n", m.Cores)
	fmt.Fprintf(w, "| Go | %s |\n", m.Go)
	fmt.Fprintf(w, "| OS | %s |\n", m.Kernel)
	fmt.Fprintf(w, "| run | `-c %d -d %s -rounds %d -logins %d`, warm-up %s; argon2id t=%d m=%d KiB p=%d |\n",
		o.clients, o.duration, o.rounds, o.logins, o.warmup, a.Time, a.MemoryKiB, a.Threads)
	backends := "in-process (sqlite, local, file)"
	if o.plugins {
		backends = "every one a subprocess plugin (`-plugins`: sqlite, local, file over go-plugin gRPC)"
	}
	if o.storage != "" {
		scheme, _, _ := strings.Cut(o.storage, ":")
		backends = strings.Replace(backends, "sqlite", scheme+" (`-storage`)", 1)
	}
	fmt.Fprintf(w, "| backends | %s |\n\n", backends)

	fmt.Fprintln(w, "| measure | MCIAS | ceiling | MCIAS / ceiling |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	val := fmt.Sprintf("validate, %d clients, %d×%s", o.clients, o.rounds, o.duration)
	fmt.Fprintf(w, "| %s: requests/s | %.0f | %.0f | %.2f |\n", val, mcias.Rate(), bare.Rate(), ratio(mcias.Rate(), bare.Rate()))
	fmt.Fprintf(w, "| %s: p50 latency | %s | %s | %.2f |\n", val, loadkit.FmtDur(mcias.Pct(0.5)), loadkit.FmtDur(bare.Pct(0.5)),
		ratio(float64(mcias.Pct(0.5)), float64(bare.Pct(0.5))))
	fmt.Fprintf(w, "| %s: p99 latency | %s | %s | %.2f |\n", val, loadkit.FmtDur(mcias.Pct(0.99)), loadkit.FmtDur(bare.Pct(0.99)),
		ratio(float64(mcias.Pct(0.99)), float64(bare.Pct(0.99))))
	ls, hs := r.loginSeq, r.hashSeq
	fmt.Fprintf(w, "| login, sequential (%d) vs one argon2id hash: p50 | %s | %s | %.2f |\n", len(ls),
		loadkit.FmtDur(loadkit.Pct(ls, 0.5)), loadkit.FmtDur(loadkit.Pct(hs, 0.5)), ratio(float64(loadkit.Pct(ls, 0.5)), float64(loadkit.Pct(hs, 0.5))))
	fmt.Fprintf(w, "| login, sequential (%d) vs one argon2id hash: p99 | %s | %s | %.2f |\n", len(ls),
		loadkit.FmtDur(loadkit.Pct(ls, 0.99)), loadkit.FmtDur(loadkit.Pct(hs, 0.99)), ratio(float64(loadkit.Pct(ls, 0.99)), float64(loadkit.Pct(hs, 0.99))))
	loginSat, hashSat := loadkit.Merge(r.loginRounds), mergeHash(r.hashRounds)
	fmt.Fprintf(w, "| logins/s, %d clients, vs argon2id hashes/s, %d goroutines (%d×%s) | %.1f | %.1f | %.2f |\n",
		r.loginConc, hashSat.Workers, o.rounds, o.duration, loginSat.Rate(), hashSat.rate(),
		ratio(loginSat.Rate(), hashSat.rate()))
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| validate round | ceiling requests/s | MCIAS requests/s |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for i := range r.bareRounds {
		fmt.Fprintf(w, "| %d | %.0f | %.0f |\n", i+1, r.bareRounds[i].Rate(), r.mciasRound[i].Rate())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| login round | argon2id hashes/s | MCIAS logins/s |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for i := range r.loginRounds {
		fmt.Fprintf(w, "| %d | %.1f | %.1f |\n", i+1, r.hashRounds[i].rate(), r.loginRounds[i].Rate())
	}
	fmt.Fprintf(w, "\nUnder saturation a login took p50 %s, p99 %s.\n",
		loadkit.FmtDur(loginSat.Pct(0.5)), loadkit.FmtDur(loginSat.Pct(0.99)))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// mergeHash pools bare-hash rounds: total hashes over total time.
func mergeHash(rs []hashSatResult) hashSatResult {
	var m hashSatResult
	for _, r := range rs {
		m.Workers = r.Workers
		m.Count += r.Count
		m.Seconds += r.Seconds
	}
	return m
}
