// Package webhooksig signs and verifies the requests of the MCIAS
// webhook audit sink:
//
//	MCIAS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// the scheme Stripe and GitHub use. The MAC covers the timestamp and the
// exact body bytes; a receiver recomputes it, compares in constant time,
// and refuses a timestamp outside its tolerance so a captured request
// cannot be replayed later. Within the tolerance a replay repeats events
// the receiver already has, which it drops by event id anyway.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the signature header.
const Header = "MCIAS-Signature"

// DefaultTolerance is how far a request's timestamp may be from the
// receiver's clock when the receiver has no better figure.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrMalformed = errors.New("webhooksig: malformed signature header")
	ErrStale     = errors.New("webhooksig: timestamp outside the tolerance")
	ErrMismatch  = errors.New("webhooksig: signature does not match")
	// ErrNoSecret: Verify was given an empty secret, with which anyone
	// can compute a matching signature (a receiver whose secret variable
	// was unset would accept forged events).
	ErrNoSecret = errors.New("webhooksig: no secret to verify with")
)

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the Header value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// Verify checks header against body at the receiver's time now. Several
// v1 values are accepted (a sender may sign with an old and a new secret
// while they are rotated); one matching is enough. Unknown keys are
// ignored, so later schemes can be added beside v1.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrMalformed
			}
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}
