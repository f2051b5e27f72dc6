//go:build !linux

package jail

import (
	"context"
	"errors"
	"io"
	"os"
)

// Supervisor is unavailable outside Linux.
type Supervisor struct{}

// New reports that jails need Linux.
func New(Options) (*Supervisor, error) { return nil, errors.ErrUnsupported }

// Environment reports that jails need Linux.
func (*Supervisor) Environment(context.Context, string, *EnvSpec) (Env, error) {
	return nil, errors.ErrUnsupported
}

// Close does nothing outside Linux.
func (*Supervisor) Close() error { return nil }

// IsInit reports false outside Linux.
func IsInit() bool { return false }

// InitMain is never reached outside Linux.
func InitMain() {}

// CheckLimits reports that jails need Linux.
func (*Supervisor) CheckLimits(Limits) error { return errors.ErrUnsupported }

// TenantStats reports that jails need Linux.
func TenantStats(string, string) (Stats, error) { return Stats{}, errors.ErrUnsupported }

// Feature is one kernel facility the jail uses.
type Feature struct {
	Name   string
	OK     bool
	Detail string
}

// Features reports nothing outside Linux.
func Features() []Feature { return nil }

// TTYStreams is unavailable outside Linux.
func TTYStreams(master *os.File) (io.WriteCloser, io.ReadCloser) { return nil, nil }

// SealedInit reports that jails need Linux.
func SealedInit([]byte) (*os.File, string, error) { return nil, "", errors.ErrUnsupported }
