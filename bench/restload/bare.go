package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/argon2"

	"github.com/metacircular/mcias/bench/internal/loadkit"
)

// ---- the token-validation ceiling ----

const bareReady = "bare listening addr="

type bareServer struct {
	url  string
	proc *loadkit.Proc
}

// startBare re-executes this program as the bare validation server, with
// the instance's certificate and the public key that signed its token.
func startBare(ctx context.Context, inst *instance, procs *loadkit.Children, log io.Writer) (*bareServer, error) {
	exe, err := loadkit.Self()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, bareFlag, "-cert", inst.certFile, "-key", inst.keyFile, "-pub", inst.jwkX)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := procs.Start("bare validation server", cmd)
	if err != nil {
		return nil, err
	}
	line, err := loadkit.ReadLine(ctx, p, stdout, bareReady, 30*time.Second)
	if err != nil {
		return nil, err
	}
	b := &bareServer{url: "https://" + strings.TrimPrefix(line, bareReady), proc: p}
	fmt.Fprintf(log, "bare validation server on %s\n", strings.TrimPrefix(b.url, "https://"))
	return b, nil
}

// bareMain serves POST /v1/token/validate with nothing but JSON decoding,
// a JWS split and one ed25519.Verify, over TLS like mciassrv. It prints
// its address on stdout and runs until SIGTERM or SIGINT.
func bareMain(args []string) int {
	fs := flag.NewFlagSet("restload -bare", flag.ContinueOnError)
	certFile := fs.String("cert", "", "TLS certificate (PEM)")
	keyFile := fs.String("key", "", "TLS key (PEM)")
	pubX := fs.String("pub", "", "Ed25519 public key, base64url (the JWK x)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "restload -bare:", err)
		return 1
	}
	raw, err := base64.RawURLEncoding.DecodeString(*pubX)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return fail(errors.New("-pub is not a base64url Ed25519 public key"))
	}
	pub := ed25519.PublicKey(raw)
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fail(err)
	}

	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/v1/token/validate", func(c *gin.Context) {
		var req struct {
			Token string `json:"token"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "bad JSON", "code": "invalid_request"})
			return
		}
		c.JSON(http.StatusOK, validResponse{Valid: verifyJWS(pub, req.Token)})
	})

	srv := &http.Server{
		Handler: e,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	fmt.Println(bareReady + ln.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fail(err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

type validResponse struct {
	Valid bool `json:"valid"`
}

// verifyJWS checks only the signature of a compact JWS: the irreducible
// work of validating an EdDSA token.
func verifyJWS(pub ed25519.PublicKey, token string) bool {
	i := strings.IndexByte(token, '.')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(token[i+1:], '.')
	if j < 0 {
		return false
	}
	signed := token[:i+1+j]
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1+j+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, []byte(signed), sig)
}

// ---- the Argon2id ceiling ----

type hashResult struct {
	SeqNS []int64       `json:"seq_ns"`
	Sat   hashSatResult `json:"sat"`
}

type hashSatResult struct {
	Workers int     `json:"workers"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
}

func (h hashSatResult) rate() float64 {
	if h.Seconds <= 0 {
		return 0
	}
	return float64(h.Count) / h.Seconds
}

func (h hashResult) seq() []time.Duration {
	out := make([]time.Duration, len(h.SeqNS))
	for i, ns := range h.SeqNS {
		out[i] = time.Duration(ns)
	}
	return out
}

// runBareHash re-executes this program to time bare argon2.IDKey.
func runBareHash(ctx context.Context, p argonParams, o options, procs *loadkit.Children) (hashResult, error) {
	var res hashResult
	exe, err := loadkit.Self()
	if err != nil {
		return res, err
	}
	var stdout bytes.Buffer
	cmd := exec.Command(exe, bareHashFlag,
		"-t", strconv.FormatUint(uint64(p.Time), 10),
		"-m", strconv.FormatUint(uint64(p.MemoryKiB), 10),
		"-p", strconv.FormatUint(uint64(p.Threads), 10),
		"-n", strconv.Itoa(o.logins),
		"-warmup", o.warmup.String(),
		"-d", o.duration.String(),
	)
	cmd.Stdout = &stdout
	child, err := procs.Start("bare argon2id", cmd)
	if err != nil {
		return res, err
	}
	if err := child.Wait(ctx); err != nil {
		return res, err
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return res, fmt.Errorf("%s printed %q: %w", child.Name, stdout.String(), err)
	}
	if len(res.SeqNS) == 0 || res.Sat.Count == 0 {
		return res, fmt.Errorf("%s measured nothing", child.Name)
	}
	return res, nil
}

// bareHashMain times argon2.IDKey (16-byte salt, 32-byte key, as
// core/password does): n sequential hashes after one warm-up, then
// NumCPU goroutines hashing for -d after -warmup. It prints one JSON
// object on stdout.
func bareHashMain(args []string) int {
	fs := flag.NewFlagSet("restload -bare-hash", flag.ContinueOnError)
	t := fs.Uint("t", 3, "argon2id time")
	m := fs.Uint("m", 64*1024, "argon2id memory, KiB")
	p := fs.Uint("p", 1, "argon2id threads")
	n := fs.Int("n", 20, "sequential hashes")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up of the saturation run")
	d := fs.Duration("d", 10*time.Second, "measured duration of the saturation run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *t < 1 || *m < 8 || *p < 1 || *p > 255 || *n < 1 || *d <= 0 {
		fmt.Fprintln(os.Stderr, "restload -bare-hash: bad parameters")
		return 2
	}
	tt, mm, pp := uint32(*t), uint32(*m), uint8(*p)
	password := []byte(randomPassword())
	hash := func() {
		salt := make([]byte, 16)
		_, _ = rand.Read(salt)
		_ = argon2.IDKey(password, salt, tt, mm, pp, 32)
	}

	var res hashResult
	hash() // warm-up
	for range *n {
		t0 := time.Now()
		hash()
		res.SeqNS = append(res.SeqNS, int64(time.Since(t0)))
	}

	workers := runtime.NumCPU()
	start := time.Now().Add(*warmup)
	end := start.Add(*d)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			count := 0
			for time.Now().Before(end) {
				hash()
				if done := time.Now(); !done.Before(start) && !done.After(end) {
					count++
				}
			}
			mu.Lock()
			res.Sat.Count += count
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Sat.Workers = workers
	res.Sat.Seconds = d.Seconds()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "restload -bare-hash:", err)
		return 1
	}
	return 0
}
