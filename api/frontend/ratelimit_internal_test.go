package frontend

import (
	"fmt"
	"testing"
	"time"
)

func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// TestLimiterCap: however many addresses ask, the limiter holds at
// most max buckets, evicting the least recently used one; a busy
// address keeps its bucket (and its limit) through a flood of new ones.
func TestLimiterCap(t *testing.T) {
	const max = 4
	l := newLimiter(1, 1, max) // one attempt, then one a minute
	now := time.Unix(1_700_000_000, 0)
	for i := range max {
		if ok, _ := l.allowMemory(fmt.Sprintf("192.0.2.%d", i), now); !ok {
			t.Fatalf("first attempt of address %d refused", i)
		}
	}
	if ok, wait := l.allowMemory("192.0.2.0", now); ok || wait <= 0 {
		t.Fatalf("second attempt of 192.0.2.0: ok=%v wait=%v, want refused", ok, wait)
	}
	// 192.0.2.0 is now the most recently used; 192.0.2.1 the least.
	if ok, _ := l.allowMemory("198.51.100.1", now); !ok {
		t.Fatal("a new address was refused when the limiter was full")
	}
	if n := l.size(); n != max {
		t.Fatalf("size = %d, want %d", n, max)
	}
	if ok, _ := l.allowMemory("192.0.2.0", now); ok {
		t.Fatal("the recently used address lost its bucket to a new one")
	}
	if ok, _ := l.allowMemory("192.0.2.1", now); !ok {
		t.Fatal("the least recently used address was not the one evicted")
	}

	// A flood of distinct addresses never grows the limiter past its cap.
	for i := range 100 * max {
		l.allowMemory(fmt.Sprintf("2001:db8::%x", i), now)
		if n := l.size(); n > max {
			t.Fatalf("after %d new addresses size = %d, cap %d", i+1, n, max)
		}
	}
	// Idle buckets are dropped.
	l.allowMemory("203.0.113.7", now.Add(idleAfter+time.Second))
	if n := l.size(); n != 1 {
		t.Fatalf("after the idle time size = %d, want 1", n)
	}
}
