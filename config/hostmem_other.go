//go:build !linux

package config

// hostRAM is unknown off Linux: no memory default.
func hostRAM() int64 { return 0 }
