package config

import "golang.org/x/sys/unix"

// hostRAM is the host's total RAM (sysinfo(2)).
func hostRAM() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
