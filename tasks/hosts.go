package tasks

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// HostPolicy says which addresses an http(s) download may connect to. It
// is checked when each connection is dialled, on the address DNS gave, so
// neither a redirect nor a DNS answer can lead around it.
type HostPolicy int

const (
	// AnyHost allows every address, as the original did: deployments
	// fetch originals from storage on their internal network.
	AnyHost HostPolicy = iota

	// PublicHosts allows public unicast addresses only. It refuses
	// loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
	// link-local (169.254/16, where cloud metadata services answer, and
	// fe80::/10), unspecified, multicast and broadcast addresses, shared
	// address space (100.64/10), and the other special-purpose ranges;
	// an IPv4 address embedded in IPv6 (mapped, NAT64) is judged as IPv4.
	// Proxies from the environment (HTTP_PROXY) are not used under it,
	// since the check would then only see the proxy.
	PublicHosts
)

// ParseHostPolicy reads "any" or "public".
func ParseHostPolicy(s string) (HostPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "any", "":
		return AnyHost, nil
	case "public":
		return PublicHosts, nil
	}
	return 0, fmt.Errorf("tasks: download host policy %q: want any or public", s)
}

// String returns the policy as ParseHostPolicy reads it.
func (h HostPolicy) String() string {
	if h == PublicHosts {
		return "public"
	}
	return "any"
}

// control is the net.Dialer.Control of a download: it refuses an address
// the policy does not allow.
func (h HostPolicy) control(network, address string, _ syscall.RawConn) error {
	if h == AnyHost {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("download host policy %s: cannot read address %q: %w", h, address, ErrBadInput)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("download host policy %s: %s is not a public address: %w", h, ap.Addr(), ErrBadInput)
	}
	return nil
}

// nat64 is the well-known NAT64 prefix, whose last 32 bits are an IPv4
// address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// specialPurpose are the ranges that are neither private nor loopback nor
// link-local in the netip sense but are still no public host (IANA's
// special-purpose registries).
var specialPurpose = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("::/8"),            // reserved, IPv4-compatible
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4, which embeds any IPv4
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// publicAddr reports whether a is a public unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	if nat64.Contains(a) {
		b := a.As16()
		return publicAddr(netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, p := range specialPurpose {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
