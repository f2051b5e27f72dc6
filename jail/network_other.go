//go:build !linux

package jail

import (
	"errors"
	"log/slog"
	"net/netip"
)

// NetworkOptions configure the host side of NetworkNAT.
type NetworkOptions struct {
	Logger     *slog.Logger
	Name       string
	Pool       netip.Prefix
	Forwarding bool
	OnDrop     func(tenant, env string, dst netip.AddrPort, proto string)
	Keep       []string
}

// Network is unavailable outside Linux.
type Network struct{}

// OpenNetwork reports that nat needs Linux.
func OpenNetwork(NetworkOptions) (*Network, error) { return nil, errors.ErrUnsupported }

// ChoosePool reports that nat needs Linux.
func ChoosePool(netip.Prefix, string) (netip.Prefix, error) {
	return netip.Prefix{}, errors.ErrUnsupported
}

// Close does nothing outside Linux.
func (*Network) Close() error { return nil }

// Detach does nothing outside Linux.
func (*Network) Detach() {}

// Pool is the zero Prefix outside Linux.
func (*Network) Pool() netip.Prefix { return netip.Prefix{} }

// NetStats are a tenant's network counters in nat mode.
type NetStats struct {
	BytesIn, BytesOut, Dropped uint64
}

// TenantNetStats reports that nat needs Linux.
func TenantNetStats(string) (map[string]NetStats, error) { return nil, errors.ErrUnsupported }

// RemoveNetwork needs Linux.
func RemoveNetwork(string) error { return errors.ErrUnsupported }
