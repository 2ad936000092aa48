package frontend

import (
	"fmt"
	"net"
	"strings"
)

// ClientIP decides who the client is: the TCP peer, unless the peer is a
// trusted proxy, in which case the X-Forwarded-For chain is read from the
// right and the first address that is not a trusted proxy wins. That is
// the rule Gin applies to REST (Engine.SetTrustedProxies), so a client
// behind the same proxies gets the same IP, and the same rate-limit
// bucket, on gRPC.
type ClientIP struct {
	trusted []*net.IPNet
}

// NewClientIP takes the trusted proxies as IPs or CIDRs; none means the
// peer is always the client.
func NewClientIP(trusted []string) (*ClientIP, error) {
	c := &ClientIP{}
	for _, t := range trusted {
		if ip := net.ParseIP(t); ip != nil {
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			c.trusted = append(c.trusted, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(t)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an IP nor a CIDR", t)
		}
		c.trusted = append(c.trusted, n)
	}
	return c, nil
}

func (c *ClientIP) isTrusted(ip net.IP) bool {
	for _, n := range c.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Resolve returns the client IP for a peer address (host:port or bare IP)
// and the X-Forwarded-For values the request carried.
func (c *ClientIP) Resolve(peerAddr string, forwardedFor []string) string {
	host := peerAddr
	if h, _, err := net.SplitHostPort(peerAddr); err == nil {
		host = h
	}
	peer := net.ParseIP(host)
	if peer == nil || !c.isTrusted(peer) || len(forwardedFor) == 0 {
		return host
	}
	var hops []string
	for _, v := range forwardedFor {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip := net.ParseIP(hops[i])
		if ip == nil {
			// A malformed hop: trust nothing further left of it.
			return host
		}
		if !c.isTrusted(ip) || i == 0 {
			return ip.String()
		}
	}
	return host
}
