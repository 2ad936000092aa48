package loadkit

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	r := Merge([]Result{
		{Window: time.Second, Latencies: []time.Duration{1, 2, 3}},
		{Window: time.Second, Latencies: []time.Duration{4, 5, 6, 7, 8, 9, 10}},
	})
	if r.Rate() != 5 || r.Pct(0.5) != 5 || r.Pct(0.99) != 10 || r.Pct(0) != 1 {
		t.Errorf("rate %v p50 %v p99 %v p0 %v", r.Rate(), r.Pct(0.5), r.Pct(0.99), r.Pct(0))
	}
	if got := Pct([]time.Duration{3, 1, 2}, 0.5); got != 2 {
		t.Errorf("unsorted p50 = %v, want 2", got)
	}
}

func TestDriveCountsAndFails(t *testing.T) {
	res, err := Drive(t.Context(), Round{Clients: 2, Duration: 100 * time.Millisecond},
		func(int) (func(context.Context) error, func(), error) {
			return func(context.Context) error { time.Sleep(time.Millisecond); return nil }, func() {}, nil
		})
	if err != nil || len(res.Latencies) == 0 || res.Rate() <= 0 {
		t.Fatalf("res %v err %v", res.Rate(), err)
	}
	boom := errors.New("boom")
	if _, err := Drive(t.Context(), Round{Clients: 2, Duration: time.Second},
		func(int) (func(context.Context) error, func(), error) {
			return func(context.Context) error { return boom }, func() {}, nil
		}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

func TestChildrenReadLineAndStop(t *testing.T) {
	kids := &Children{}
	defer kids.StopAll()
	cmd := exec.Command("sh", "-c", `echo noise; echo "ready addr=x"; exec sleep 60`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := kids.Start("sh", cmd)
	if err != nil {
		t.Fatal(err)
	}
	line, err := ReadLine(t.Context(), p, out, "ready ", 10*time.Second)
	if err != nil || line != "ready addr=x" {
		t.Fatalf("line %q err %v", line, err)
	}
	if err := kids.Exited(); err != nil {
		t.Fatalf("running child reported exited: %v", err)
	}
	kids.Stop(p)
	if err := p.Exited(); err != nil {
		t.Fatalf("a child we stopped is reported as a crash: %v", err)
	}
	crash, err := kids.Start("false", exec.Command("false"))
	if err != nil {
		t.Fatal(err)
	}
	if err := crash.Wait(t.Context()); err == nil || !strings.Contains(kids.Exited().Error(), "false exited") {
		t.Fatalf("wait %v, exited %v", err, kids.Exited())
	}
}
