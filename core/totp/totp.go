// Package totp implements RFC 6238 time-based one-time passwords with
// HMAC-SHA1, 6 digits and a 30 second period: the profile every
// authenticator app supports.
//
// It is written by hand rather than taken from a library because Verify
// must return the time step that matched: the caller stores it and
// rejects any code at or before that step, so each code is accepted at
// most once.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// Period is the length of one time step.
	Period = 30 * time.Second
	// Digits is the length of a code.
	Digits = 6
	// Window is how many steps either side of now are accepted, to allow
	// for clock drift and typing time.
	Window = 1
	// SecretLen is the length of a generated secret in bytes (160 bits,
	// the HMAC-SHA1 block recommendation of RFC 4226).
	SecretLen = 20
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// GenerateSecret returns SecretLen random bytes.
func GenerateSecret() ([]byte, error) {
	s := make([]byte, SecretLen)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("totp: generate secret: %w", err)
	}
	return s, nil
}

// EncodeSecret returns secret as unpadded base32, the form authenticator
// apps accept.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// Step returns the RFC 6238 time step of t (Unix time divided by Period).
func Step(t time.Time) int64 {
	return floorDiv(t.Unix(), int64(Period/time.Second))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Code returns the Digits-digit code of secret at step.
func Code(secret []byte, step int64) string { return code(secret, step, Digits) }

func code(secret []byte, step int64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	// Dynamic truncation, RFC 4226 section 5.3.
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	s := strconv.FormatUint(uint64(bin%mod), 10)
	return strings.Repeat("0", digits-len(s)) + s
}

// Verify checks code against the steps Step(now)-Window..Step(now)+Window
// that are later than lastStep, and returns the step that matched. code
// must be exactly Digits ASCII digits. Every candidate step is compared in
// constant time, so timing does not reveal which step matched or how many
// digits were right. The caller must store the returned step as the new
// lastStep (atomically with accepting the login) to stop replay.
func Verify(secret []byte, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	if len(code) != Digits {
		return 0, false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, false
		}
	}
	cur := Step(now)
	var found int
	for s := cur - Window; s <= cur+Window; s++ {
		// Compute every candidate even when it is not eligible, so the
		// work does not depend on lastStep.
		c := Code(secret, s)
		eq := subtle.ConstantTimeCompare([]byte(c), []byte(code))
		eligible := 0
		if s > lastStep && s >= 0 {
			eligible = 1
		}
		hit := eq & eligible
		// Keep the earliest matching step without branching on secret
		// data: mask is all ones only for the first hit.
		mask := -int64(hit &^ found)
		step = (s & mask) | (step &^ mask)
		found |= hit
	}
	if found == 0 {
		return 0, false
	}
	return step, true
}

// URI returns the otpauth:// key URI (Google Authenticator key URI
// format) that enrollment shows as a QR code:
//
//	otpauth://totp/Issuer:name?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30
func URI(issuer, accountName string, secret []byte) string {
	label := labelEscape(issuer) + ":" + labelEscape(accountName)
	q := "secret=" + EncodeSecret(secret) +
		"&issuer=" + queryEscape(issuer) +
		"&algorithm=SHA1" +
		"&digits=" + strconv.Itoa(Digits) +
		"&period=" + strconv.Itoa(int(Period/time.Second))
	return "otpauth://totp/" + label + "?" + q
}

// labelEscape escapes a label part; ':' separates issuer from account, so
// it must not appear literally inside either.
func labelEscape(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

// queryEscape escapes a query value with %20 for spaces: several
// authenticator apps show a literal '+'.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
