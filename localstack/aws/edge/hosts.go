package edge

import (
	"net"
	"strings"
)

// LocalHosts is the Host check of the local stack's listeners, a guard
// against DNS rebinding: a page whose name the attacker resolves to
// 127.0.0.1 still sends that name as Host. It admits 127.0.0.1, localhost
// and [::1], and a listener's own host, on a listener's port; a listener on
// an unspecified host (0.0.0.0, ::) admits any IP address, since rebinding
// needs a name.
type LocalHosts struct {
	hosts, ports map[string]bool
	anyIP        bool
}

// NewLocalHosts admits the hosts of the listeners at addrs (host:port, as
// configured and as bound).
func NewLocalHosts(addrs ...string) LocalHosts {
	h := LocalHosts{hosts: map[string]bool{"127.0.0.1": true, "localhost": true, "::1": true}, ports: map[string]bool{}}
	for _, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if port != "0" {
			h.ports[port] = true
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			h.anyIP = true
		} else {
			h.hosts[strings.ToLower(host)] = true
		}
	}
	return h
}

// Admits reports whether a request's Host header names this machine.
func (h LocalHosts) Admits(hostHeader string) bool {
	host, port, err := net.SplitHostPort(hostHeader)
	if err != nil {
		host, port = strings.Trim(hostHeader, "[]"), "80"
	}
	host = strings.ToLower(host)
	return h.ports[port] && (h.hosts[host] || h.anyIP && net.ParseIP(host) != nil)
}
