//go:build !linux

package rootfs

import "errors"

// Layers needs Linux.
type Layers struct{}

// NewLayers returns Layers that mount nothing.
func NewLayers(string, LayerOptions) *Layers { return &Layers{} }

// Acquire needs Linux.
func (*Layers) Acquire(string, string, uint32, uint32) (string, func(), error) {
	return "", nil, errors.ErrUnsupported
}

// AcquireQuota needs Linux.
func (*Layers) AcquireQuota(string, string, uint32, uint32, Quota) (string, func(), error) {
	return "", nil, errors.ErrUnsupported
}

// Mounted reports false.
func (*Layers) Mounted(string) bool { return false }

// Close does nothing.
func (*Layers) Close() error { return nil }

// RemoveLayer needs Linux.
func RemoveLayer(string, string) error { return errors.ErrUnsupported }

// Requota does nothing off Linux.
func (*Layers) Requota(string, Quota) error { return nil }
