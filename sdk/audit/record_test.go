package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMarshalRecord(t *testing.T) {
	nasty := "x\n{\"id\":\"forged\"}\r\u2028\u2029\u0085\u009b\x00\"\\]<>& é ☃ 🦀 \xff"
	e := Event{ID: "id-1", Seq: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Type: LoginFailure,
		IP: nasty, RequestID: "r", Outcome: Failure, Details: map[string]string{nasty: nasty}}
	line, err := MarshalRecord(e)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range line {
		if b < 0x20 || b > 0x7e {
			t.Fatalf("byte %#x at %d is not printable ASCII: %s", b, i, line)
		}
	}
	if !strings.Contains(string(line), `<>&`) {
		t.Errorf("HTML characters escaped needlessly: %s", line)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	want := strings.ToValidUTF8(nasty, "\uFFFD")
	if r.IP != want || r.Details[want] != want || r.ID != "id-1" || r.Seq != 7 || !r.Time.Equal(e.Time) {
		t.Fatalf("round trip: %+v", r)
	}
	if got := string(EscapeNonASCII([]byte(`"🦀é"`))); got != `"\ud83e\udd80\u00e9"` {
		t.Errorf("EscapeNonASCII = %s", got)
	}
}
