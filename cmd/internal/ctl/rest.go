package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxResponse caps what the client reads from the server, so a broken or
// hostile server cannot make the CLI eat memory.
const maxResponse = 16 << 20

// APIError is a failure the server answered: a non-2xx REST response,
// carrying the contract's {"error","code"} body when the server sent one,
// or a gRPC status, carrying the code as its ErrorInfo reason.
type APIError struct {
	Status     int    // HTTP status; 0 for gRPC
	GRPCCode   string // gRPC status code name ("Unauthenticated"); empty for REST
	Code       string // empty when the answer was not a contract error
	Message    string
	RetryAfter string // the Retry-After header of a 429, as sent
	Body       []byte // raw body, for -json and for /v1/ready's 503
}

func (e *APIError) Error() string {
	where := fmt.Sprintf("HTTP %d", e.Status)
	if e.GRPCCode != "" {
		where = "gRPC " + e.GRPCCode
	}
	msg := e.Message
	if e.Code != "" {
		msg = fmt.Sprintf("%s (%s, %s)", msg, e.Code, where)
	} else {
		msg = fmt.Sprintf("%s (%s)", msg, where)
	}
	if e.RetryAfter != "" {
		msg += "; retry after " + e.RetryAfter + " s"
	}
	return msg
}

// authFailure reports a refused or missing authentication (exit 4).
func (e *APIError) authFailure() bool {
	switch {
	case e.GRPCCode != "":
		return e.GRPCCode == "Unauthenticated" || e.GRPCCode == "PermissionDenied"
	default:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
}

// TransportError means no HTTP answer came back: connection refused,
// DNS, TLS verification, timeout.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return "could not reach server: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// Client talks to the MCIAS REST API; it implements API (rest_api.go).
// Every request goes through Do.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient checks the server URL and builds a TLS client that trusts
// the system roots plus the PEM bundle in caFile (if any).
func NewClient(server, token, caFile string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || u.Host == "" {
		return nil, usagef("bad -server URL %q: want https://host:port", server)
	}
	switch u.Scheme {
	case "https":
	case "http":
		// Plain HTTP would put passwords and tokens on the wire; allow it
		// only where the wire is this machine (local tests, a TLS proxy
		// on loopback).
		if !isLoopback(u.Hostname()) {
			return nil, usagef("refusing plain http to %s: passwords and tokens would travel unencrypted; use https", u.Host)
		}
	default:
		return nil, usagef("bad -server URL %q: scheme must be https", server)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("bad -server URL %q: no query or fragment allowed", server)
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA bundle %s: no PEM certificate found", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &Client{
		base:  u,
		token: strings.TrimSpace(token),
		http: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// The API never redirects; following one could carry a
			// password body to somewhere unexpected.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errNoToken is returned before any request when a route needs a bearer
// token and none was configured.
var errNoToken = errors.New("no token: set MCIAS_TOKEN or pass -token (get one with the auth login command)")

// Request describes one API call.
type Request struct {
	Method string
	Path   string     // already escaped, e.g. "/v1/accounts/" + url.PathEscape(id)
	Query  url.Values // optional
	Body   any        // marshalled as JSON when non-nil
	Auth   bool       // send the bearer token (required)
}

// Do performs req. On 2xx it decodes the body into out (when out is
// non-nil and there is a body) and returns the raw body. Otherwise it
// returns an *APIError or a *TransportError.
func (c *Client) Do(ctx context.Context, req Request, out any) ([]byte, error) {
	if req.Auth && c.token == "" {
		return nil, errNoToken
	}
	// req.Path is already escaped, so join strings rather than setting
	// url.URL.Path (which would escape a second time).
	target := c.base.String() + req.Path
	if len(req.Query) > 0 {
		target += "?" + req.Query.Encode()
	}

	var body io.Reader
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, target, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", "mciasctl/1")
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.Auth {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}

	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, &TransportError{Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, &TransportError{Err: fmt.Errorf("read response: %w", err)}
	}
	if len(raw) > maxResponse {
		return nil, fmt.Errorf("response from server is larger than %d bytes", maxResponse)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return raw, decodeError(resp, raw)
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("server sent a response this client cannot read (HTTP %d): %w", resp.StatusCode, err)
		}
	}
	return raw, nil
}

// decodeError turns a non-2xx response into an *APIError, using the
// contract's body when present and the status text otherwise (a proxy's
// HTML error page, say).
func decodeError(resp *http.Response, raw []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, Body: raw}
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Message = body.Error
		e.Code = body.Code
	} else {
		e.Message = "server answered " + resp.Status
		if resp.Status == "" {
			e.Message = "server answered " + strconv.Itoa(resp.StatusCode)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		e.RetryAfter = resp.Header.Get("Retry-After")
	}
	return e
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// method and the full URL; the TLS or network cause is what helps.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s %s: timed out", ue.Op, ue.URL)
		}
		return ue.Err
	}
	return err
}
